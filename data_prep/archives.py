"""Read an official archive (tar, gzip or not) in one streaming pass, safely.

Why: every dataset may be given as its official archive(s) instead of an extracted folder,
and an archive from the internet must not write outside the folder it is unpacked into
(absolute paths, `..`, links are refused, as CUB's reader refuses them), nor be used when it
is truncated (gzip's trailer is checked: the stream is read to its end). The md5 of every
byte read is computed on the way, for dataset.json.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

from tqdm import tqdm

from fgvc.errors import FGVCError

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


class HashingReader(io.RawIOBase):
    """Read-through wrapper: md5 of every byte read, and a byte progress bar."""

    def __init__(self, f: BinaryIO, bar: tqdm):
        self.f, self.bar, self.md5 = f, bar, hashlib.md5()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.f.readinto(b)
        if n:
            self.md5.update(memoryview(b)[:n])
            self.bar.update(n)
        return n or 0

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def refuse(archive: Path, name: str, why: str) -> FGVCError:
    """The one error for a member that could write outside its folder."""
    return FGVCError(f"archive {archive}: member {name!r} {why}; refusing to read this archive")


def member_name(archive: Path, m: tarfile.TarInfo) -> str:
    """The member's name without a leading `./`; absolute names and `..` are refused."""
    name = m.name[2:] if m.name.startswith("./") else m.name
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/"):
        raise refuse(archive, m.name, "has an absolute path")
    if ".." in p.parts:
        raise refuse(archive, m.name, "would escape the output folder ('..' in its path)")
    return name


def _unpack(archive: Path, stream: BinaryIO, mode: str, into: Path, wanted: Callable[[str], str | None]) -> list[str]:
    """Write the wanted regular members of the tar `stream` under `into`; return their relative paths."""
    written = []
    with tarfile.open(fileobj=stream, mode=mode) as tar:
        for m in tar:
            rel = wanted(member_name(archive, m))
            if rel is None or m.isdir():
                continue
            if m.issym() or m.islnk():
                raise refuse(archive, m.name, f"is a link (to {m.linkname!r})")
            if not m.isfile():
                raise refuse(archive, m.name, "is not a regular file")
            dest = into / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(dest, "wb") as f:
                shutil.copyfileobj(src, f, CHUNK)
            written.append(rel)
    return written


def extract(archive: Path, into: Path, wanted: Callable[[str], str | None], hint: str) -> tuple[list[str], str]:
    """Stream `archive` once: each regular member whose name `wanted` maps to a relative path
    (None: skip it) is written to `into/<that path>`. Returns (the written relative paths, the
    archive's md5). A truncated or corrupt archive raises FGVCError ending with `hint` (the fix)."""
    with open(archive, "rb") as raw, tqdm(total=archive.stat().st_size, unit="B", unit_scale=True,
                                          desc=f"reading {archive.name}", disable=None, leave=False) as bar:
        reader = HashingReader(raw, bar)
        buffered = io.BufferedReader(reader, CHUNK)
        with bad_archive(archive, "truncated, corrupt or not a tar archive", hint):
            if buffered.peek(2)[:2] == GZIP_MAGIC:
                with gzip.GzipFile(fileobj=buffered, mode="rb") as gz:
                    written = _unpack(archive, gz, "r|", into, wanted)
                    while gz.read(CHUNK):  # to the end: gzip checks its CRC and length trailer
                        pass
            else:
                written = _unpack(archive, buffered, "r|*", into, wanted)
            reader.drain()
    return written, reader.md5.hexdigest()


@contextlib.contextmanager
def bad_archive(archive: Path, problem: str, hint: str):
    """Bad archive bytes (tar, gzip or zlib errors, an early end) as one FGVCError naming the
    archive, `problem` and the fix (`hint`); a real I/O error (disk full, permission) passes."""
    try:
        yield
    except FGVCError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
        if isinstance(e, OSError) and not isinstance(e, gzip.BadGzipFile) and e.errno is not None:
            raise
        raise FGVCError(f"archive {archive} is {problem} ({type(e).__name__}: {e}); {hint}") from None


__all__ = ["HashingReader", "refuse", "member_name", "extract", "bad_archive", "CHUNK"]
