"""Reading a run folder back (the files fgvc.runs.write and fgvc.train write): config,
provenance, classes, predictions, metrics and features. Torch-free; the report, validate and
the grid read run folders through these."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import yaml

from fgvc.errors import FGVCError

FEATURE_METRICS = "feature_metrics.json"  # a run's feature numbers, from its full features
UNRECORDED_PRECISION = "fp32 (not recorded)"  # runs that predate provenance.json's `precision`


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
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:  # an object array, a cut-off or foreign file
        raise FGVCError(f"{p}: not the numeric arrays a run writes ({str(e).splitlines()[0][:120]}); "
                        "rerun `fgvc benchmark` to train the run again, or delete its folder") from None
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


def read_feature_metrics(run_dir: Path) -> dict | None:
    """feature_metrics.json (fgvc.engine.metrics.feature_metrics, from the run's full features),
    or None where the run has none (runs from before it existed: their features.npz has them)."""
    data = _json(Path(run_dir) / FEATURE_METRICS) if (Path(run_dir) / FEATURE_METRICS).is_file() else None
    return data if isinstance(data, dict) else None


def recorded_precision(prov: Mapping) -> str:
    """A run's numeric precision from its provenance.json; older runs ran fp32."""
    value = str(prov.get("precision") or "").strip()
    return value or UNRECORDED_PRECISION


__all__ = ["FEATURE_METRICS", "UNRECORDED_PRECISION", "read_feature_metrics", "read_config", "read_provenance", "read_classes", "read_predictions",
           "read_metrics", "read_features", "class_names", "recorded_precision"]
