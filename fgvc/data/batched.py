"""Training augmentation in batches on the device that holds the decoded images.

Why GPU-resident: a small backbone on a GPU eats thousands of images a second, more than a
few CPU workers can crop and resize, and worker processes each copy the decoded split. Here
the whole split lives on the device as one uint8 `ImageCache` (a few GB for all of CUB), and
each batch is cropped, resized, flipped and normalised there: no workers, no host-to-device
image traffic, one code path that also runs (slower, for tests) on CPU tensors.

Why the random draws are made per epoch on the CPU: every crop box and flip of an epoch is
drawn at once, for all N images, from one CPU generator seeded by (seed, epoch), and looked up
by image index. So an image's augmentation does not depend on the batch size, on which images
share its batch, on the device, or on how far a resumed run got: like `fgvc.data.per_sample.TrainImages`
(whose per-sample streams it replaces), only the random stream differs.

Equivalence to torchvision: `sample_resized_crop_params` is `v2.RandomResizedCrop`'s
`make_params` vectorised: 10 attempts per image, area fraction uniform in `scale`, log aspect
ratio uniform in log(`ratio`), w = round(sqrt(area * r)), h = round(sqrt(area / r)) (round half
to even, as Python's `round`), the first attempt that fits wins, top/left uniform integers;
otherwise the same central crop clamped to `ratio`. The distribution of boxes is therefore
the same (tests compare them with KS tests). The resize interpolates in float32 with
antialiasing and rounds to the uint8 grid, which is what torchvision does for uint8 tensors
on a GPU (its CPU kernel works in fixed point and may differ by one grey level).
"""

from __future__ import annotations

import math
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fgvc.data.cache import ImageCache
from fgvc.data.sampling import EpochSampler, sample_seed

AUGMENT_STREAM = 0xA06  # third key of sample_seed for the per-epoch crop/flip draws
ATTEMPTS = 10  # torchvision's number of tries before the central-crop fallback
INTERPOLATIONS = ("bilinear", "bicubic")


class CropParams(NamedTuple):
    """Crop boxes, one row per image (int64 CPU tensors)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor

    def select(self, idx: torch.Tensor) -> "CropParams":
        return CropParams(*(t[idx] for t in self))


class EpochDraws(NamedTuple):
    """Everything random about one epoch's augmentation, indexed by image index."""

    crops: CropParams
    flip: torch.Tensor  # bool (N,)


def _fallback_crop(heights: torch.Tensor, widths: torch.Tensor, ratio: tuple[float, float]) -> CropParams:
    """torchvision's central crop when no attempt fits: the whole image, clamped to `ratio`."""
    lo, hi = min(ratio), max(ratio)
    h64, w64 = heights.double(), widths.double()
    too_tall, too_wide = w64 / h64 < lo, w64 / h64 > hi
    h = torch.where(too_tall, torch.round(w64 / lo), h64).long()
    w = torch.where(too_wide, torch.round(h64 * hi), w64).long()
    return CropParams((heights - h) // 2, (widths - w) // 2, h, w)


def sample_resized_crop_params(heights: torch.Tensor, widths: torch.Tensor, generator: torch.Generator,
                               scale: tuple[float, float] = (0.08, 1.0),
                               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> CropParams:
    """RandomResizedCrop boxes for images of the given sizes, drawn in one go on the CPU."""
    heights = torch.as_tensor(heights, dtype=torch.int64).cpu()
    widths = torch.as_tensor(widths, dtype=torch.int64).cpu()
    n = heights.numel()
    area = (heights * widths).double()[:, None]
    frac = torch.empty(n, ATTEMPTS, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, ATTEMPTS, dtype=torch.float64).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                                   generator=generator)
    u_top, u_left = torch.rand(2, n, dtype=torch.float64, generator=generator)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(area * frac * aspect)).long()
    h = torch.round(torch.sqrt(area * frac / aspect)).long()
    fits = (w > 0) & (w <= widths[:, None]) & (h > 0) & (h <= heights[:, None])
    first = fits.long().argmax(1)  # argmax returns the first maximum: the first attempt that fits
    found = fits.any(1)
    h = h.gather(1, first[:, None])[:, 0]
    w = w.gather(1, first[:, None])[:, 0]
    # floor(u * (k + 1)) is uniform on 0..k like torch.randint(0, k + 1); min() guards u -> 1.
    top = torch.minimum((u_top * (heights - h + 1)).long(), heights - h)
    left = torch.minimum((u_left * (widths - w + 1)).long(), widths - w)
    fb = _fallback_crop(heights, widths, ratio)
    return CropParams(*(torch.where(found, a, b) for a, b in zip((top, left, h, w), fb)))


