"""The run's loaders, whichever pipeline makes them: `build_loaders` is the one place that
chooses between the per-sample DataLoader (fgvc.data.per_sample) and the batched on-device
augmentation (fgvc.data.batched), so the training loop never asks which it has.

Evaluation loaders are deterministic (resize + center crop, no shuffling) and hold this
process's `eval_chunk` only under torchrun (fgvc.engine.distributed gathers their outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from fgvc.engine import distributed as dist_
from fgvc.config import RunConfig
from fgvc.data.dataset import DatasetInfo
from fgvc.data.decode import decode_all
from fgvc.data.per_sample import TrainImages, default_workers, eval_loader
from fgvc.data.sampling import DealtSampler, EpochSampler, drop_last_batch
from fgvc.data.transforms import eval_resize_crop, normalize, train_transform
from fgvc.errors import FGVCError

PIPELINES = ("auto", "batched", "per-sample")
MIN_EVAL_BATCH = 64  # on a GPU: evaluation keeps no activations for backward, a larger batch than training fits


def eval_batch_size(train_batch_size: int, device: torch.device) -> int:
    """The evaluation batch of a run (its predictions depend on it only through rounding).

    On a GPU at least MIN_EVAL_BATCH, fewer kernel launches. On a CPU the training batch: the
    heap the training steps leave behind (fgvc keeps freed memory, engine.device.keep_freed_memory)
    does not fit a batch of 64, which added about 0.9 GB to a Lite0 run's peak resident memory
    (6.1 -> 5.2 GB, same step and evaluation speed; tools/memory_options.py, docs/speed.md)."""
    return train_batch_size if device.type == "cpu" else max(train_batch_size, MIN_EVAL_BATCH)


@dataclass
class RunData:
    """The loaders of one run; eval loaders hold this process's `eval_chunk` only."""

    train: object            # iterable of (x, y) batches
    set_epoch: Callable[[int], None]
    test: object
    val: object | None
    train_eval: Callable[[], object]  # built only at the end: the final feature pass
    n_test: int
    n_val: int
    n_train: int
    workers: int
    pipeline: str


def resolve_pipeline(name: str, device: torch.device, cfg: RunConfig) -> str:
    """auto: batched on CUDA, per-sample on CPU; no random crops (augment none): per-sample."""
    if name not in PIPELINES:
        raise FGVCError(f"invalid --pipeline {name!r}: use auto, batched or per-sample")
    if cfg.augment == "none":
        return "per-sample"  # no random crops: the plain eval transform, per image
    if name == "auto":
        return "batched" if device.type == "cuda" else "per-sample"
    return name


def build_eval_loader(info: DatasetInfo, frame: pd.DataFrame, image_size: int, crop_pct: float, dcfg: dict,
                      batch_size: int, device: torch.device, workers: int | None = None) -> DataLoader:
    """A deterministic per-sample loader over all of `frame` (fgvc validate's evaluation)."""
    workers = default_workers(device) if workers is None else workers
    return eval_loader(decode_all(info, frame), frame.label.to_numpy(),
                       eval_resize_crop(image_size, crop_pct, dcfg["interpolation"]),
                       normalize(dcfg["mean"], dcfg["std"]), batch_size, workers, device.type == "cuda")


def build_loaders(cfg: RunConfig, info: DatasetInfo, frames: dict, dcfg: dict, device: torch.device, *,
                  pipeline: str = "auto", workers: int | None = None) -> RunData:
    """Training loader (per-sample or batched on the device) and the evaluation loaders of
    `frames` ({"train", "test", "val"}; val may be None), with the model's data config."""
    d = dist_.current()
    pipeline = resolve_pipeline(pipeline, device, cfg)
    train_df = frames["train"]
    drop_last = drop_last_batch(len(train_df), cfg.batch_size, d.world)
    sampler = EpochSampler(len(train_df), cfg.seed)
    if d.enabled:
        sampler = DealtSampler(sampler, cfg.batch_size, d, drop_last)
    drop_last = drop_last and not d.enabled  # the deal already left that image out
    if pipeline == "batched":
        workers = 0
        train, set_epoch, evaluation = _batched(cfg, info, frames, dcfg, device, sampler, drop_last)
    else:
        workers = default_workers(device) if workers is None else workers
        train, set_epoch, evaluation = _per_sample(cfg, info, frames, dcfg, device, sampler, drop_last, workers)
    val_df = frames.get("val")
    return RunData(train=train, set_epoch=set_epoch, test=evaluation("test"),
                   val=evaluation("val") if val_df is not None else None,
                   train_eval=lambda: evaluation("train"), n_test=len(frames["test"]),
                   n_val=len(val_df) if val_df is not None else 0, n_train=len(train_df), workers=workers,
                   pipeline=pipeline)


def _batched(cfg, info, frames, dcfg, device, sampler, drop_last):
    from fgvc.data.batched import BatchedTrainLoader, DeviceEvalLoader
    from fgvc.data.cache import build_image_cache

    d = dist_.current()
    resize_crop = eval_resize_crop(cfg.image_size, cfg.crop_pct, dcfg["interpolation"])
    # Decoded once (a memory-mapped file shared by runs and processes), then kept on the device.
    train_cache = build_image_cache(info, frames["train"]).to(device)
    train = BatchedTrainLoader(train_cache, frames["train"].label.to_numpy(), dist_.local_batch_size(cfg.batch_size, d),
                               cfg.seed, cfg.image_size, dcfg["mean"], dcfg["std"], sampler=sampler,
                               drop_last=drop_last, interpolation=dcfg["interpolation"])

    def evaluation(split: str):
        # Resized and cropped once on the CPU (the same pixels as the per-sample path), kept on the device.
        part = frames[split].iloc[dist_.eval_chunk(len(frames[split]), d)]
        return DeviceEvalLoader(build_image_cache(info, part), part.label.to_numpy(),
                                eval_batch_size(cfg.batch_size, device), resize_crop, dcfg["mean"], dcfg["std"],
                                device=device)

    return train, train.set_epoch, evaluation


def _per_sample(cfg, info, frames, dcfg, device, sampler, drop_last, workers):
    d = dist_.current()
    pin = device.type == "cuda"
    resize_crop = eval_resize_crop(cfg.image_size, cfg.crop_pct, dcfg["interpolation"])
    norm = normalize(dcfg["mean"], dcfg["std"])
    images_train = decode_all(info, frames["train"])
    if cfg.augment == "none":
        transform = v2.Compose([resize_crop, norm])
    else:
        transform = train_transform(cfg.image_size, dcfg["mean"], dcfg["std"], dcfg["interpolation"])
    train_ds = TrainImages(images_train, frames["train"].label.to_numpy(), transform, cfg.seed)
    train = DataLoader(train_ds, batch_size=dist_.local_batch_size(cfg.batch_size, d), sampler=sampler,
                       num_workers=workers, pin_memory=pin, drop_last=drop_last)

    def evaluation(split: str):
        chunk = dist_.eval_chunk(len(frames[split]), d)
        images = images_train if split == "train" else decode_all(info, frames[split])
        labels = frames[split].label.to_numpy()
        return eval_loader(images[chunk], labels[chunk], resize_crop, norm, eval_batch_size(cfg.batch_size, device),
                           workers, pin)

    def set_epoch(epoch: int) -> None:
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch)

    return train, set_epoch, evaluation


__all__ = ["RunData", "PIPELINES", "eval_batch_size", "resolve_pipeline", "build_loaders", "build_eval_loader"]
