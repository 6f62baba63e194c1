"""Decoded images of one split as a single flat uint8 buffer, optionally memory-mapped.

Why one flat buffer: images of different sizes need no padding (CUB photos vary), the whole
split moves to a GPU in one copy, and a crop of image i is a view, never a copy. Why a file:
decoding ~6,000 JPEGs costs about a minute per process; the decoded bytes are written once
under `$FGVC_CACHE_DIR/decoded/` (default `~/.cache/fgvc/decoded/`) and every later run, shard or
worker maps them (pages shared by the OS). The file is keyed by the dataset's
`content_sha256` and a hash of the frame's image paths, so a changed dataset or a different
split never reads stale pixels. A file whose size disagrees with its index is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from fgvc.data.dataset import DatasetInfo
from fgvc.data.decode import decode_image
from fgvc.errors import FGVCError
from fgvc.io import atomic_path, atomic_write_json, cache_dir, is_no_space, no_space_error

CACHE_FORMAT = 1  # bump when the layout or the decoding changes: old files are then ignored


class ImageCache:
    """N images (3 x h_i x w_i, uint8, channels first) packed in one 1-D buffer.

    The index (offsets, sizes) always stays on the CPU: slicing needs Python ints, and
    keeping it there means no device sync per image.
    """

    def __init__(self, buffer: torch.Tensor, sizes: torch.Tensor):
        sizes = torch.as_tensor(sizes, dtype=torch.int64).reshape(-1, 2).cpu()
        numel = 3 * sizes[:, 0] * sizes[:, 1]
        offsets = torch.cumsum(numel, 0) - numel
        total = int(numel.sum())
        if buffer.dtype != torch.uint8 or buffer.dim() != 1 or buffer.numel() != total:
            raise ValueError(f"buffer must be 1-D uint8 with {total} elements, got {buffer.dtype} {tuple(buffer.shape)}")
        self.buffer, self.sizes, self.offsets = buffer, sizes, offsets
        self._index = list(zip(offsets.tolist(), sizes[:, 0].tolist(), sizes[:, 1].tolist()))

    @classmethod
    def from_images(cls, images: list[torch.Tensor]) -> "ImageCache":
        """Pack already-decoded (3, h, w) uint8 images (tests, in-memory use)."""
        sizes = torch.tensor([[im.shape[-2], im.shape[-1]] for im in images], dtype=torch.int64).reshape(-1, 2)
        buffer = torch.cat([im.reshape(-1) for im in images]) if images else torch.empty(0, dtype=torch.uint8)
        return cls(buffer.to(torch.uint8), sizes)

    @property
    def device(self) -> torch.device:
        return self.buffer.device

    @property
    def nbytes(self) -> int:
        return self.buffer.numel()

    def __len__(self) -> int:
        return len(self._index)

    def image(self, i: int) -> torch.Tensor:
        """A (3, h, w) view into the buffer (no copy)."""
        off, h, w = self._index[i]
        return self.buffer[off:off + 3 * h * w].view(3, h, w)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "ImageCache":
        """The same images with the buffer on `device` (one copy; the index stays on the CPU)."""
        return ImageCache(self.buffer.to(device, non_blocking=non_blocking), self.sizes)


# --------------------------------------------------------------------------- building
def default_cache_dir() -> Path:
    return cache_dir("decoded")


def paths_hash(paths: list[str]) -> str:
    """Identity of a frame's image list (order matters: it fixes the buffer layout)."""
    return hashlib.sha256("\n".join(paths).encode("utf-8")).hexdigest()


def _header_sizes(root: Path, paths: list[str]) -> torch.Tensor:
    """(h, w) per image from the file headers only, so the buffer can be allocated first."""
    sizes = []
    for p in paths:
        try:
            with Image.open(root / p) as im:
                w, h = im.size
        except FileNotFoundError:
            raise FGVCError(f"image listed in the manifest is missing: {root / p} "
                            "(run `python -m data_prep.verify` on the dataset)") from None
        except OSError as e:
            raise FGVCError(f"cannot read image {root / p}: {e} (run `python -m data_prep.verify` on the dataset)") from None
        sizes.append((h, w))
    return torch.tensor(sizes, dtype=torch.int64).reshape(-1, 2)


