"""A results folder as a few files, and back: how a grid trained on a lent GPU machine comes home.

That machine brings back at most 8 files of at most 16 MiB each from one folder, so
`pack_results` splits OUT's run folders (whole, never one across two parts; no checkpoints)
between at most 7 gzip'd tar parts, plus `pack.json`: the parts with their size and sha256,
the run ids, and what the caller records (device, torch version, commit). It checks that
they fit before it writes anything, and fails in one line naming the limit when they do not.
`unpack_results` checks every part against pack.json first, then moves the run folders into
a results folder (a finished run there with other content is refused, identical is fine),
records the manifest in its `packs.json` and rebuilds runs.csv, so `fgvc report` reads it
like any other. Packing needs the standard library only (tarfile, hashlib: the device machine
may lack the rest); unpacking rebuilds runs.csv with fgvc.runs.table. Torch-free; every write
is atomic (a temporary, then a rename).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Collection

from fgvc.errors import FGVCError
from fgvc.io import atomic_path, atomic_write_json, clean_temps

PACK_FILE = "pack.json"  # in the pack folder: the manifest
PACKS_FILE = "packs.json"  # in a results folder: {"packs": [every manifest unpacked into it]}
PACK_FORMAT = 1
MAX_FILES = 8  # what the device machine brings back: parts + pack.json
PART_BYTES = 16 * 2**20
TOP_FILES = ("grid.yaml", "grids.json")  # OUT's own files that travel (runs.csv is rebuilt)
LEFT_OUT = ("checkpoint*.pt", "*.ckpt", "*.pth", "*.tmp", "*.tmp.*", "*.unreadable-*")  # never committed
TOP = "(top files)"  # the unit holding TOP_FILES
SLACK_BYTES = 4096  # a part's room for gzip / tar framing beyond its units' own compressed sizes


class PackError(FGVCError):
    """A pack that cannot be made (too big) or trusted (missing or damaged part)."""


def _kept(rel: Path) -> bool:
    return not any(part.startswith(".") for part in rel.parts) and \
        not any(fnmatch.fnmatch(rel.name, pat) for pat in LEFT_OUT)


def unit_files(out: Path) -> dict[str, list[str]]:
    """What travels, by unit: `runs/<run_id>` -> its files (paths relative to OUT, sorted),
    and TOP -> OUT's TOP_FILES present. Checkpoints, temporaries and links stay behind."""
    out = Path(out)
    units: dict[str, list[str]] = {}
    top = [name for name in TOP_FILES if (out / name).is_file()]
    if top:
        units[TOP] = top
    runs = out / "runs"
    for run in sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) if runs.is_dir() else []:
        files = sorted(str(p.relative_to(out)) for p in run.rglob("*")
                       if p.is_file() and not p.is_symlink() and _kept(p.relative_to(run)))
        if files:  # a folder with nothing but a checkpoint has nothing to bring back
            units[f"runs/{run.name}"] = files
    return units


def _add(tar: tarfile.TarFile, out: Path, rel: str) -> None:
    """One file, owned by nobody in particular (no user names travel), as read now."""
    info = tar.gettarinfo(str(out / rel), arcname=rel)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    with open(out / rel, "rb") as f:
        tar.addfile(info, f)


def _compressed_size(out: Path, files: list[str]) -> int:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in files:
            _add(tar, out, rel)
    return buf.tell()


