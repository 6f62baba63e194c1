"""Is a finished run folder whole? The files a finished run must have, each checked
cheaply (headers, row counts, the npz's member names; no image or feature is loaded).

A run whose row.json says "ok" but whose files fail here is *damaged*: runs.csv lists it
with status `damaged` and the reasons in `error` (so the report leaves it out and says
why), and `fgvc benchmark` trains it again. Torch-free.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import yaml

# Written by every finished run (DESIGN.md, "Run folder"; `fgvc validate --out RESULTS/runs/NAME` too).
RUN_FILES = ("config.yaml", "predictions.csv", "provenance.json")  # classes.json is optional (added later)
# The features: features.npz, or feature_metrics.json alone in a lean results folder whose
# committed copy keeps only the numbers (tools/lean_results.py).
FEATURE_FILES = ("features.npz", "feature_metrics.json")
PREDICTION_COLUMNS = ("image_id", "label", "pred")
METRICS_NEEDED = ("epoch", "test_top1")
FEATURE_ARRAYS = ("test_features", "test_labels", "test_ids", "train_features", "train_labels", "train_ids")


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError("empty")
    return rows[0], rows[1:]


def _table(path: Path, needed) -> tuple[list[str], list[list[str]]] | str:
    """(header, rows) of a run's CSV, or what is wrong with it."""
    try:
        header, rows = _csv(path)
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as e:
        return f"{path.name} cannot be read ({type(e).__name__}: {e})"
    missing = [c for c in needed if c not in header]
    return f"{path.name} lacks the columns {', '.join(missing)}" if missing else (header, rows)


def _metrics_problem(path: Path, epochs) -> str | None:
    table = _table(path, METRICS_NEEDED)
    if isinstance(table, str):
        return table
    header, rows = table
    i = header.index("epoch")
    try:
        seen = [int(r[i]) for r in rows]
    except (ValueError, IndexError):
        return "metrics.csv has rows without an integer epoch"
    if isinstance(epochs, int) and seen != list(range(1, epochs + 1)):
        return f"metrics.csv holds epochs {seen[:3]}{'...' if len(seen) > 3 else ''} of a {epochs}-epoch run"
    return None


def _predictions_problem(path: Path) -> str | None:
    table = _table(path, PREDICTION_COLUMNS)
    if isinstance(table, str):
        return table
    header, rows = table
    if not rows or any(len(r) != len(header) for r in rows):
        return "predictions.csv has no rows or rows of the wrong length"
    return None


def _features_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            names = {n.removesuffix(".npy") for n in z.namelist()}
    except (OSError, zipfile.BadZipFile) as e:
        return f"features.npz is not a readable npz ({type(e).__name__})"
    missing = [a for a in FEATURE_ARRAYS if a not in names]
    return f"features.npz lacks {', '.join(missing)}" if missing else None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{path.name} is not valid JSON ({type(e).__name__})"
    return None


def _config_problem(path: Path) -> str | None:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        return f"config.yaml cannot be read ({type(e).__name__})"
    return None if isinstance(loaded, dict) else "config.yaml is not a mapping of settings"


def run_problems(run_dir: Path, row: dict) -> list[str]:
    """Why the finished run in `run_dir` (row.json `row`, status ok) is not whole; [] when it is."""
    run_dir = Path(run_dir)
    missing = [n for n in RUN_FILES if not (run_dir / n).is_file()]
    if not any((run_dir / n).is_file() for n in FEATURE_FILES):
        missing.append(" or ".join(FEATURE_FILES))
    problems = [f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"] if missing else []
    prov = {}
    if (run_dir / "provenance.json").is_file():
        problem = _json_problem(run_dir / "provenance.json")
        if problem:
            problems.append(problem)
        else:
            prov = json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))
    trained = not (isinstance(prov, dict) and prov.get("command") == "validate")
    if trained:
        if not (run_dir / "metrics.csv").is_file():
            problems.append("metrics.csv is missing")
        else:
            problems.append(_metrics_problem(run_dir / "metrics.csv", row.get("epochs")))
    if (run_dir / "predictions.csv").is_file():
        problems.append(_predictions_problem(run_dir / "predictions.csv"))
    if (run_dir / "features.npz").is_file():
        problems.append(_features_problem(run_dir / "features.npz"))
    if (run_dir / "classes.json").is_file():
        problems.append(_json_problem(run_dir / "classes.json"))
    if (run_dir / "config.yaml").is_file():
        problems.append(_config_problem(run_dir / "config.yaml"))
    return [p for p in problems if p]


__all__ = ["RUN_FILES", "FEATURE_FILES", "run_problems"]
