"""The per-sample pipeline: decoded uint8 images in memory, augmented one by one in a
DataLoader (torchvision v2), each image's crop drawn from a generator seeded by
(seed, epoch, image index). The default on CPU.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from fgvc.data.sampling import sample_seed


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


def default_workers(device: torch.device) -> int:
    """On CPU the model uses every core and augmenting in-memory tensors is cheap: no
    workers. On a GPU, enough workers to keep it fed."""
    if device.type == "cpu":
        return 0
    return min(8, max(1, (os.cpu_count() or 2) - 1))


__all__ = ["TrainImages", "EvalImages", "eval_loader", "default_workers"]
