"""`OUT/runs.csv`: one row per run, rebuilt from the run folders' `row.json`.

Kept free of torch so that `fgvc report` and `fgvc visualize` can merge the rows of
every shard or concurrent job (whose own rebuilds may have raced) without loading the
trainer. The column list is defined here, once (`RUNS_COLUMNS`): the trainer writes each
run's row.json with these keys and the report reads them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from fgvc.io import atomic_write_text

# The runs.csv columns (../shared/DESIGN.md, "Contracts", plus the extensions in README
# "Layout"); a run's row.json holds one such row.
RUNS_COLUMNS = ["run_id", "benchmark", "model", "weights", "weights_sha256", "method", "center_weight",
                "center_update", "seed", "epochs", "batch_size", "lr", "image_size", "top1", "top5",
                "mean_class_acc", "best_epoch_top1", "train_seconds", "images_per_second", "device",
                "git_commit", "status", "error", "val_top1"]


def row_files(out: Path) -> list[Path]:
    return sorted((Path(out) / "runs").glob("*/row.json"))


def runs_csv_text(out: Path, columns: Sequence[str] = RUNS_COLUMNS) -> str:
    """runs.csv as text: `columns` first, then any extra keys, rows by run folder name."""
    rows = []
    for p in row_files(out):
        try:
            rows.append(json.loads(p.read_text()))
        except json.JSONDecodeError:
            continue  # a row.json is itself written atomically; skip foreign junk
    frame = pd.DataFrame(rows)
    for c in columns:
        if c not in frame.columns:
            frame[c] = None
    extra = [c for c in frame.columns if c not in columns]
    return frame[list(columns) + extra].to_csv(index=False)


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


__all__ = ["RUNS_COLUMNS", "row_files", "runs_csv_text", "write_runs_csv"]
