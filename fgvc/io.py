"""Atomic file writes: a reader never sees a half-written file, an interrupted write
leaves the old file (or nothing) in place. A full disk (ENOSPC, or a quota: EDQUOT) is one
error, `no_space_error`, wherever a write meets it."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Iterator

from fgvc.errors import FGVCError

# The names the writers below give their temporaries: `.<name>.<8 random chars>.tmp[.suffix]`
# (mkstemp / mkdtemp), and atomic_dir's `.<name>.old-<pid>` while it swaps folders.
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]+)?$|^\..+\.old-\d+$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cache_dir(name: str) -> Path:
    """Where fgvc keeps one kind of cache: `$FGVC_CACHE_DIR/<name>` (default `~/.cache/fgvc/<name>`).
    The caches (decoded images, dataset checksums, compiled code) only ever save time: deleting
    the folder is always safe."""
    env = os.environ.get("FGVC_CACHE_DIR")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "fgvc") / name


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); the final file should follow the umask.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it into place.

    For writers that want a file name (np.savez, DataFrame.to_csv, fig.savefig,
    torch.save). The temporary keeps the target's suffix so such writers do not
    append their own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path`.

    An exception (or Ctrl-C) removes the temporary folder, so no half-written
    folder is ever left under the final name. With `force`, an existing `path`
    is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    # mkdtemp makes the folder private (0700); the final folder should follow the umask.
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            if not force:
                raise FileExistsError(path)
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


def is_no_space(error: BaseException | None) -> bool:
    """Did `error` (or what caused it) come from a full disk? An OSError says so by its errno
    (torch.save's RuntimeError does not: fgvc.engine.checkpoint turns it into one)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return True
        if isinstance(error, OSError) and any(t in str(error) for t in NO_SPACE_TEXT):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def free_mb(folder: str | os.PathLike) -> int:
    """Free space (MB) of the file system `folder` is on (its nearest existing parent); -1 unknown."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(shutil.disk_usage(folder).free // 2**20)
    except OSError:
        return -1


def no_space_error(folder: str | os.PathLike, need_mb: int) -> FGVCError:
    """The one line for a full disk: where, how much to free, and that nothing finished is lost."""
    return FGVCError(f"no space left on {folder}: free {max(int(need_mb), 1)} MB and rerun; finished runs are kept")


def clean_temps(folder: str | os.PathLike, older_than_s: float = 0.0) -> list[Path]:
    """Remove the temporaries that killed writes left in `folder` (not below it): files and
    folders named like ours whose last change is older than `older_than_s` seconds (0: all,
    for a folder no one else writes to). Returns what was removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        if not TEMP_NAME.match(p.name):
            continue
        try:
            if older_than_s and now - p.lstat().st_mtime < older_than_s:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def set_aside(path: str | os.PathLike, why: str) -> Path:
    """Rename `path` to `<name>.<why>-<time>` beside it (kept, never deleted); returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.name}.{why}-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.{why}-{stamp}-{n}"), n + 1
    os.replace(path, target)
    return target


def outside(folder: str | os.PathLike, rel: str | os.PathLike) -> str | None:
    """Why `folder/rel` would not stay inside `folder` (None when it does): `rel` absolute,
    climbing out with `..`, or leading out through a link (resolved with the links of both).
    It need not exist."""
    rel = Path(rel)
    if rel.is_absolute() or str(rel).startswith(("/", "\\")):
        return f"{str(rel)!r} is an absolute path"
    if ".." in rel.parts:
        return f"{str(rel)!r} climbs out with '..'"
    base = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(base, rel))
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        return f"{str(rel)!r} leads out of {folder} through a link (to {real})"
    return None


FIGURE_DPI = 120  # every PNG fgvc writes (the report's figures, the demo's)


_WRITTEN: weakref.WeakSet = weakref.WeakSet()  # figures `as_written` has seen


def as_written(fig) -> None:
    """Draw the figure's texts that hold a `$` as written, not as mathtext: a class, model or
    benchmark name is no LaTeX (a stray `$` would stop the drawing). Once per figure, before
    its first layout: tick labels a formatter writes (a log axis's `$10^{-2}$`) are still
    empty then, and keep their mathtext."""
    from matplotlib.text import Text

    if fig in _WRITTEN:
        return
    _WRITTEN.add(fig)
    for text in fig.findobj(Text):
        if "$" in text.get_text():
            text.set_parse_math(False)


def tight_layout(fig) -> None:
    """`fig.tight_layout()` after `as_written`."""
    as_written(fig)
    fig.tight_layout()


def save_figure(fig, path: str | Path, dpi: int = FIGURE_DPI) -> Path:
    """Write a matplotlib figure as PNG atomically, as a 256-colour palette image (what
    pngquant does: a plot has few colours, and the file is about a third of the RGBA one);
    no software/date metadata, so reruns give the same bytes. Texts are drawn as written
    (`as_written`)."""
    import io

    from PIL import Image

    path = Path(path)
    as_written(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    buf.seek(0)
    with Image.open(buf) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        small.save(tmp, format="PNG", optimize=True)
    return path