def _decode_into(out: np.ndarray, root: Path, paths: list[str], sizes: torch.Tensor) -> None:
    """Decode every image (with `decode_image`) straight into its slot of `out`."""
    off = 0
    for p, (h, w) in zip(paths, sizes.tolist()):
        img = decode_image(root / p)
        if tuple(img.shape) != (3, h, w):
            raise FGVCError(f"image {root / p} decodes to {tuple(img.shape[1:])}, its header says {(h, w)}; "
                            "re-create the dataset")
        n = 3 * h * w
        out[off:off + n] = img.reshape(-1).numpy()
        off += n


def _build_in_memory(root: Path, paths: list[str]) -> ImageCache:
    sizes = _header_sizes(root, paths)
    buffer = torch.empty(int((3 * sizes[:, 0] * sizes[:, 1]).sum()), dtype=torch.uint8)
    _decode_into(buffer.numpy(), root, paths, sizes)
    return ImageCache(buffer, sizes)


def _cache_files(cache_dir: Path, content_sha256: str, phash: str) -> tuple[Path, Path]:
    stem = f"{content_sha256[:16]}-{phash[:16]}-v{CACHE_FORMAT}"
    return cache_dir / f"{stem}.u8", cache_dir / f"{stem}.json"


def _map_existing(data: Path, index: Path, content_sha256: str, phash: str, n: int) -> ImageCache | None:
    """The cache file mapped copy-on-write, or None when it is absent or does not match its index."""
    try:
        meta = json.loads(index.read_text())
        sizes = torch.tensor(meta["sizes"], dtype=torch.int64).reshape(-1, 2)
        ok = (meta.get("format") == CACHE_FORMAT and meta.get("content_sha256") == content_sha256
              and meta.get("paths_sha256") == phash and len(sizes) == n)
        total = int((3 * sizes[:, 0] * sizes[:, 1]).sum())
        if not ok or int(meta.get("nbytes", -1)) != total or data.stat().st_size != total:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if total == 0:
        return ImageCache(torch.empty(0, dtype=torch.uint8), sizes)
    # mode "c": shared read-only pages, private if ever written; torch accepts it (writable).
    arr = np.memmap(data, dtype=np.uint8, mode="c", shape=(total,))
    return ImageCache(torch.from_numpy(arr), sizes)


def _write_cache(data: Path, index: Path, root: Path, paths: list[str], content_sha256: str, phash: str) -> None:
    """Decode into a temporary memory-mapped file, rename it into place, then write the index
    (readers trust a data file only when an index of the same size stands beside it)."""
    sizes = _header_sizes(root, paths)
    total = int((3 * sizes[:, 0] * sizes[:, 1]).sum())
    with atomic_path(data) as tmp:
        if total:
            arr = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(total,))
            _decode_into(arr, root, paths, sizes)
            arr.flush()
            del arr
        with open(tmp, "rb+") as f:  # fsync so the rename never exposes a short file after a crash
            os.fsync(f.fileno())
    atomic_write_json(index, dict(format=CACHE_FORMAT, content_sha256=content_sha256, paths_sha256=phash,
                                  root=str(root), n=len(paths), nbytes=total, sizes=sizes.tolist()))


def build_image_cache(info: DatasetInfo, frame: pd.DataFrame, *, disk: bool = True,
                      cache_dir: str | os.PathLike | None = None) -> ImageCache:
    """The decoded images of `frame` (rows of `info.manifest`), in frame order, on the CPU.

    With `disk` and a dataset that has a `content_sha256`, the pixels come from (or are first
    written to) a memory-mapped file under `cache_dir` (default: `default_cache_dir()`);
    otherwise they are decoded into memory.
    """
    root = info.root.resolve()
    paths = [str(p) for p in frame.path]
    sha = info.content_sha256
    if not disk or not sha:
        return _build_in_memory(root, paths)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    phash = paths_hash(paths)
    data, index = _cache_files(cache_dir, sha, phash)
    cache = _map_existing(data, index, sha, phash, len(paths))
    if cache is None:
        try:
            _write_cache(data, index, root, paths, sha, phash)
        except OSError as e:
            if is_no_space(e):
                raise no_space_error(cache_dir, -(-int(sum(3 * h * w for h, w in _header_sizes(root, paths).tolist()))
                                                  // 2**20)) from None
            raise FGVCError(f"cannot write the decoded-image cache in {cache_dir}: {e} "
                            "(set FGVC_CACHE_DIR to a writable folder with enough space)") from None
        cache = _map_existing(data, index, sha, phash, len(paths))
        if cache is None:  # e.g. another process is rewriting it right now: do not fail the run
            return _build_in_memory(root, paths)
    return cache


__all__ = ["ImageCache", "build_image_cache", "default_cache_dir", "paths_hash", "CACHE_FORMAT"]