def plan_parts(sizes: dict[str, int], part_bytes: int, max_parts: int) -> list[list[str]]:
    """Units into parts, first fit by decreasing size, each part's units summing to at most
    `part_bytes` less SLACK_BYTES; a unit too big alone, or more parts than `max_parts`, is
    one PackError naming the limit and what to do."""
    room = part_bytes - SLACK_BYTES
    big = sorted((u for u, n in sizes.items() if n > room), key=lambda u: -sizes[u])
    if big:
        raise PackError(f"{big[0]} is {sizes[big[0]] / 2**20:.2f} MiB compressed, over the {part_bytes / 2**20:.2f} "
                        "MiB a part may hold: drop its features.npz (keep fewer seeds' features) and pack again")
    parts: list[list[str]] = []
    filled: list[int] = []
    for unit in sorted(sizes, key=lambda u: (-sizes[u], u)):
        k = next((i for i, n in enumerate(filled) if n + sizes[unit] <= room), None)
        if k is None:
            parts.append([])
            filled.append(0)
            k = len(parts) - 1
        parts[k].append(unit)
        filled[k] += sizes[unit]
    if len(parts) > max_parts:
        raise PackError(f"the results need {len(parts)} parts of at most {part_bytes / 2**20:.2f} MiB "
                        f"({sum(sizes.values()) / 2**20:.1f} MiB compressed) but at most {max_parts} fit "
                        f"(the device brings back {max_parts + 1} files, {PACK_FILE} one of them): keep fewer "
                        "seeds' features, or train the grid in several calls")
    return [sorted(p) for p in parts]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_pack_folder(out: Path, dest: Path) -> None:
    """The pack folder is neither OUT nor inside it, and holds nothing but an earlier pack (checked
    before a grid trains, so a wrong folder costs no device time)."""
    out, dest = Path(out), Path(dest)
    out_r, dest_r = out.resolve(), dest.resolve()
    if dest_r == out_r or out_r in dest_r.parents:
        raise PackError(f"pack folder {dest} is the results folder {out} or inside it: give a folder of its own "
                        "(on the device machine, its $OUT)")
    if not dest.is_dir():
        return
    clean_temps(dest)
    others = sorted(p.name for p in dest.iterdir() if p.name != PACK_FILE
                    and not (p.name.startswith("part-") and p.name.endswith(".tar.gz")))
    if others:
        raise PackError(f"pack folder {dest} holds other files ({', '.join(others[:3])}): every file there counts "
                        f"against the {MAX_FILES} the device brings back; give an empty folder")


def _statuses(out: Path, units: list[str]) -> tuple[dict[str, str], list[str]]:
    """(run id -> its row.json status, or `unfinished`; the devices the rows name)."""
    found, devices = {}, set()
    for unit in units:
        run_id = unit.removeprefix("runs/")
        try:
            row = json.loads((out / unit / "row.json").read_text(encoding="utf-8"))
            found[run_id] = str(row.get("status"))
            devices.add(str(row.get("device")))
        except (OSError, ValueError, AttributeError):
            found[run_id] = "unfinished"
    return found, sorted(devices)


def pack_results(out: Path, dest: Path, meta: dict | None = None, part_bytes: int = PART_BYTES,
                 max_files: int = MAX_FILES, unchanged: Collection[str] = ()) -> dict:
    """Pack results folder `out` into `dest` (made if needed): part-NN.tar.gz files, then pack.json
    (written last: its presence means the parts are whole). Runs `unchanged` (the caller saw them
    as they are before it trained: they came with the call) stay out. Returns the manifest."""
    out, dest = Path(out), Path(dest)
    if not (out / "runs").is_dir():
        raise PackError(f"{out} has no runs/ folder: nothing was trained there (see the benchmark's output above)")
    dest.mkdir(parents=True, exist_ok=True)
    check_pack_folder(out, dest)
    units = {u: files for u, files in unit_files(out).items() if u.removeprefix("runs/") not in set(unchanged)}
    sizes = {u: _compressed_size(out, files) for u, files in units.items()}
    plan = plan_parts(sizes, part_bytes, max_files - 1)
    (dest / PACK_FILE).unlink(missing_ok=True)  # no manifest describes parts half replaced
    parts = []
    for k, names in enumerate(plan, 1):
        path = dest / f"part-{k:02d}.tar.gz"
        with atomic_path(path) as tmp:
            with tarfile.open(tmp, "w:gz") as tar:
                for unit in names:
                    for rel in units[unit]:
                        _add(tar, out, rel)
            size = tmp.stat().st_size
            if size > part_bytes:
                raise PackError(f"{path.name} came out {size} bytes, over the {part_bytes}-byte limit (its runs were "
                                f"estimated at {sum(sizes[u] for u in names)}): pack with a smaller part size")
        parts.append(dict(file=path.name, bytes=size, sha256=sha256_of(path),
                          runs=[u.removeprefix("runs/") for u in names if u != TOP],
                          top_files=units[TOP] if TOP in names else []))
    for old in dest.glob("part-*.tar.gz"):  # an earlier pack's extra parts
        if old.name not in {p["file"] for p in parts}:
            old.unlink()
    statuses, devices = _statuses(out, [u for u in units if u != TOP])
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest = dict(format=PACK_FORMAT, results=out.name, created=created, **(meta or {}), run_devices=devices,
                    runs=statuses, unchanged=sorted(unchanged), parts=parts,
                    limits=dict(part_bytes=part_bytes, max_files=max_files))
    atomic_write_json(dest / PACK_FILE, manifest)
    return manifest


