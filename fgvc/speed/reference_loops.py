"""The two loops `fgvc speed` measures fgvc against, written as their users write them.

- `examples`: pytorch/examples `imagenet/main.py`: an image folder that opens and decodes
  every JPEG with PIL on every access, torchvision transforms (RandomResizedCrop, flip,
  ToTensor, Normalize), DataLoader workers with pinned memory, fp32, contiguous (NCHW)
  tensors, `loss.item()` per step, the test set evaluated after every epoch.
- `cached`: what a competent user writes in an afternoon: every image decoded once into
  memory as uint8, torchvision v2 transforms in DataLoader workers (persistent), channels_last,
  fp32, the test set evaluated once after the last epoch.

Neither uses any of fgvc's data or training code.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms import v2


# --------------------------------------------------------------------------- pytorch/examples
class PILImageFolder(Dataset):
    """pytorch/examples' ImageFolder: open and decode the JPEG on every access."""

    def __init__(self, root: Path, frame: pd.DataFrame, transform):
        self.paths = [root / p for p in frame.path]
        self.labels = frame.label.to_numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with open(self.paths[i], "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.transform(img), int(self.labels[i])


def examples_loaders(info, size: int, crop_pct: float, mean, std, batch_size: int, workers: int,
                     pin: bool) -> tuple[DataLoader, DataLoader]:
    normalize = transforms.Normalize(mean=list(mean), std=list(std))
    train = PILImageFolder(info.root, info.split(True), transforms.Compose([
        transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
    test = PILImageFolder(info.root, info.split(False), transforms.Compose([
        transforms.Resize(int(size / crop_pct)), transforms.CenterCrop(size), transforms.ToTensor(), normalize]))
    return (DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=pin),
            DataLoader(test, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin))


def examples_train(model, loader, optimizer, device: torch.device, batches: int) -> int:
    """pytorch/examples' train loop body over `batches` batches; returns images seen."""
    model.train()
    n = 0
    for images, target in itertools.islice(loader, batches):
        images = images.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        output = model(images)
        loss = F.cross_entropy(output, target)
        acc = (output.argmax(1) == target).float().mean()
        loss.item(), acc.item()  # the example's meters read both every step (a device sync)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n += images.shape[0]
    return n


@torch.no_grad()
def examples_eval(model, loader, device: torch.device) -> int:
    model.eval()
    n = 0
    for images, target in loader:
        images = images.to(device, non_blocking=True)
        output = model(images)
        (output.argmax(1).cpu() == target).sum().item()
        n += images.shape[0]
    return n


# --------------------------------------------------------------------------- cached loop
class DecodedImages(Dataset):
    """Every image decoded once (PIL) into a uint8 tensor; the transform runs per access."""

    def __init__(self, root: Path, frame: pd.DataFrame, transform):
        self.images = []
        for p in frame.path:
            with Image.open(root / p) as im:
                self.images.append(v2.functional.pil_to_tensor(im.convert("RGB")))
        self.labels = frame.label.to_numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def cached_loaders(info, size: int, crop_pct: float, mean, std, batch_size: int, workers: int,
                   pin: bool) -> tuple[DataLoader, DataLoader]:
    """Decodes both splits (the one-time cost `fgvc speed` times as the loop's setup)."""
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    train = DecodedImages(info.root, info.split(True), v2.Compose([
        v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), *tail]))
    test = DecodedImages(info.root, info.split(False), v2.Compose([
        v2.Resize(int(size / crop_pct), antialias=True), v2.CenterCrop(size), *tail]))
    kw = dict(num_workers=workers, pin_memory=pin, persistent_workers=workers > 0)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, **kw),
            DataLoader(test, batch_size=batch_size, shuffle=False, **kw))


def cached_train(model, loader, optimizer, device: torch.device, batches: int) -> int:
    """A plain training loop over `batches` batches, channels_last, no per-step sync."""
    model.train()
    n = 0
    for images, target in itertools.islice(loader, batches):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(images), target.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += images.shape[0]
    return n


@torch.inference_mode()
def cached_eval(model, loader, device: torch.device) -> int:
    model.eval()
    n = 0
    for images, target in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        (model(images).argmax(1).cpu() == target).sum().item()
        n += images.shape[0]
    return n


__all__ = ["PILImageFolder", "examples_loaders", "examples_train", "examples_eval", "DecodedImages",
           "cached_loaders", "cached_train", "cached_eval"]
