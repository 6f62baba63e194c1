"""The registry of datasets data_prep can read: name -> DatasetSpec (data_prep/datasets/spec.py).

Each dataset is one reader module here (cub.py wraps data_prep/carve.py, the first reader);
all write the same dataset folder (data_prep/folder.py), the one thing fgvc reads, so a new
dataset is a new module and one line below. docs/datasets.md lists them.
"""

from __future__ import annotations

from pathlib import Path

from data_prep.datasets import aircraft, cars, cub, flowers, nabirds, pets
from data_prep.datasets.spec import DatasetSpec
from fgvc.errors import FGVCError

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (cub.SPEC, aircraft.SPEC, cars.SPEC, flowers.SPEC, pets.SPEC,
                                                         nabirds.SPEC)}
DEFAULT = cub.NAME


def get(name: str) -> DatasetSpec:
    """The dataset `name`; an unknown name is one error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise FGVCError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}") from None


def resolve(name: str, classes: str | None, level: str | None) -> tuple[DatasetSpec, str, str]:
    """(the dataset, its class selection, its level): the defaults filled in, the level checked."""
    spec = get(name)
    level = level or spec.levels[0]
    if level not in spec.levels:
        raise FGVCError(f"--level {level!r}: {spec.title} has {', '.join(spec.levels)}")
    return spec, classes or spec.default_classes, level


def carve_dataset(name: str, source: Path, out: Path, classes: str | None = None, level: str | None = None,
                  force: bool = False) -> dict:
    """Write the dataset folder `out` of dataset `name` from its local copy `source`; return dataset.json's dict."""
    spec, classes, level = resolve(name, classes, level)
    return spec.carve(Path(source), Path(out), classes, level, force)


__all__ = ["DATASETS", "DEFAULT", "DatasetSpec", "get", "resolve", "carve_dataset"]