def draw_epoch(sizes: torch.Tensor, seed: int, epoch: int, scale: tuple[float, float] = (0.08, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> EpochDraws:
    """All crop boxes and flips of one epoch, for every image (sizes: (N, 2) heights, widths)."""
    g = torch.Generator().manual_seed(sample_seed(seed, epoch, AUGMENT_STREAM))
    sizes = torch.as_tensor(sizes).cpu()
    crops = sample_resized_crop_params(sizes[:, 0], sizes[:, 1], g, scale, ratio)
    flip = torch.rand(len(sizes), generator=g) < 0.5
    return EpochDraws(crops, flip)


def _stats(values: Sequence[float], device: torch.device) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device).view(1, -1, 1, 1)


def _labels_tensor(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        return labels.to(torch.int64)
    return torch.from_numpy(np.array(labels, dtype=np.int64))  # a copy: pandas may hand out read-only arrays


def normalize_batch(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or uint8-valued float) batch -> float32 normalised, with the operations (and so the
    rounding) of `v2.ToDtype(float32, scale=True)` + `v2.Normalize`."""
    x = x.to(torch.float32).mul_(1.0 / 255)
    return x.sub_(_stats(mean, x.device)).div_(_stats(std, x.device))


def resized_crop_batch(cache: ImageCache, indices: torch.Tensor | Sequence[int], params: CropParams, size: int,
                       mean: Sequence[float], std: Sequence[float], flip: torch.Tensor | None = None,
                       interpolation: str = "bilinear") -> torch.Tensor:
    """Crop box k of image indices[k], resize to size x size (antialiased), flip where `flip`,
    normalise: float32 (B, 3, size, size), channels_last, on the cache's device.

    `params` and `flip` have one row per entry of `indices`.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    idx = torch.as_tensor(indices).tolist()
    out = torch.empty((len(idx), 3, size, size), dtype=torch.float32, device=cache.device,
                      memory_format=torch.channels_last)
    boxes = zip(idx, *(t.tolist() for t in params))
    for k, (i, top, left, h, w) in enumerate(boxes):
        crop = cache.image(i)[:, top:top + h, left:left + w].to(torch.float32)
        if (h, w) != (size, size):  # torchvision returns an already-sized crop untouched
            crop = F.interpolate(crop[None], size=(size, size), mode=interpolation, align_corners=False,
                                 antialias=True)[0]
        out[k].copy_(crop)
    out.clamp_(0, 255).round_()  # back on the uint8 grid, as torchvision's uint8 resize
    if flip is not None:
        f = torch.as_tensor(flip, dtype=torch.bool).to(out.device, non_blocking=True).view(-1, 1, 1, 1)
        out = torch.where(f, out.flip(-1), out).contiguous(memory_format=torch.channels_last)
    return normalize_batch(out, mean, std)


class BatchedTrainLoader:
    """An epoch of augmented training batches, made on the cache's device without workers.

    Iterate like a DataLoader; call `set_epoch(e)` before each epoch (forwarded to the
    sampler, so the batch order matches `fgvc.data.sampling.EpochSampler` for the same seed).
    Yields (x, y): x float32 (B, 3, S, S) channels_last, y int64, both on the cache's device.
    """

    def __init__(self, cache: ImageCache, labels: np.ndarray | torch.Tensor, batch_size: int, seed: int,
                 image_size: int, mean: Sequence[float], std: Sequence[float],
                 sampler: EpochSampler | None = None, drop_last: bool = False, interpolation: str = "bilinear",
                 scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        if len(labels) != len(cache):
            raise ValueError(f"{len(labels)} labels for {len(cache)} images")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.cache, self.batch_size, self.seed, self.image_size = cache, batch_size, seed, image_size
        self.labels = _labels_tensor(labels).to(cache.device)
        self.mean, self.std, self.interpolation = list(mean), list(std), interpolation
        self.sampler = sampler if sampler is not None else EpochSampler(len(cache), seed)
        self.drop_last, self.scale, self.ratio = drop_last, scale, ratio
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        draws = draw_epoch(self.cache.sizes, self.seed, self.epoch, self.scale, self.ratio)
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.int64)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = resized_crop_batch(self.cache, idx, draws.crops.select(idx), self.image_size, self.mean, self.std,
                                   flip=draws.flip[idx], interpolation=self.interpolation)
            yield x, self.labels[idx.to(self.labels.device, non_blocking=True)]


class DeviceEvalLoader:
    """Deterministic evaluation batches: every image resized and center-cropped once (with
    `fgvc.data.transforms.eval_resize_crop`) into one uint8 (N, 3, S, S) tensor on `device`, normalised
    per batch. Same values as `fgvc.data.per_sample.eval_loader` when the cache is on the CPU.

    Yields (x, y): x float32 channels_last on `device`; y int64 on the CPU, as a DataLoader's
    labels (`fgvc.engine.loop.predict` gathers them with `.numpy()`).
    """

    def __init__(self, cache: ImageCache, labels: np.ndarray | torch.Tensor, batch_size: int, resize_crop,
                 mean: Sequence[float], std: Sequence[float], device: torch.device | str | None = None):
        if len(labels) != len(cache):
            raise ValueError(f"{len(labels)} labels for {len(cache)} images")
        device = torch.device(device) if device is not None else cache.device
        # Resize where the cache lives (a CPU cache gives bit-identical pixels to eval_loader).
        crops = [resize_crop(cache.image(i)) for i in range(len(cache))]
        self.images = torch.stack(crops).to(device) if crops else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
        self.labels = _labels_tensor(labels).cpu()
        self.batch_size, self.mean, self.std = batch_size, list(mean), list(std)

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for a in range(0, len(self.labels), self.batch_size):
            x = normalize_batch(self.images[a:a + self.batch_size], self.mean, self.std)
            yield x.contiguous(memory_format=torch.channels_last), self.labels[a:a + self.batch_size]


__all__ = ["AUGMENT_STREAM", "CropParams", "EpochDraws", "sample_resized_crop_params", "draw_epoch",
           "normalize_batch", "resized_crop_batch", "BatchedTrainLoader", "DeviceEvalLoader"]
