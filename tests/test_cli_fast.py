"""`fgvc --help` and `fgvc <command> --help` import no torch (nor the other heavy libraries).

Importing torch alone takes seconds, so the parsers live in torch-free modules
(the fgvc.cli package) and each command imports its
implementation only when it runs. Each case runs in a fresh interpreter and checks
sys.modules afterwards: a check on imports, not a timing test.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fgvc
from fgvc.cli import build_parser

ROOT = Path(fgvc.__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "timm", "numpy", "pandas", "scipy", "matplotlib", "sklearn", "umap", "PIL")

CHECK = f"""
import sys
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print("HEAVY", heavy)
"""


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def _heavy_modules(proc: subprocess.CompletedProcess) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("HEAVY "))
    return ast.literal_eval(line[len("HEAVY "):])


def test_every_command_is_covered():
    assert set(_commands()) == {"benchmark", "train", "validate", "report", "visualize", "compare", "leaderboard",
                                "demo", "speed"}


def test_building_the_parser_imports_no_torch():
    proc = _python("import fgvc.cli\nfgvc.cli.build_parser()\n" + CHECK)
    assert _heavy_modules(proc) == []


@pytest.mark.parametrize("argv", [["--help"]] + [[c, "--help"] for c in _commands()], ids=" ".join)
def test_help_imports_no_torch(argv):
    code = ("import sys\nimport fgvc.cli\n"
            "try:\n    fgvc.cli.main(sys.argv[1:])\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n" + CHECK)
    proc = _python(code, *argv)
    assert "usage: fgvc" in proc.stdout
    assert _heavy_modules(proc) == []


def test_python_m_fgvc_help_imports_no_torch():
    """The `python -m fgvc` path: fgvc/__init__.py and fgvc/__main__.py as well."""
    code = ("import runpy, sys\nsys.argv = ['fgvc', '--help']\n"
            "try:\n    runpy.run_module('fgvc', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n" + CHECK)
    proc = _python(code)
    assert "usage: fgvc" in proc.stdout
    assert _heavy_modules(proc) == []


def test_the_implementations_read_the_defaults_the_help_shows():
    """Defined once, in fgvc/cli/defaults.py (and speed's text in fgvc/speed/__init__.py)."""
    import inspect

    from fgvc import demo, validate
    from fgvc.cli import defaults

    params = inspect.signature(demo.demo).parameters
    assert params["out"].default == defaults.DEMO_OUT
    assert params["center_weight"].default == defaults.DEMO_CENTER_WEIGHT
    assert validate.validate_out(Path("x.pt")) == defaults.VALIDATE_BARE_OUT / "x"
    speed = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["speed"]
    assert "against two reference loops" in speed.description
