"""Which data a run sees: the dataset's content checksum as the files are now, found
cheaply. dataset.json records `content_sha256` (and, since carve records it,
`files_fingerprint`: fgvc/data/checksum.py). When the files' fingerprint (one stat per
image) equals the recorded one, the recorded checksum stands without reading an image.
Otherwise the checksum is recomputed from the files once and remembered under
`$FGVC_CACHE_DIR/checksums/` (default `~/.cache/fgvc/checksums/`) by fingerprint, so a
dataset carved before fingerprints existed, or copied (new mtimes), is hashed once per
machine. A checksum that differs from dataset.json's means the files changed after
carving: the loader then uses the files' checksum (so provenance, the decoded-image cache
and the run-reuse check all see the data as it is) and says dataset.json is stale, as
`python -m data_prep.verify` does. Torch-free.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import NamedTuple

from fgvc.data.checksum import content_sha256, files_fingerprint
from fgvc.errors import FGVCError
from fgvc.io import atomic_write_text, cache_dir


class Identity(NamedTuple):
    content_sha256: str | None  # of the files now (None: unknown, e.g. images missing)
    stale: str | None           # why dataset.json's content_sha256 no longer holds; None when it does


def checksum_cache_dir() -> Path:
    return cache_dir("checksums")


def _remembered(fingerprint: str) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = (checksum_cache_dir() / f"{fingerprint}.sha256").read_text().strip()
        return text if len(text) == 64 else None
    return None


def _remember(fingerprint: str, sha: str) -> None:
    with contextlib.suppress(OSError):  # a read-only home only costs a rehash next time
        atomic_write_text(checksum_cache_dir() / f"{fingerprint}.sha256", sha + "\n")


def dataset_identity(root: Path, meta: dict) -> Identity:
    """The content checksum of dataset folder `root` (dataset.json's dict `meta`)."""
    recorded = meta.get("content_sha256")
    if not recorded:
        return Identity(None, None)  # not written by carve: no identity to check against
    try:
        fingerprint = files_fingerprint(root)
    except FGVCError:
        return Identity(recorded, None)
    if meta.get("files_fingerprint") == fingerprint:
        return Identity(recorded, None)
    sha = _remembered(fingerprint)
    if sha is None:
        try:
            sha = content_sha256(root)
        except FGVCError as e:
            return Identity(None, f"its files cannot be hashed ({e})")
        _remember(fingerprint, sha)
    if sha != recorded:
        return Identity(sha, f"dataset.json's content_sha256 {recorded[:12]}... does not match the files "
                             f"({sha[:12]}...): the manifest or an image changed since carving")
    return Identity(sha, None)


__all__ = ["Identity", "dataset_identity", "checksum_cache_dir"]
