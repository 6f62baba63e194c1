"""Read what the benchmark runner wrote (`OUT/runs.csv` and `OUT/runs/<run_id>/`).

Keys are kept as the strings the CSV holds (normalised, so `0.0010` and `0.001` are one
value): grouping on floats read back from text is how two equal settings end up apart.
Accuracies in the runner's files are percent (0-100).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fgvc.config import RunConfig
from fgvc.errors import FGVCError
from fgvc.grid.halving import PRUNED
from fgvc.names import is_run_id
from fgvc.runs.read import read_config
from fgvc.runs.table import DAMAGED, RUNS_COLUMNS, row_files, write_runs_csv

# Rows that differ only in seed form one group (DESIGN.md, summary.csv).
GROUP_KEYS = ["model", "weights", "method", "center_weight", "center_update", "lr", "batch_size", "epochs",
              "image_size"]
# Keys that only mean something for center loss: a CE baseline is paired with a center
# group that matches it on every other key.
CENTER_KEYS = ("center_weight", "center_update", "center_lr", "center_alpha", "center_distance",
               "center_normalize", "center_per_class", "contrastive_delta")
# config.yaml fields that are not runs.csv columns; they become extra group keys when
# a grid varies them (otherwise two weight decays would be pooled as "seeds").
EXTRA_CONFIG_KEYS = ["pretrained", "momentum", "weight_decay", "crop_pct", "center_lr", "center_alpha",
                     "val_fraction", "val_seed", "center_distance", "center_normalize", "center_per_class",
                     "contrastive_delta", "lr_schedule", "warmup_epochs", "augment", "label_smoothing"]
# A method's own tuned settings besides the auxiliary-loss keys: what a sweep varies per method
# (its "knob"), and what may differ between methods compared at their tuned settings.
TUNED_KEYS = ("lr", "label_smoothing")
METRIC_COLUMNS = ["top1", "top5", "mean_class_acc", "best_epoch_top1", "train_seconds", "images_per_second",
                  "val_top1"]
REQUIRED_RUNS_COLUMNS = ["run_id", "model", "method", "seed", "top1", "status"]

_INT = re.compile(r"^[+-]?\d+$")


def canon(value: Any) -> str:
    """One spelling per value: ints as ints, floats by repr, text stripped."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    s = str(value).strip()
    if _INT.match(s):
        return str(int(s))
    try:
        f = float(s)
    except ValueError:
        return s
    if not np.isfinite(f):
        return s
    return str(int(f)) if f.is_integer() else repr(f)


def read_results_csv(path: Path) -> pd.DataFrame:
    """A CSV as strings (no NaN guessing: `none` and `` stay text)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise FGVCError(f"{path}: file not found") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise FGVCError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None


def sync_runs_csv(out_dir: Path) -> None:
    """Rebuild OUT/runs.csv from OUT/runs/*/row.json when there are any.

    Shards and concurrent jobs each rebuild runs.csv as they finish, and two finishing at
    once can race (the last rename wins and may lack the other's row); the row.json files
    are the truth. A results folder with runs.csv but no run rows (e.g. downloaded without
    runs/) is read as it is. An unchanged runs.csv is not rewritten.
    """
    if row_files(out_dir):
        write_runs_csv(out_dir, RUNS_COLUMNS)


def load_runs(out_dir: Path) -> pd.DataFrame:
    """runs.csv with canonical key strings, numeric metric columns and `run_dir`.

    runs.csv is first rebuilt from the run folders (sync_runs_csv), so every shard's rows
    are in. Extra group keys from config.yaml are added as columns (see EXTRA_CONFIG_KEYS).
    """
    out_dir = Path(out_dir)
    sync_runs_csv(out_dir)
    path = out_dir / "runs.csv"
    if not path.is_file():
        raise FGVCError(f"{path}: not found; run `fgvc benchmark` with --out {out_dir} first")
    runs = read_results_csv(path)
    missing = [c for c in REQUIRED_RUNS_COLUMNS if c not in runs.columns]
    if missing:
        raise FGVCError(f"{path}: not a runs.csv: missing columns {', '.join(missing)}")
    for c in RUNS_COLUMNS:
        if c not in runs.columns:
            runs[c] = ""
    for c in runs.columns:
        if c in GROUP_KEYS or c == "seed":
            runs[c] = runs[c].map(canon)
        elif c not in METRIC_COLUMNS:
            runs[c] = runs[c].str.strip()
    for c in METRIC_COLUMNS:
        runs[c] = pd.to_numeric(runs[c], errors="coerce")
    runs["status"] = runs["status"].str.lower()
    check_run_ids(path, runs["run_id"])
    runs["run_dir"] = [str(out_dir / "runs" / r) for r in runs["run_id"]]
    for key in EXTRA_CONFIG_KEYS:
        # A config.yaml older than a key holds that key's default implicitly.
        default = getattr(RunConfig, key, "")
        runs[key] = [canon(read_config(Path(d)).get(key, default)) for d in runs["run_dir"]]
    return runs.sort_values(["run_id"], kind="stable").reset_index(drop=True)


def check_run_ids(path: Path, run_ids) -> None:
    """Every run_id of the runs.csv at `path` names a folder inside OUT/runs/ (fgvc.names.RUN_ID),
    or one error naming the row, before any file is opened by it."""
    for i, rid in enumerate(run_ids):
        if not is_run_id(rid):
            raise FGVCError(f"{path}: row {i + 2}: run_id {rid!r} is not a run id (letters, digits and _.+- only, "
                            "not starting with '.'), so it cannot name a folder in runs/; fix or delete the row "
                            "(runs.csv is rebuilt from runs/<run_id>/row.json: rename such a folder)")


def damaged_runs(out_dir: Path) -> dict[str, str]:
    """run_id -> why, for the runs runs.csv marks damaged (a broken row.json or missing /
    broken files; see fgvc/runs/health.py)."""
    path = Path(out_dir) / "runs.csv"
    if not path.is_file():
        return {}
    runs = read_results_csv(path)
    if "status" not in runs.columns:
        return {}
    bad = runs[runs.status.str.strip().str.lower() == DAMAGED]
    return dict(zip(bad.run_id, bad.get("error", "")))


def group_keys(runs: pd.DataFrame) -> list[str]:
    """GROUP_KEYS plus any config-only setting that varies within a method, over its ended and
    its pruned runs (a halving sweep may end with one value of a method's knob, CE's label
    smoothing, among its finished runs, and that value is still the sweep's choice), and a tuned
    setting that differs between methods (a confirmation's CE at label smoothing 0.1 beside
    methods at 0: the labels say so)."""
    keys = list(GROUP_KEYS)
    swept = runs[runs.status.isin(("ok", PRUNED))]
    for key in EXTRA_CONFIG_KEYS:
        if key not in swept.columns:
            continue
        if (swept.groupby("method")[key].nunique() > 1).any() or (key in TUNED_KEYS and swept[key].nunique() > 1):
            keys.append(key)
    return keys


__all__ = ["RUNS_COLUMNS", "GROUP_KEYS", "CENTER_KEYS", "TUNED_KEYS", "EXTRA_CONFIG_KEYS", "canon", "sync_runs_csv",
           "load_runs", "check_run_ids", "damaged_runs", "group_keys", "read_results_csv"]
