"""What the registry knows of each dataset: its names, levels, where a copy comes from, and
the function that carves it. Types only (no reading), so every reader module and the
registry can import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Download:
    """One official file the owners let anyone download, and its md5."""

    url: str
    md5: str

    @property
    def name(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the registry (data_prep.datasets.DATASETS)."""

    name: str  # the registry name: `--dataset` / `make data DATASET=`
    title: str  # e.g. "FGVC-Aircraft 2013b"
    levels: tuple[str, ...]  # the label levels `--level` accepts; the first is the default
    default_classes: str  # `--classes` when none is given
    local: str  # what a local copy is, for messages and `--source` help
    placeholder: str  # the SOURCE= value a suggested command shows
    carve: Callable[[Path, Path, str, str, bool], dict]  # (source, out, classes, level, force) -> dataset.json
    downloads: tuple[Download, ...] = ()  # empty: no public download
    by_hand: str = ""  # with no download: why, and what to fetch by hand from where


__all__ = ["Download", "DatasetSpec"]
