"""Batched on-device augmentation (fgvc.data.batched) against torchvision's transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from fgvc.data.batched import (BatchedTrainLoader, CropParams, DeviceEvalLoader, draw_epoch, normalize_batch,
                          resized_crop_batch, sample_resized_crop_params)
from fgvc.data.cache import ImageCache, build_image_cache
from fgvc.data.sampling import EpochSampler
from fgvc.data.decode import decode_all
from fgvc.data.per_sample import eval_loader
from fgvc.data.transforms import eval_resize_crop, normalize
from fgvc.data.dataset import load_dataset_info

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
N_OURS, N_TV = 20_000, 10_000
# (height, width): landscape and portrait CUB-like, square, and two that mostly hit the fallback.
SIZES = [(375, 500), (500, 375), (64, 64), (40, 400), (400, 40)]


# --------------------------------------------------------------------------- crop parameters
def _ours(h: int, w: int, n: int = N_OURS, seed: int = 0, **kw) -> CropParams:
    g = torch.Generator().manual_seed(seed)
    return sample_resized_crop_params(torch.full((n,), h), torch.full((n,), w), g, **kw)


def _torchvision(h: int, w: int, n: int = N_TV, seed: int = 1, **kw) -> CropParams:
    t = v2.RandomResizedCrop(8, **kw)
    img = torch.empty(3, h, w, dtype=torch.uint8)
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(n):
            p = t.make_params([img])
            rows.append((p["top"], p["left"], p["height"], p["width"]))
    return CropParams(*torch.tensor(rows, dtype=torch.int64).T)


def _uniform_ratio(h: int, w: int, n: int = N_OURS, seed: int = 2) -> CropParams:
    """A deliberately wrong sampler: aspect ratio uniform instead of log-uniform."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        for _ in range(10):
            area, ar = h * w * rng.uniform(0.08, 1.0), rng.uniform(3 / 4, 4 / 3)
            cw, ch = round(math.sqrt(area * ar)), round(math.sqrt(area / ar))
            if 0 < cw <= w and 0 < ch <= h:
                rows.append((rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1), ch, cw))
                break
        else:
            rows.append((0, 0, h, w))
    return CropParams(*torch.tensor(rows, dtype=torch.int64).T)


def _features(p: CropParams, h: int, w: int) -> dict[str, np.ndarray]:
    ph, pw, top, left = (t.double().numpy() for t in (p.height, p.width, p.top, p.left))
    return {"area": ph * pw / (h * w), "log_ratio": np.log(pw / ph),
            "cx": (left + pw / 2) / w, "cy": (top + ph / 2) / h}


def _fallback_rate(p: CropParams, h: int, w: int) -> float:
    fb = sample_resized_crop_params(torch.tensor([h]), torch.tensor([w]), torch.Generator(), scale=(2.0, 2.0))
    same = (p.top == fb.top) & (p.left == fb.left) & (p.height == fb.height) & (p.width == fb.width)
    return same.double().mean().item()


def _ks_pvalues(a: CropParams, b: CropParams, h: int, w: int) -> dict[str, float]:
    fa, fb = _features(a, h, w), _features(b, h, w)
    return {k: ks_2samp(fa[k], fb[k]).pvalue for k in fa}


@pytest.fixture(scope="module")
def tv_params() -> dict[tuple[int, int], CropParams]:
    return {s: _torchvision(*s) for s in SIZES}


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_crop_distribution_matches_torchvision(size, tv_params):
    h, w = size
    ours, tv = _ours(h, w), tv_params[size]
    assert ((ours.top >= 0) & (ours.left >= 0) & (ours.height >= 1) & (ours.width >= 1)).all()
    assert ((ours.top + ours.height <= h) & (ours.left + ours.width <= w)).all()
    pvalues = _ks_pvalues(ours, tv, h, w)
    assert min(pvalues.values()) > 1e-3, pvalues
    # Fallback rate: two-proportion test at ~4 standard errors.
    ra, rb = _fallback_rate(ours, h, w), _fallback_rate(tv, h, w)
    pooled = (ra * N_OURS + rb * N_TV) / (N_OURS + N_TV)
    se = math.sqrt(pooled * (1 - pooled) * (1 / N_OURS + 1 / N_TV)) + 1e-12
    assert abs(ra - rb) <= 4 * se + 1e-9, (ra, rb)


@pytest.mark.slow
def test_narrow_images_exercise_the_fallback(tv_params):
    for size in [(40, 400), (400, 40)]:
        rate = _fallback_rate(tv_params[size], *size)
        assert 0.2 < rate < 0.9, (size, rate)
    # torchvision's fallback box: the full short side, the long side clamped to the ratio, centred.
    p = sample_resized_crop_params(torch.tensor([40, 400, 64]), torch.tensor([400, 40, 64]), torch.Generator(),
                                   scale=(2.0, 2.0))
    assert p.height.tolist() == [40, 53, 64] and p.width.tolist() == [53, 40, 64]
    assert p.top.tolist() == [0, 173, 0] and p.left.tolist() == [173, 0, 0]


