"""Preflight of a dataset folder: everything a run will read, checked before any training.

- `check_manifest`: manifest.csv's cells (integers where integers belong, `is_train` 0 or 1,
  no duplicate image_id or path, no empty cell); cheap, done on every load.
- `path_problems`: every listed path stays inside the dataset folder (relative, no `..`, no
  link out of it) and names a regular file, not a device or a pipe (`/dev/zero` would hang
  the checksum); checked on every load, before anything is read.
- `image_problems`: every listed image present, decodable (fully: a truncated JPEG fails
  here, not in epoch 7) and at least MIN_IMAGE_SIDE pixels on each side. That reads every
  image once; a dataset whose images passed is remembered by its content checksum under
  `$FGVC_CACHE_DIR/checksums/`, so a grid (or the next grid) on it does not read them again.

data_prep.verify uses `image_problem` too, so both say the same about a bad image. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path, PurePosixPath

import pandas as pd
from PIL import Image

from fgvc.data.identity import checksum_cache_dir
from fgvc.io import atomic_write_text

INT_COLUMNS = ("image_id", "label", "cub_class_id", "is_train")
MIN_IMAGE_SIDE = 8  # pixels; anything smaller is a placeholder or a broken copy, not a photograph
SHOWN = 3  # problems quoted in one error line


def check_manifest(manifest: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """(the manifest with integer columns as int64, problems) for a manifest read as text."""
    problems: list[str] = []
    frame = manifest.copy()
    if frame.empty:
        return frame, ["lists no images (only a header)"]
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].astype(str).str.strip()
    for col in INT_COLUMNS:
        as_num = pd.to_numeric(frame[col], errors="coerce")
        bad = as_num.isna() | (as_num != as_num.round())
        for i in list(frame.index[bad])[:SHOWN]:
            problems.append(f"row {i + 2}: {col} {frame.at[i, col]!r} is not an integer")
        if bad.any():
            continue
        frame[col] = as_num.astype("int64")
    for col in ("path", "class_name"):
        for i in list(frame.index[frame[col] == ""])[:SHOWN]:
            problems.append(f"row {i + 2}: {col} is empty")
    if frame.is_train.dtype == "int64":
        for i in list(frame.index[~frame.is_train.isin([0, 1])])[:SHOWN]:
            problems.append(f"row {i + 2}: is_train {frame.at[i, 'is_train']} is not 0 or 1")
    for col in ("image_id", "path"):
        dup = frame[col].duplicated(keep="first")
        for i in list(frame.index[dup])[:SHOWN]:
            problems.append(f"row {i + 2}: {col} {frame.at[i, col]} is listed twice")
    return frame, problems


def path_problems(root: Path, paths) -> list[str]:
    """Why manifest paths `paths` (in row order) may not be read from dataset folder `root`;
    [] when every one is a regular file inside it, or absent (preflight reports those). One
    lstat per path; each folder is resolved once."""
    problems: list[str] = []
    base = os.path.realpath(root)
    inside = base.rstrip(os.sep) + os.sep
    folders: dict[str, str] = {}
    for i, rel in enumerate(paths):
        p = PurePosixPath(str(rel).replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or not p.parts:
            why = "is an absolute path" if p.is_absolute() else "climbs out with '..'" if p.parts else "is empty"
            problems.append(f"row {i + 2}: path {str(rel)!r} {why}")
            continue
        parent = str(p.parent)
        if parent not in folders:
            folders[parent] = os.path.realpath(os.path.join(base, parent))
        full = os.path.join(folders[parent], p.name)
        try:
            st = os.lstat(full)
        except OSError:
            continue  # absent: image_problems says so
        if stat.S_ISLNK(st.st_mode) or not (folders[parent] + os.sep).startswith(inside):
            full = os.path.realpath(full)
            if not full.startswith(inside):
                problems.append(f"row {i + 2}: path {str(rel)!r} leads out of the dataset folder (to {full})")
                continue
            try:
                st = os.stat(full)
            except OSError:
                continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"row {i + 2}: path {str(rel)!r} is not a regular file (a folder, device or pipe)")
    return problems


def image_problem(path: Path) -> str | None:
    """Why the image file `path` cannot be trained on, or None."""
    try:
        with Image.open(path) as im:
            im.load()
            w, h = im.size
    except FileNotFoundError:
        return f"{path} is listed in manifest.csv but missing"
    except Exception as e:  # PIL raises several types for bad data
        return f"{path} does not decode ({type(e).__name__}: {e})"
    if min(w, h) < MIN_IMAGE_SIDE:
        return f"{path} is {w}x{h} pixels, smaller than {MIN_IMAGE_SIDE} on a side"
    return None


def _marker(content_sha256: str) -> Path:
    return checksum_cache_dir() / f"{content_sha256}.images-ok"


def image_problems(root: Path, paths, content_sha256: str | None = None) -> list[str]:
    """Problems of the images `paths` (relative to `root`); [] when all are sound. Skipped
    for a dataset checksum whose images were all checked before."""
    if content_sha256 and _marker(content_sha256).is_file():
        return []
    problems = [p for p in (image_problem(Path(root) / rel) for rel in paths) if p]
    if not problems and content_sha256:
        with contextlib.suppress(OSError):
            atomic_write_text(_marker(content_sha256), "every image present, decodable and large enough\n")
    return problems


def one_line(problems: list[str]) -> str:
    more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    return "; ".join(problems[:SHOWN]) + more


__all__ = ["INT_COLUMNS", "MIN_IMAGE_SIDE", "check_manifest", "path_problems", "image_problem", "image_problems",
           "one_line"]
