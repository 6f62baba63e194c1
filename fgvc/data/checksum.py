"""A dataset folder's identity, owned by the stage that writes it (data_prep.carve) and read
by data_prep.verify and fgvc.data alike, so all three agree on it.

- `content_sha256`: one sha256 over manifest.csv's bytes, then every image's bytes in
  manifest order. Exact, but it reads every image (about a second per GB).
- `files_fingerprint`: a sha256 over manifest.csv's bytes and each listed image's path,
  size and modification time (nanoseconds): one stat per image, no image read. carve
  records it in dataset.json beside content_sha256; when the files' fingerprint still
  equals the recorded one, the recorded content_sha256 still holds (the quick check make
  and rsync use). A change that keeps an image's size and mtime (rare, and deliberate) is
  not seen by it; `python -m data_prep.verify` always recomputes content_sha256.

Free of heavy imports (hashlib, csv), so fgvc.data can use it without loading carve.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path

from fgvc.errors import FGVCError


def _manifest(folder: Path) -> tuple[Path, bytes]:
    manifest = Path(folder) / "manifest.csv"
    if not manifest.is_file():
        raise FGVCError(f"{manifest} not found; make the dataset with python -m data_prep.carve")
    return manifest, manifest.read_bytes()


def _paths(data: bytes) -> list[str]:
    return [row.get("path") or "" for row in csv.DictReader(io.StringIO(data.decode("utf-8")))]


def content_sha256(folder: Path) -> str:
    """The dataset's identity: one sha256 over manifest.csv's bytes, then every image's bytes in manifest order."""
    folder = Path(folder)
    manifest, data = _manifest(folder)
    h = hashlib.sha256(data)
    for rel in _paths(data):
        path = folder / rel
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except (FileNotFoundError, IsADirectoryError):
            raise FGVCError(f"{path} is listed in {manifest} but missing; carve the dataset again") from None
    return h.hexdigest()


def files_fingerprint(folder: Path) -> str:
    """sha256 of manifest.csv's bytes and every listed image's (path, size, mtime_ns); a missing
    image counts as size -1. Cheap: one stat per image."""
    folder = Path(folder)
    _, data = _manifest(folder)
    h = hashlib.sha256(data)
    for rel in _paths(data):
        try:
            st = os.stat(folder / rel)
            h.update(f"\0{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"\0{rel}\0-1\0-1".encode())
    return h.hexdigest()


__all__ = ["content_sha256", "files_fingerprint"]
