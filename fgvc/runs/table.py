"""`OUT/runs.csv`: one row per run, rebuilt from the run folders' `row.json`.

Kept free of torch so that `fgvc report` and `fgvc visualize` can merge the rows of
every shard or concurrent job (whose own rebuilds may have raced) without loading the
trainer. The column list is defined here, once (`RUNS_COLUMNS`): the trainer writes each
run's row.json with these keys and the report reads them back.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from fgvc.io import atomic_write_text, is_no_space, no_space_error
from fgvc.runs.health import run_problems

# The runs.csv columns (../shared/DESIGN.md, "Contracts", plus the extensions listed in
# docs/layout.md); a run's row.json holds one such row.
RUNS_COLUMNS = ["run_id", "benchmark", "model", "weights", "weights_sha256", "method", "center_weight",
                "center_update", "seed", "epochs", "batch_size", "lr", "image_size", "top1", "top5",
                "mean_class_acc", "best_epoch_top1", "train_seconds", "images_per_second", "device",
                "git_commit", "status", "error", "val_top1"]


GRID_FILE = "grid.yaml"  # OUT/grid.yaml: the grid that trains into OUT (fgvc.config.grid_record)
STATUSES = ("ok", "failed", "pruned")  # pruned: stopped at a successive-halving rung (fgvc.grid.halving)
OK_NUMBERS = ("top1", "top5", "mean_class_acc")  # what every finished run's row holds as numbers
DAMAGED = "damaged"  # the status runs.csv gives a run whose row.json or files are broken


def row_files(out: Path) -> list[Path]:
    return sorted((Path(out) / "runs").glob("*/row.json"))


def row_problems(row, folder: str) -> list[str]:
    """Why a row.json (parsed) from run folder `folder` is not a well-formed runs.csv row; [] when it is."""
    if not isinstance(row, dict):
        return [f"row.json holds a JSON {type(row).__name__}, not an object"]
    problems = []
    if row.get("run_id") != folder:
        problems.append(f"row.json's run_id {row.get('run_id')!r} is not its folder's name")
    if row.get("status") not in STATUSES:
        problems.append(f"row.json's status {row.get('status')!r} is not one of {', '.join(STATUSES)}")
    if row.get("status") == "ok":
        for key in OK_NUMBERS:
            v = row.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                problems.append(f"row.json's {key} is {v!r}, not a number")
    return problems


def read_run_row(path: Path) -> tuple[dict | None, list[str]]:
    """(row, problems) of one run folder's row.json; row is None when it is malformed."""
    folder = path.parent.name
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return None, [f"row.json is not valid JSON ({type(e).__name__})"]
    problems = row_problems(row, folder)
    if problems:
        return None, problems
    if row["status"] == "ok":
        problems = run_problems(path.parent, row)
    return row, problems


def damaged_row(folder: str, problems: list[str], row: dict | None = None) -> dict:
    """The runs.csv row of a damaged run: its well-formed fields (none from a malformed row.json)."""
    return {**(row or {}), "run_id": folder, "status": DAMAGED, "error": "; ".join(problems)}


def runs_csv_text(out: Path, columns: Sequence[str] = RUNS_COLUMNS) -> str:
    """runs.csv as text: `columns` first, then any extra keys, rows by run folder name. A
    run with a malformed row.json or missing / broken files gets status `damaged`, the
    reasons in `error`, and no value from a malformed row.json."""
    rows = []
    for p in row_files(out):
        row, problems = read_run_row(p)
        rows.append(damaged_row(p.parent.name, problems, row) if problems else row)
    frame = pd.DataFrame(rows)
    for c in columns:
        if c not in frame.columns:
            frame[c] = None
    extra = [c for c in frame.columns if c not in columns]
    return frame[list(columns) + extra].to_csv(index=False)


def space_needed_mb(out: Path) -> int:
    """The size (MB, rounded up) of the largest run folder in OUT/runs, checkpoints included:
    about what one more run writes, so what a full disk must free (at least 1)."""
    largest = 0
    for run_dir in (d for d in (Path(out) / "runs").glob("*") if d.is_dir()):
        with contextlib.suppress(OSError):
            largest = max(largest, sum(e.stat().st_size for e in os.scandir(run_dir) if e.is_file()))
    return max(1, -(-largest // 2**20))


@contextlib.contextmanager
def rebuilt_after(out: Path) -> Iterator[None]:
    """Rebuild OUT/runs.csv when the block ends, however it ends. When the block raised, a
    failure to write runs.csv (the disk that stopped the block is full) does not replace its
    error; otherwise a full disk is one line (`no_space_error`)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            write_runs_csv(out)
        raise
    try:
        write_runs_csv(out)
    except OSError as e:
        if not is_no_space(e):
            raise
        raise no_space_error(out, space_needed_mb(out)) from None


def write_runs_csv(out: Path, columns: Sequence[str] = RUNS_COLUMNS) -> Path:
    """Rebuild OUT/runs.csv atomically; an unchanged file is left alone (not even its mtime),
    so rebuilding a committed results folder is a no-op."""
    path = Path(out) / "runs.csv"
    text = runs_csv_text(out, columns)
    try:
        unchanged = path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        unchanged = False
    if not unchanged:
        atomic_write_text(path, text)
    return path


__all__ = ["RUNS_COLUMNS", "DAMAGED", "GRID_FILE", "row_files", "row_problems", "read_run_row", "damaged_row",
           "runs_csv_text", "write_runs_csv", "rebuilt_after", "space_needed_mb"]