def test_fallback_box_is_torchvisions():
    """With an impossible scale every attempt fails: the central crop must match exactly."""
    sizes = [(h, w) for h in (1, 2, 7, 40, 53, 375, 400, 500) for w in (1, 3, 7, 40, 53, 375, 400, 500)]
    t = v2.RandomResizedCrop(8, scale=(2.0, 2.0))
    ref = [tuple(t.make_params([torch.empty(3, h, w)]).values()) for h, w in sizes]
    hs, ws = torch.tensor(sizes).T
    p = sample_resized_crop_params(hs, ws, torch.Generator(), scale=(2.0, 2.0))
    got = list(zip(p.top.tolist(), p.left.tolist(), p.height.tolist(), p.width.tolist()))
    assert got == ref


@pytest.mark.slow
def test_ks_test_rejects_wrong_distributions(tv_params):
    """The comparison above has power: a wrong scale or a uniform (not log-uniform) ratio fails it."""
    h, w = 375, 500
    tv = tv_params[(h, w)]
    assert _ks_pvalues(_ours(h, w, scale=(0.2, 1.0)), tv, h, w)["area"] < 1e-3
    assert _ks_pvalues(_uniform_ratio(h, w), tv, h, w)["log_ratio"] < 1e-3
    assert _ks_pvalues(_ours(h, w, ratio=(0.7, 1.45)), tv, h, w)["log_ratio"] < 1e-3


def test_epoch_draws_are_seeded_and_indexed_by_image():
    sizes = torch.tensor([[375, 500], [500, 375], [64, 64]] * 10)
    a, b = draw_epoch(sizes, seed=3, epoch=1), draw_epoch(sizes, seed=3, epoch=1)
    assert all(torch.equal(x, y) for x, y in zip(a.crops, b.crops)) and torch.equal(a.flip, b.flip)
    c = draw_epoch(sizes, seed=3, epoch=2)
    assert not torch.equal(a.crops.top, c.crops.top)
    assert 0.2 < a.flip.double().mean().item() < 0.8


# --------------------------------------------------------------------------- pixels
def _smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 6, 8, generator=g) * 255
    img = torch.nn.functional.interpolate(base, size=(h, w), mode="bicubic", align_corners=False)
    noise = torch.randn(3, h, w, generator=g) * 12
    return (img[0] + noise).clamp(0, 255).round().to(torch.uint8)


BOXES = [(10, 20, 50, 60), (0, 0, 75, 100), (5, 7, 16, 16), (30, 40, 9, 13), (3, 1, 32, 32)]


@pytest.fixture(scope="module")
def pixel_cache() -> ImageCache:
    return ImageCache.from_images([_smooth_image(75, 100, 0), _smooth_image(64, 48, 1)])


def _params(boxes) -> CropParams:
    return CropParams(*torch.tensor(boxes, dtype=torch.int64).T)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resized_crop_matches_torchvision(pixel_cache, interpolation):
    size = 32
    idx = [0, 0, 1, 0, 1]
    got = resized_crop_batch(pixel_cache, idx, _params(BOXES), size, MEAN, STD, interpolation=interpolation)
    assert got.dtype == torch.float32 and got.shape == (len(idx), 3, size, size)
    assert got.is_contiguous(memory_format=torch.channels_last)
    norm = normalize(MEAN, STD)
    tolerance = 1.0 if interpolation == "bilinear" else 2.0
    for k, (i, (t, l, h, w)) in enumerate(zip(idx, BOXES)):
        img = pixel_cache.image(i)
        # torchvision's CPU uint8 kernel (fixed point, uint8 between its two separable passes) differs
        # from its own float path by one grey level, two for bicubic's overshoot near edges.
        ref = norm(TF.resized_crop(img, t, l, h, w, [size, size], interpolation=v2.InterpolationMode(interpolation),
                                   antialias=True))
        diff = (got[k] - ref).abs() * torch.tensor(STD).view(3, 1, 1) * 255
        assert diff.max().item() <= tolerance + 1e-3, (k, diff.max().item())
        assert diff.mean().item() < 0.5
        # torchvision's float path rounded to uint8 (what it does for uint8 on a GPU): identical.
        ref_f = TF.resized_crop(img.float(), t, l, h, w, [size, size], interpolation=v2.InterpolationMode(interpolation),
                                antialias=True).clamp(0, 255).round()
        torch.testing.assert_close(got[k], norm(ref_f.to(torch.uint8)), atol=1e-6, rtol=0)


def test_flip_flips_only_where_asked(pixel_cache):
    idx, params = [0, 1, 0], _params(BOXES[:3])
    plain = resized_crop_batch(pixel_cache, idx, params, 24, MEAN, STD)
    flipped = resized_crop_batch(pixel_cache, idx, params, 24, MEAN, STD, flip=torch.tensor([True, False, True]))
    assert flipped.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(flipped[0], plain[0].flip(-1)) and torch.equal(flipped[2], plain[2].flip(-1))
    assert torch.equal(flipped[1], plain[1])


