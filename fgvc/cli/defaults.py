"""The defaults the command line shows, defined once: import-free, so the parsers (which
must not import torch) and the implementations (fgvc.demo, fgvc.validate, ...) read the
same values."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DATA = Path("data/cub_sparrows")  # the prepared dataset folder `make data` writes

# fgvc validate: where a bare checkpoint's evaluation goes (a run folder's goes to RUN/validate/)
VALIDATE_BARE_OUT = Path("results") / "validate"

# fgvc demo
DEMO_DATASETS = ("digits", "mnist")
DEMO_OUT = Path("results") / "demo"
DEMO_EPOCHS = {"digits": 40, "mnist": 5}
DEMO_CENTER_WEIGHT = 0.1

__all__ = ["DEFAULT_DATA", "VALIDATE_BARE_OUT", "DEMO_DATASETS", "DEMO_OUT", "DEMO_EPOCHS", "DEMO_CENTER_WEIGHT"]
