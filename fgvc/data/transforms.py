"""The per-sample transforms (torchvision v2): the published training augmentation and the
deterministic evaluation resize + center crop, with the model's mean / std / interpolation.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from fgvc.errors import FGVCError


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


__all__ = ["interpolation_mode", "train_transform", "eval_resize_crop", "normalize"]