def read_manifest(pack: Path) -> dict:
    """pack.json of pack folder `pack`, checked for shape; one PackError naming the file otherwise."""
    path = Path(pack) / PACK_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError(f"{path} is missing: give the folder the device's files were fetched into") from None
    except (OSError, ValueError) as e:
        raise PackError(f"{path} is not readable JSON ({type(e).__name__}): fetch the pack again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT or \
            not isinstance(manifest.get("parts"), list) or not isinstance(manifest.get("runs"), dict):
        raise PackError(f"{path} is not a format-{PACK_FORMAT} pack manifest: make it with tools/gpu_grid.py")
    return manifest


def verify_pack(pack: Path) -> dict:
    """The manifest, once every part it lists is there with its recorded size and sha256."""
    manifest = read_manifest(pack)
    for part in manifest["parts"]:
        path = Path(pack) / str(part.get("file"))
        if Path(str(part.get("file"))).name != part.get("file") or not path.is_file():
            raise PackError(f"{path}, listed in {PACK_FILE}, is missing: fetch every file of the pack")
        size, digest = path.stat().st_size, sha256_of(path)
        if size != part.get("bytes") or digest != part.get("sha256"):
            raise PackError(f"{path} is damaged: {size} bytes, sha256 {digest[:12]}..., but {PACK_FILE} records "
                            f"{part.get('bytes')} bytes, {str(part.get('sha256'))[:12]}...: fetch it again")
    return manifest



def _member_path(member: tarfile.TarInfo, runs: set[str], part: str) -> Path | None:
    """Where a member goes, relative to the results folder (None: a folder entry, made anyway);
    anything but a file of a listed run or a top file is a damaged or foreign part."""
    rel = Path(member.name)
    ok_name = not rel.is_absolute() and ".." not in rel.parts and rel.parts
    if ok_name and member.isdir():
        return None
    if ok_name and member.isfile() and (
            (len(rel.parts) == 1 and rel.name in TOP_FILES) or
            (len(rel.parts) >= 3 and rel.parts[0] == "runs" and rel.parts[1] in runs)):
        return rel
    raise PackError(f"{part} holds {member.name!r}, which is no file of the runs {PACK_FILE} lists for it: "
                    "the pack was not made by tools/gpu_grid.py; refusing to unpack it")


def _extract(pack: Path, part: dict, stage: Path) -> None:
    """One verified part's files into `stage` (file by file: no link, device or path outside)."""
    runs = set(part.get("runs", []))
    with tarfile.open(pack / part["file"], "r:gz") as tar:
        for member in tar:
            rel = _member_path(member, runs, part["file"])
            if rel is None:
                continue
            target = stage / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.utime(target, (member.mtime, member.mtime))


def tree_digest(folder: Path) -> dict[str, str]:
    """A run folder's content: relative path -> sha256, for what a pack carries (no checkpoints)."""
    return {str(p.relative_to(folder)): sha256_of(p) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and _kept(p.relative_to(folder))}


def _lines(path: Path) -> int:
    try:
        return len(path.read_text(encoding="utf-8").splitlines())
    except OSError:
        return 0


def _decide(new: Path, old: Path) -> str:
    """added, same, replaced or kept; a finished run in the results folder with other content
    than the pack's finished run raises (the caller names them all)."""
    if not old.exists():
        return "added"
    if tree_digest(new) == tree_digest(old):
        return "same"
    new_done, old_done = (new / "row.json").is_file(), (old / "row.json").is_file()
    if old_done and new_done:
        return "conflict"
    if old_done or (not new_done and _lines(new / "metrics.csv") < _lines(old / "metrics.csv")):
        return "kept"  # the results folder's copy is further along
    return "replaced"


def _check_owner(stage: Path, dest: Path) -> None:
    """The pack's grid is among the results folder's (fgvc.grid.owner): no mixing by accident."""
    from fgvc.grid.owner import grid_names

    have, bring = grid_names(dest), grid_names(stage)
    foreign = sorted(set(bring) - set(have))
    if have and foreign:
        raise PackError(f"results folder {dest} belongs to grid(s) {', '.join(have)}; the pack's runs are of "
                        f"{', '.join(foreign)}: unpack into another folder")


def _move_in(stage: Path, dest: Path, decisions: dict[str, str]) -> None:
    (dest / "runs").mkdir(parents=True, exist_ok=True)
    for run_id, what in decisions.items():
        new, old = stage / "runs" / run_id, dest / "runs" / run_id
        if what == "added":
            os.replace(new, old)
        elif what == "replaced":
            aside = old.with_name(f".{run_id}.old-{os.getpid()}")
            os.replace(old, aside)
            os.replace(new, old)
            shutil.rmtree(aside)
    if (stage / "grid.yaml").is_file():  # as a benchmark run there would: the grid that last trained
        os.replace(stage / "grid.yaml", dest / "grid.yaml")
    if (stage / "grids.json").is_file() and not (dest / "grids.json").exists():
        os.replace(stage / "grids.json", dest / "grids.json")


def _record(dest: Path, manifest: dict) -> None:
    """Add the manifest (device, torch, commit of the pack) to dest/packs.json, once."""
    path = dest / PACKS_FILE
    try:
        packs = json.loads(path.read_text(encoding="utf-8"))["packs"]
    except (OSError, ValueError, KeyError, TypeError):
        packs = []
    if manifest not in packs:
        atomic_write_json(path, {"packs": [*packs, manifest]})


def unpack_results(pack: Path, dest: Path) -> dict[str, list[str]]:
    """Verify pack folder `pack`, then bring its runs into results folder `dest` (made if needed)
    and rebuild dest/runs.csv. Nothing in `dest` changes when a part is damaged or a finished run
    there differs. Returns run ids by what happened: added, same, replaced, kept."""
    from fgvc.runs.table import write_runs_csv

    pack, dest = Path(pack), Path(dest)
    manifest = verify_pack(pack)
    dest.mkdir(parents=True, exist_ok=True)
    clean_temps(dest)
    stage = Path(tempfile.mkdtemp(prefix=".unpack.", suffix=".tmp", dir=dest))  # same disk: renames
    try:
        for part in manifest["parts"]:
            _extract(pack, part, stage)
        listed = sorted(manifest["runs"])
        got = sorted(p.name for p in (stage / "runs").iterdir()) if (stage / "runs").is_dir() else []
        if got != listed:
            raise PackError(f"{pack / PACK_FILE} lists {len(listed)} runs but its parts hold {len(got)}: "
                            "fetch the pack again")
        _check_owner(stage, dest)
        decisions = {r: _decide(stage / "runs" / r, dest / "runs" / r) for r in listed}
        clash = [r for r, what in decisions.items() if what == "conflict"]
        if clash:
            raise PackError(f"{len(clash)} finished run(s) in {dest} differ from the pack's ({', '.join(clash[:3])}"
                            f"{', ...' if len(clash) > 3 else ''}): nothing was unpacked; unpack into another folder")
        _move_in(stage, dest, decisions)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    _record(dest, manifest)
    write_runs_csv(dest)
    found: dict[str, list[str]] = {k: [] for k in ("added", "same", "replaced", "kept")}
    for run_id, what in decisions.items():
        found[what].append(run_id)
    return found


__all__ = ["pack_results", "unpack_results", "check_pack_folder", "verify_pack", "read_manifest", "plan_parts",
           "unit_files", "tree_digest", "sha256_of", "PackError", "PACK_FILE", "PACKS_FILE", "PACK_FORMAT",
           "MAX_FILES", "PART_BYTES", "TOP_FILES", "LEFT_OUT", "TOP", "SLACK_BYTES"]
