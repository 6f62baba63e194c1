"""Dataset folder (manifest.csv + images + dataset.json) -> PyTorch datasets.

Every image is decoded once per process and kept as uint8 in memory; augmentation
runs on those tensors. Random crops are drawn from a generator seeded by
(seed, epoch, image index), so a run's augmentation does not depend on the number of
DataLoader workers and an interrupted run resumes exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from data_prep.manifest import MANIFEST_COLUMNS  # the manifest.csv format, owned by its writer
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

    @property
    def content_sha256(self) -> str | None:
        return self.meta.get("content_sha256")

    def split(self, train: bool) -> pd.DataFrame:
        return self.manifest[self.manifest.is_train == int(train)].reset_index(drop=True)


def sorted_class_names(manifest: pd.DataFrame) -> list[str]:
    return list(manifest.drop_duplicates("label").sort_values("label").class_name)


def load_dataset_info(root: str | Path) -> DatasetInfo:
    """Read and sanity-check a dataset folder written by `data_prep.carve`."""
    root = Path(root)
    if not root.is_dir():
        raise FGVCError(f"dataset folder not found: {root} ({HOW_TO_MAKE})")
    mpath = root / "manifest.csv"
    if not mpath.is_file():
        raise FGVCError(f"{root} has no manifest.csv: not a prepared dataset ({HOW_TO_MAKE})")
    try:
        manifest = pd.read_csv(mpath)
    except Exception as e:  # pandas raises several types for unreadable CSVs
        raise FGVCError(f"{mpath}: cannot read ({e}); re-create the dataset ({HOW_TO_MAKE})") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise FGVCError(f"{mpath}: missing columns {', '.join(missing)} ({HOW_TO_MAKE})")
    meta: dict = {}
    jpath = root / "dataset.json"
    if jpath.is_file():
        try:
            meta = json.loads(jpath.read_text())
        except json.JSONDecodeError as e:
            raise FGVCError(f"{jpath}: not valid JSON ({e}); re-create the dataset ({HOW_TO_MAKE})") from None
    labels = manifest.label.to_numpy()
    k = int(meta.get("num_classes") or (labels.max() + 1))
    if labels.min() < 0 or labels.max() >= k:
        raise FGVCError(f"{mpath}: labels must be in 0..{k - 1}; re-create the dataset ({HOW_TO_MAKE})")
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


def split_table(train_part: pd.DataFrame, val_part: pd.DataFrame) -> pd.DataFrame:
    """`image_id,split` (train|val) for `val_split.csv`, by image_id."""
    frame = pd.concat([pd.DataFrame({"image_id": train_part.image_id, "split": "train"}),
                       pd.DataFrame({"image_id": val_part.image_id, "split": "val"})])
    return frame.sort_values("image_id", kind="stable").reset_index(drop=True)


def _decode(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise FGVCError(f"image listed in the manifest is missing: {path} (run `python -m data_prep.verify` on the dataset)") from None
    except OSError as e:
        raise FGVCError(f"cannot decode image {path}: {e} (run `python -m data_prep.verify` on the dataset)") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


@lru_cache(maxsize=4)
def _decoded(root: str, paths: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """Decode once per process; a grid of runs on the same dataset reuses it."""
    return tuple(_decode(Path(root) / p) for p in paths)


def decode_all(info: DatasetInfo, frame: pd.DataFrame) -> list[torch.Tensor]:
    return list(_decoded(str(info.root.resolve()), tuple(frame.path)))


def interpolation_mode(name: str) -> InterpolationMode:
    try:
        return InterpolationMode(name)
    except ValueError:
        raise FGVCError(f"unknown interpolation {name!r}: use bilinear, bicubic or nearest") from None


def train_transform(image_size: int, mean, std, interpolation: str) -> v2.Transform:
    """The published recipe: RandomResizedCrop + horizontal flip, no colour jitter."""
    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                             interpolation=interpolation_mode(interpolation), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


def eval_resize_crop(image_size: int, crop_pct: float, interpolation: str) -> v2.Transform:
    """Resize the shorter side to image_size / crop_pct (256 for 224), center-crop."""
    return v2.Compose([
        v2.Resize(int(image_size / crop_pct), interpolation=interpolation_mode(interpolation), antialias=True),
        v2.CenterCrop(image_size),
    ])


def normalize(mean, std) -> v2.Transform:
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))])


def sample_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from small integers (seed, epoch, index)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot(np.array([1, 2**31], dtype=np.uint64)))


class TrainImages(Dataset):
    """Decoded training images with per-sample seeded augmentation.

    Call `set_epoch(e)` before each epoch (workers are re-created every epoch, so
    they see the new value).
    """

    def __init__(self, images: list[torch.Tensor], labels: np.ndarray, transform: v2.Transform, seed: int):
        self.images, self.labels, self.transform, self.seed = images, labels, transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, i))
            x = self.transform(self.images[i])
        return x, int(self.labels[i])


class EvalImages(Dataset):
    """Images resized and center-cropped once (deterministic), normalised on access."""

    def __init__(self, images: list[torch.Tensor], labels: np.ndarray, resize_crop: v2.Transform, norm: v2.Transform):
        self.images = [resize_crop(im) for im in images]
        self.labels, self.norm = labels, norm

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.norm(self.images[i]), int(self.labels[i])


def eval_loader(images: list[torch.Tensor], labels: np.ndarray, resize_crop: v2.Transform, norm: v2.Transform,
                batch_size: int, workers: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    """A deterministic loader (resize + center crop, no shuffling) for evaluation and features."""
    return torch.utils.data.DataLoader(EvalImages(images, labels, resize_crop, norm), batch_size=batch_size,
                                       num_workers=workers, pin_memory=pin_memory)


class EpochSampler(torch.utils.data.Sampler[int]):
    """A permutation drawn from (seed, epoch): same batch order for every method."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 0x5EED))
        return iter(torch.randperm(self.n, generator=g).tolist())


def default_workers(device: torch.device) -> int:
    """On CPU the model uses every core and augmenting in-memory tensors is cheap: no
    workers. On a GPU, enough workers to keep it fed."""
    if device.type == "cpu":
        return 0
    return min(8, max(1, (os.cpu_count() or 2) - 1))


__all__ = [
    "DatasetInfo",
    "load_dataset_info",
    "stratified_val_split",
    "split_table",
    "decode_all",
    "train_transform",
    "eval_resize_crop",
    "normalize",
    "TrainImages",
    "EvalImages",
    "eval_loader",
    "EpochSampler",
    "default_workers",
    "sample_seed",
]
