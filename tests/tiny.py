"""The suite's one tiny-run configuration: timm's `test_resnet` from random weights on the
synthetic fixture, 32 px, batch 8, one epoch -- seconds on a CPU.

    from tiny import TINY, tiny_config

    grid = dict(TINY, methods=["ce", "center"], epochs=2)     # a benchmark grid (lists allowed)
    cfg = RunConfig(**tiny_config(method="center", lr=0.05))  # one run (method / seed)

A plain module beside conftest.py, not a fixture: the grids are module constants and
module-scoped fixtures of several files. It is importable because `tests/` is on sys.path
(pytest's default import mode puts it there for test files outside a package, and
`pythonpath = ["tests"]` in pyproject.toml does for any import mode), as report_fixtures.py.
Read-only: derive variants with dict(TINY, key=value), never edit it in place.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

TINY = MappingProxyType({
    "model": "test_resnet", "pretrained": False, "epochs": 1, "batch_size": 8, "image_size": 32,
    "seeds": [0], "methods": ["ce"], "lr": 0.01, "benchmark": "tiny",
})


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """TINY as the keyword arguments of one RunConfig (or a `fgvc train --config` YAML):
    one method and one seed instead of the grid's lists, then `overrides`."""
    one = {k: v for k, v in TINY.items() if k not in ("seeds", "methods")}
    return one | {"method": TINY["methods"][0], "seed": TINY["seeds"][0]} | overrides


def make_env() -> dict:
    """The environment for a `make` the tests run, without the variables an outer make (CI's
    `make test PYTEST_ARGS=...`) passes down, which would show up as typed overrides."""
    import os

    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")}
