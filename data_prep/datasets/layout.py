"""A dataset's official layout, found in whatever the user gave: an extracted folder (or the
folder containing it), a folder of the official archives, or a single archive.

Why: every reader then reads one folder with the official names (`Opened.root`) and never
cares where each part came from, while every error still names the file the user has
(`Opened.where`): a path in their copy, or an archive and its member. Archives are unpacked
(only the parts needed) into a scratch folder that the carve removes when it ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.archives import extract
from fgvc.errors import FGVCError


@dataclass(frozen=True)
class Part:
    """One top-level entry (folder or file) of the official layout, and the archive holding it."""

    entry: str  # e.g. "devkit", "cars_test_annos_withlabels.mat", "data"
    archive: str | None  # the official archive with it (None: a file published on its own)
    prefix: str = ""  # what precedes the entry in the archive's member names, e.g. "nabirds/"
    also: tuple[str, ...] = ()  # other places of the entry in copies seen in the wild, relative to the root


@dataclass(frozen=True)
class Layout:
    """The official layout of one dataset: its root folder's name(s) and its parts."""

    names: tuple[str, ...]  # names the root folder has (the archive's, torchvision's), tried under the source
    parts: tuple[Part, ...]

    @property
    def archives(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.archive for p in self.parts if p.archive))


@dataclass
class Opened:
    """A layout assembled under `root` (links to the user's copy, or unpacked archive members)."""

    root: Path
    origin: dict[str, str] = field(default_factory=dict)  # entry -> the user's path, or "archive A: member M"
    archives_md5: dict[str, str] = field(default_factory=dict)  # archive name -> md5 (those unpacked)

    def where(self, rel: str) -> str:
        """The user's name for `rel` (a path under root): in their copy, or in an archive."""
        entry, _, rest = rel.partition("/")
        origin = self.origin.get(entry, str(self.root / entry))
        return f"{origin}/{rest}" if rest else origin


def _base(folder: Path, layout: Layout) -> Path:
    """The folder holding the layout's entries: `folder` itself or one of its root-named subfolders."""
    for base in (folder, *(folder / n for n in layout.names)):
        if any((base / p.entry).exists() or any((base / a).exists() for a in p.also) for p in layout.parts):
            return base
    return folder


def _archive_files(source: Path, folders: tuple[Path, ...], layout: Layout) -> dict[str, Path]:
    """The official archives present: in `folders`, and `source` itself when it is a (renamed) archive file."""
    found = {a: f / a for f in reversed(folders) for a in layout.archives if (f / a).is_file()}
    if source.is_file() and source.name not in layout.archives:
        if len(layout.archives) != 1:
            raise FGVCError(f"source {source} is not one of the official archives ({', '.join(layout.archives)}); "
                            f"pass the folder that holds them")
        found[layout.archives[0]] = source
    return found


def _link(root: Path, entry: str, target: Path) -> None:
    (root / entry).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target.resolve(), root / entry)


def _unpack(archive: Path, name: str, parts: list[Part], opened: Opened, fix: str) -> None:
    """Unpack the members of `parts` from `archive` into opened.root, in one pass."""
    def wanted(member: str) -> str | None:
        for p in parts:
            inner = member[len(p.prefix):] if member.startswith(p.prefix) else None
            if inner is not None and (inner == p.entry or inner.startswith(p.entry + "/")):
                return inner
        return None

    print(f"unpacking {archive} (the parts needed, into a scratch folder removed at the end)")
    _, md5 = extract(archive, opened.root, wanted, f"download it again or pass the extracted folder; {fix}")
    opened.archives_md5[name] = md5
    for p in parts:
        if not (opened.root / p.entry).exists():
            raise FGVCError(f"archive {archive} has no {p.prefix}{p.entry}: not the official {name}; {fix}")
        opened.origin[p.entry] = f"archive {archive}: member {p.prefix}{p.entry}"


def open_source(source: Path, work: Path, layout: Layout, title: str, fix: str) -> Opened:
    """Assemble `layout` from `source` under `work/root`; one FGVCError names every missing part and the fix."""
    source = Path(source)
    folder = source.parent if source.is_file() else source
    base = _base(folder, layout)
    archives = _archive_files(source, (folder, base), layout)
    opened = Opened(root=work / "root")
    opened.root.mkdir(parents=True)
    todo: dict[str, list[Part]] = {}
    missing = []
    for p in layout.parts:
        here = [base / rel for rel in (p.entry, *p.also) if (base / rel).exists()]
        if here and not (source.is_file() and p.archive in archives):
            _link(opened.root, p.entry, here[0])
            opened.origin[p.entry] = str(here[0])
        elif p.archive in archives:
            todo.setdefault(p.archive, []).append(p)
        else:
            missing.append(p.entry + (f" (or its archive {p.archive})" if p.archive else ""))
    if missing:
        raise FGVCError(f"{source}: not a complete {title} copy, missing {', '.join(missing)} in {base}; {fix}")
    for name, parts in todo.items():
        _unpack(archives[name], name, parts, opened, fix)
    return opened


__all__ = ["Part", "Layout", "Opened", "open_source"]