# --------------------------------------------------------------------------- loaders
def _constant_cache(n: int) -> ImageCache:
    """Image i is constant 10*i (sizes vary), so any crop of it says which image it was."""
    sizes = [(20 + 3 * (i % 4), 30 - 2 * (i % 5)) for i in range(n)]
    return ImageCache.from_images([torch.full((3, h, w), 10 * i, dtype=torch.uint8) for i, (h, w) in enumerate(sizes)])


def _image_index(x: torch.Tensor) -> torch.Tensor:
    value = x[:, 0] * STD[0] + MEAN[0]  # back to [0, 1]
    return (value.mean((1, 2)) * 255 / 10).round().long()


def _loader(cache, bs=5, seed=7, drop_last=False, **kw) -> BatchedTrainLoader:
    return BatchedTrainLoader(cache, np.arange(len(cache)), bs, seed, 16, MEAN, STD, drop_last=drop_last, **kw)


def test_loader_epoch_covers_every_image_once_with_aligned_labels():
    cache = _constant_cache(23)
    loader = _loader(cache)
    loader.set_epoch(2)
    batches = list(loader)
    assert len(batches) == len(loader) == 5 and [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(23))
    sampler = EpochSampler(23, 7)
    sampler.set_epoch(2)
    assert seen.tolist() == list(sampler)  # the same batch order as the DataLoader path
    for x, y in batches:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16) and y.dtype == torch.int64
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(_image_index(x), y)


def test_loader_drop_last():
    loader = _loader(_constant_cache(23), drop_last=True)
    assert len(loader) == 4 and [len(y) for _, y in loader] == [5] * 4


def test_loader_is_deterministic_and_independent_of_batch_composition():
    cache = ImageCache.from_images([_smooth_image(40 + i, 50 - i, i) for i in range(11)])

    def per_image(bs: int, epoch: int) -> dict[int, torch.Tensor]:
        loader = _loader(cache, bs=bs)
        loader.set_epoch(epoch)
        return {i: x[k] for x, y in loader for k, i in enumerate(y.tolist())}

    a, b, c, other = per_image(4, 1), per_image(4, 1), per_image(3, 1), per_image(4, 2)
    assert all(torch.equal(a[i], b[i]) and torch.equal(a[i], c[i]) for i in a)
    assert sum(torch.equal(a[i], other[i]) for i in a) < 3


def test_loader_checks_its_arguments(pixel_cache):
    with pytest.raises(ValueError, match="labels"):
        BatchedTrainLoader(pixel_cache, np.arange(3), 2, 0, 16, MEAN, STD)
    with pytest.raises(ValueError, match="interpolation"):
        BatchedTrainLoader(pixel_cache, np.arange(2), 2, 0, 16, MEAN, STD, interpolation="lanczos")


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_eval_loader_equals_the_dataloader_path(sparrow_dataset, tmp_path, monkeypatch, interpolation):
    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path))
    info = load_dataset_info(sparrow_dataset)
    frame = info.split(train=False)
    labels = frame.label.to_numpy()
    resize_crop = eval_resize_crop(32, 0.875, interpolation)
    ref = list(eval_loader(decode_all(info, frame), labels, resize_crop, normalize(MEAN, STD), 7, 0, False))
    ours = DeviceEvalLoader(build_image_cache(info, frame), labels, 7, resize_crop, MEAN, STD)
    assert len(ours) == len(ref)
    for (x, y), (rx, ry) in zip(ours, ref):
        assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32
        torch.testing.assert_close(x, rx, atol=1e-6, rtol=0)
        assert torch.equal(y, ry)


def test_normalize_batch_matches_torchvision():
    x = torch.randint(0, 256, (2, 3, 5, 6), dtype=torch.uint8)
    torch.testing.assert_close(normalize_batch(x, MEAN, STD), normalize(MEAN, STD)(x), atol=1e-6, rtol=0)


def test_evaluation_batch_is_the_training_batch_on_cpu(sparrow_dataset):
    """On a CPU evaluation runs in training-sized batches (a batch of 64 grew a Lite0 run's peak
    memory by about 0.9 GB); on a GPU at least 64."""
    from fgvc.config import RunConfig
    from fgvc.data.loaders import build_loaders, eval_batch_size

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert eval_batch_size(32, cpu) == 32 and eval_batch_size(8, cpu) == 8
    assert eval_batch_size(32, cuda) == 64 and eval_batch_size(128, cuda) == 128
    info = load_dataset_info(sparrow_dataset)
    cfg = RunConfig(model="test_resnet", pretrained=False, batch_size=4, image_size=32, epochs=1).validate()
    frames = {"train": info.split(True), "test": info.split(False), "val": None}
    dcfg = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear")
    for pipeline in ("per-sample", "batched"):
        data = build_loaders(cfg, info, frames, dcfg, cpu, pipeline=pipeline, workers=0)
        x, _ = next(iter(data.test))
        assert len(x) == 4
