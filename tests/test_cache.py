"""Decoded-image cache (fgvc.data.cache): one flat uint8 buffer, memory-mapped across runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import fgvc.data.cache
from fgvc.data.cache import ImageCache, build_image_cache
from fgvc.data.decode import decode_all
from fgvc.data.dataset import load_dataset_info


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path))
    return tmp_path / "decoded"


@pytest.fixture(scope="module")
def info(sparrow_dataset):
    return load_dataset_info(sparrow_dataset)


def _assert_same(cache: ImageCache, images: list[torch.Tensor]) -> None:
    assert len(cache) == len(images)
    for i, im in enumerate(images):
        assert torch.equal(cache.image(i), im)
    assert cache.sizes.tolist() == [list(im.shape[1:]) for im in images]


def test_from_images_packs_mixed_sizes_without_padding():
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in [(5, 7), (9, 2), (1, 1)]]
    cache = ImageCache.from_images(images)
    _assert_same(cache, images)
    assert cache.buffer.dim() == 1 and cache.nbytes == 3 * (35 + 18 + 1)
    assert cache.image(1).data_ptr() == cache.buffer.data_ptr() + 3 * 35  # a view, not a copy
    moved = cache.to("cpu")
    _assert_same(moved, images)
    with pytest.raises(ValueError, match="1-D uint8"):
        ImageCache(cache.buffer[:-1], cache.sizes)


def test_round_trip_equals_decode_all(info, cache_dir):
    frame = info.split(train=True)
    ref = decode_all(info, frame)
    _assert_same(build_image_cache(info, frame), ref)
    _assert_same(build_image_cache(info, frame, disk=False), ref)
    assert len(list(cache_dir.glob("*.u8"))) == 1 and len(list(cache_dir.glob("*.json"))) == 1


def test_second_build_maps_the_file_without_decoding(info, cache_dir, monkeypatch):
    frame = info.split(train=True)
    first = build_image_cache(info, frame)
    (data,) = cache_dir.glob("*.u8")
    mtime = data.stat().st_mtime_ns

    def no_decode(path):
        raise AssertionError(f"decoded {path} although the cache file exists")

    monkeypatch.setattr(fgvc.data.cache, "decode_image", no_decode)
    second = build_image_cache(info, frame)
    assert data.stat().st_mtime_ns == mtime
    _assert_same(second, [first.image(i) for i in range(len(first))])


@pytest.mark.parametrize("damage", ["truncate", "index"])
def test_damaged_cache_is_rebuilt(info, cache_dir, damage):
    frame = info.split(train=False)
    build_image_cache(info, frame)
    (data,) = cache_dir.glob("*.u8")
    (index,) = cache_dir.glob("*.json")
    size = data.stat().st_size
    if damage == "truncate":
        with open(data, "r+b") as f:
            f.truncate(size // 2)
    else:
        index.write_text("{not json")
    _assert_same(build_image_cache(info, frame), decode_all(info, frame))
    assert data.stat().st_size == size


def test_different_frames_get_different_files(info, cache_dir):
    build_image_cache(info, info.split(train=True))
    build_image_cache(info, info.split(train=False))
    build_image_cache(info, info.split(train=False).iloc[::-1])  # order fixes the layout: its own file
    assert len(list(cache_dir.glob("*.u8"))) == 3


def test_no_content_hash_means_memory_only(info, cache_dir):
    bare = dataclasses.replace(info, meta={k: v for k, v in info.meta.items() if k != "content_sha256"})
    frame = bare.split(train=False)
    _assert_same(build_image_cache(bare, frame), decode_all(info, frame))
    assert not cache_dir.exists() or not any(cache_dir.iterdir())
