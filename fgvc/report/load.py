"""Read what the benchmark runner wrote (`OUT/runs.csv` and `OUT/runs/<run_id>/`).

Keys are kept as the strings the CSV holds (normalised, so `0.0010` and `0.001` are one
value): grouping on floats read back from text is how two equal settings end up apart.
Accuracies in the runner's files are percent (0-100).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fgvc.config import RunConfig
from fgvc.errors import FGVCError
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
                     "contrastive_delta", "lr_schedule", "warmup_epochs", "augment"]
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
    runs["run_dir"] = [str(out_dir / "runs" / r) for r in runs["run_id"]]
    for key in EXTRA_CONFIG_KEYS:
        # A config.yaml older than a key holds that key's default implicitly.
        default = getattr(RunConfig, key, "")
        runs[key] = [canon(read_config(Path(d)).get(key, default)) for d in runs["run_dir"]]
    return runs.sort_values(["run_id"], kind="stable").reset_index(drop=True)


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
    """GROUP_KEYS plus any config-only setting that varies within a method."""
    keys = list(GROUP_KEYS)
    ok = runs[runs.status == "ok"]
    for key in EXTRA_CONFIG_KEYS:
        if key in ok.columns and (ok.groupby("method")[key].nunique() > 1).any():
            keys.append(key)
    return keys


# --------------------------------------------------------------------------- run folder
def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise FGVCError(f"{path}: not valid JSON ({e.msg}); rerun the run or delete its folder") from None


@lru_cache(maxsize=None)
def _config(path: str, mtime: float) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}  # a damaged run (fgvc/runs/health.py): runs.csv says so, nothing reads its settings
    return loaded if isinstance(loaded, dict) else {}


def read_config(run_dir: Path) -> dict:
    p = run_dir / "config.yaml"
    if not p.is_file():
        return {}
    return dict(_config(str(p), p.stat().st_mtime))


def read_provenance(run_dir: Path) -> dict:
    try:
        prov = _json(run_dir / "provenance.json")
    except FGVCError:
        return {}  # a damaged run (fgvc/runs/health.py), marked so in runs.csv
    return prov if isinstance(prov, dict) else {}


def read_classes(run_dir: Path) -> list[str] | None:
    classes = _json(run_dir / "classes.json")
    return [str(c) for c in classes] if isinstance(classes, list) else None


def read_predictions(run_dir: Path) -> pd.DataFrame | None:
    p = run_dir / "predictions.csv"
    if not p.is_file():
        return None
    df = pd.read_csv(p)
    missing = [c for c in ("image_id", "label", "pred") if c not in df.columns]
    if missing:
        raise FGVCError(f"{p}: missing columns {', '.join(missing)}")
    return df.sort_values("image_id", kind="stable").reset_index(drop=True)


def read_metrics(run_dir: Path) -> pd.DataFrame | None:
    p = run_dir / "metrics.csv"
    return pd.read_csv(p) if p.is_file() else None


def read_features(run_dir: Path) -> dict[str, np.ndarray] | None:
    """features.npz as float32 features (stored float16) and int labels/ids."""
    p = run_dir / "features.npz"
    if not p.is_file():
        return None
    with np.load(p, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    for k in list(out):
        if k.endswith("_features"):
            out[k] = out[k].astype(np.float32)
    return out


def class_names(run_dirs: list[Path], num_classes: int) -> list[str]:
    """Names from the first run folder with a classes.json; `class <k>` otherwise."""
    for d in run_dirs:
        names = read_classes(Path(d))
        if names:
            return names + [f"class {k}" for k in range(len(names), num_classes)]
    return [f"class {k}" for k in range(num_classes)]


__all__ = ["RUNS_COLUMNS", "GROUP_KEYS", "CENTER_KEYS", "canon", "sync_runs_csv", "load_runs", "damaged_runs",
           "group_keys",
           "read_results_csv", "read_config", "read_provenance", "read_classes", "read_predictions", "read_metrics", "read_features",
           "class_names"]
