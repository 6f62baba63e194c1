"""CUB-200-2011 in the registry: its reader is data_prep/carve.py (the first one, with its
one-pass archive reader), its download data_prep/download.py."""

from __future__ import annotations

from pathlib import Path

from data_prep.carve import LEVEL, carve as carve_cub
from data_prep.datasets.spec import DatasetSpec, Download
from data_prep.download import CUB_MD5, CUB_URL

NAME = "cub"


def carve(source: Path, out: Path, classes: str = "sparrows", level: str = LEVEL, force: bool = False) -> dict:
    """Write the dataset folder `out` from CUB_200_2011.tgz or its folder; return dataset.json's dict."""
    return carve_cub(source, out, classes, force)


SPEC = DatasetSpec(NAME, "CUB-200-2011", (LEVEL,), "sparrows",
                   "CUB_200_2011.tgz or an extracted CUB_200_2011/ folder", "/path/to/CUB_200_2011.tgz", carve,
                   downloads=(Download(CUB_URL, CUB_MD5),))

__all__ = ["SPEC", "carve"]
