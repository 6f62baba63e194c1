"""Which grid a results folder belongs to, so two grids never share one OUT by accident.

A run id names a run's settings, not its grid: two grids on one OUT would share the runs
they have in common, and runs.csv and the report would mix their rows under both names. So
OUT records the grid names it belongs to in `OUT/grids.json` (`{"grids": [...]}`), created
by the first grid that trains there, just before its first run (atomically and exclusively:
of two grids started on an empty OUT at once, one writes it, the other reads it and is
refused). A folder from before grids.json existed belongs to the benchmarks its run folders
record (row.json, else config.yaml). A grid whose name is not among them is refused with
one line naming both, before anything is read (also under --dry-run) and again before its
first run, unless `--force-mix` says mixing is meant: its name is then added. Each run
keeps the grid name it was started under (`own_benchmark`), so a run another grid resumes
or retries is not relabelled. OUT/grid.yaml records the grid as run (`record_grid`).
Torch-free.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import yaml

from fgvc.config import RunConfig, grid_record
from fgvc.errors import FGVCError
from fgvc.io import atomic_write_json, atomic_write_text
from fgvc.runs.read import read_config
from fgvc.runs.table import GRID_FILE

GRIDS = "grids.json"


def _marker(out: Path) -> list[str] | None:
    """The names in OUT/grids.json; None when there is none (or it cannot be read yet)."""
    try:
        names = json.loads((Path(out) / GRIDS).read_text(encoding="utf-8")).get("grids")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _recorded(out: Path) -> list[str]:
    """The benchmarks OUT's run folders record: row.json's, else config.yaml's."""
    names = set()
    for run_dir in sorted(d for d in (Path(out) / "runs").glob("*") if d.is_dir()):
        try:
            row = json.loads((run_dir / "row.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            row = None
        name = row.get("benchmark") if isinstance(row, dict) else read_config(run_dir).get("benchmark")
        if name:
            names.add(str(name))
    return sorted(names)


def grid_names(out: Path) -> list[str]:
    """The grid names results folder `out` belongs to ([] for a new or empty one)."""
    found = _marker(out)
    return found if found is not None else _recorded(out)


def _create(path: Path, names: list[str]) -> bool:
    """Write grids.json if it does not exist yet (a finished file, linked into place); False if it does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"grids": names}, f)
        f.write("\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: exclusive create
        try:
            with open(path, "x", encoding="utf-8") as f:
                f.write(Path(tmp).read_text(encoding="utf-8"))
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)


def claim_folder(out: Path, names: list[str], force_mix: bool = False, dry_run: bool = False) -> None:
    """Let the grid(s) `names` run in `out`, or refuse (FGVCError) when `out` belongs to another
    grid and `force_mix` is not given. Records the names in OUT/grids.json unless `dry_run`."""
    out = Path(out)
    for _ in range(5):
        have = grid_names(out)
        new = [n for n in names if n not in have]
        if have and new and not force_mix:
            raise FGVCError(f"{out} belongs to grid {', '.join(have)}, not {', '.join(new)}: two grids in one folder "
                            "share the runs they have in common, and runs.csv and the report would mix them; use "
                            "another --out, or --force-mix if mixing them is meant")
        if dry_run or (not new and _marker(out) is not None):
            return
        if _marker(out) is None:
            if _create(out / GRIDS, sorted(set(have) | set(names))):
                return
            continue  # another grid wrote it meanwhile: read it again
        atomic_write_json(out / GRIDS, {"grids": sorted(set(have) | set(names))})
        return


def own_benchmark(cfg: RunConfig, run_dir: Path) -> RunConfig:
    """`cfg` with the grid name its run folder was started under (config.yaml's), so a run that
    another grid resumes, retries or prunes keeps its own name in row.json and runs.csv."""
    name = read_config(Path(run_dir)).get("benchmark")
    return replace(cfg, benchmark=str(name)) if name and name != cfg.benchmark else cfg


def record_grid(out: Path, grid_path, overrides: dict | None) -> None:
    """Write OUT/grid.yaml (atomically; left alone when unchanged), so the results folder says
    which grid made it; the report reads `selected_from` there (fgvc.report.protocol)."""
    # numpy scalars (a value taken from a results frame) as plain numbers, anything else as text
    record = grid_record(grid_path, overrides)
    plain = json.loads(json.dumps(record, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    text = yaml.safe_dump(plain, sort_keys=False, default_flow_style=None)
    path = out / GRID_FILE
    if not path.is_file() or path.read_text() != text:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)


__all__ = ["GRIDS", "grid_names", "claim_folder", "own_benchmark", "record_grid"]
