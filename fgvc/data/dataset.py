"""The dataset folder (manifest.csv + images + dataset.json, written by data_prep.carve)
and the stratified validation split of its training images. Torch-free: the first stage
of the data flow, read by the runner's preflight and the report alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from fgvc.data.manifest import MANIFEST_COLUMNS  # the manifest.csv format, owned by its writer
from fgvc.data.check import check_manifest, one_line, path_problems
from fgvc.data.identity import Identity, dataset_identity
from fgvc.errors import FGVCError

HOW_TO_MAKE = "prepare it with `make data` or `python -m data_prep.carve --source CUB_200_2011 --out DIR`"


@dataclass(frozen=True)
class DatasetInfo:
    """A prepared dataset folder: its manifest and its `dataset.json`."""

    root: Path
    manifest: pd.DataFrame
    meta: dict

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or sorted_class_names(self.manifest))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @cached_property
    def identity(self) -> Identity:
        """The content checksum of the files as they are now (fgvc/data/identity.py)."""
        return dataset_identity(self.root, self.meta)

    @property
    def content_sha256(self) -> str | None:
        """The files' content_sha256 (what data_prep.verify computes), found cheaply; None for
        a folder whose dataset.json records none."""
        return self.identity.content_sha256

    @property
    def stale(self) -> str | None:
        """Why dataset.json's content_sha256 no longer holds for the files (None: it holds)."""
        return self.identity.stale

    def split(self, train: bool) -> pd.DataFrame:
        return self.manifest[self.manifest.is_train == int(train)].reset_index(drop=True)


def sorted_class_names(manifest: pd.DataFrame) -> list[str]:
    return list(manifest.drop_duplicates("label").sort_values("label").class_name)


def load_dataset_info(root: str | Path) -> DatasetInfo:
    """Read and check a dataset folder written by `data_prep.carve`: manifest.csv's cells
    (fgvc/data/check.py), dataset.json, labels in range, both splits present. The images
    themselves are checked by the benchmark's preflight."""
    root = Path(root)
    if not root.is_dir():
        raise FGVCError(f"dataset folder not found: {root} ({HOW_TO_MAKE})")
    mpath = root / "manifest.csv"
    if not mpath.is_file():
        raise FGVCError(f"{root} has no manifest.csv: not a prepared dataset ({HOW_TO_MAKE})")
    try:
        manifest = pd.read_csv(mpath, dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises several types for unreadable CSVs
        raise FGVCError(f"{mpath}: cannot read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                        f"re-create the dataset ({HOW_TO_MAKE})") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise FGVCError(f"{mpath}: missing columns {', '.join(missing)} ({HOW_TO_MAKE})")
    manifest, problems = check_manifest(manifest)
    if problems:
        raise FGVCError(f"{mpath}: {one_line(problems)}; fix it or re-create the dataset ({HOW_TO_MAKE})")
    problems = path_problems(root, manifest.path)  # before anything reads a listed file (the checksum does)
    if problems:
        raise FGVCError(f"{mpath}: {one_line(problems)}; every listed image must be a regular file inside {root} "
                        f"(fix manifest.csv or re-create the dataset: {HOW_TO_MAKE})")
    meta: dict = {}
    jpath = root / "dataset.json"
    if jpath.is_file():
        try:
            meta = json.loads(jpath.read_text())
        except json.JSONDecodeError as e:
            raise FGVCError(f"{jpath}: not valid JSON ({e}); re-create the dataset ({HOW_TO_MAKE})") from None
        if not isinstance(meta, dict):
            raise FGVCError(f"{jpath}: not a JSON object; re-create the dataset ({HOW_TO_MAKE})")
    labels = manifest.label.to_numpy()
    k = int(meta.get("num_classes") or (labels.max() + 1))
    if labels.min() < 0 or labels.max() >= k:
        raise FGVCError(f"{mpath}: labels must be in 0..{k - 1} (found {labels.min()}..{labels.max()}); "
                        f"re-create the dataset ({HOW_TO_MAKE})")
    for is_train, name in ((1, "train"), (0, "test")):
        if not (manifest.is_train == is_train).any():
            raise FGVCError(f"{mpath}: no {name} images ({HOW_TO_MAKE})")
    return DatasetInfo(root=root, manifest=manifest, meta=meta)


def stratified_val_split(train: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train part, validation part) of the training images: per class, round(fraction * n)
    images (half up, at least 1) go to validation.

    Each class draws from its own generator seeded by (seed, label) over its images in
    image_id order, so the split depends only on `val_seed` and the class's images: every
    run of a grid (any seed, method or lr) sees the same split, and adding a class elsewhere
    does not move it. Both parts keep the manifest order.

    `fraction` is a validated `val_fraction`, in [0, 1) (RunConfig.validate checks it); a
    fraction that would leave a class no training image is refused here (it depends on
    the data).
    """
    if fraction == 0:
        return train.reset_index(drop=True), train.iloc[:0].reset_index(drop=True)
    val_ids: list[int] = []
    for label, rows in train.groupby("label", sort=True):
        ids = np.sort(rows.image_id.to_numpy())
        n = len(ids)
        n_val = max(1, int(np.floor(fraction * n + 0.5)))
        if n_val >= n:
            name = rows.class_name.iloc[0] if "class_name" in rows.columns else f"label {label}"
            raise FGVCError(f"invalid value val_fraction={fraction:g}: class {name!r} has {n} training image(s), "
                            f"so {n_val} for validation leaves none to train on; use a smaller val_fraction "
                            "(or 0 for no validation split)")
        rng = np.random.default_rng([int(seed), int(label)])
        val_ids.extend(rng.choice(ids, size=n_val, replace=False).tolist())
    is_val = train.image_id.isin(val_ids)
    return train[~is_val].reset_index(drop=True), train[is_val].reset_index(drop=True)


def check_batch_fits(batch_size: int, n_train: int, root: Path, val_fraction: float = 0.0) -> None:
    """A batch larger than the training set (after the validation split) cannot train."""
    if batch_size > n_train:
        held = f" after holding out val_fraction={val_fraction:g}" if val_fraction > 0 else ""
        raise FGVCError(f"invalid value batch_size={batch_size}: larger than the training set "
                        f"({n_train} images in {root}{held})")


def split_table(train_part: pd.DataFrame, val_part: pd.DataFrame) -> pd.DataFrame:
    """`image_id,split` (train|val) for `val_split.csv`, by image_id."""
    frame = pd.concat([pd.DataFrame({"image_id": train_part.image_id, "split": "train"}),
                       pd.DataFrame({"image_id": val_part.image_id, "split": "val"})])
    return frame.sort_values("image_id", kind="stable").reset_index(drop=True)


__all__ = ["MANIFEST_COLUMNS", "DatasetInfo", "load_dataset_info", "sorted_class_names", "stratified_val_split",
           "split_table", "check_batch_fits"]
