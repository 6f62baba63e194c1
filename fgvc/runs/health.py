"""Is a finished run folder whole? The files a finished run must have, each checked
cheaply (headers, row counts, the npz's member names and array headers; no image or feature
is loaded), and what makes a folder foreign or edited: a config.yaml that no longer hashes
to the folder's run id (its settings were changed after the run), a features.npz holding
anything but numeric arrays (np.load refuses object arrays without pickle), a checkpoint
(where one is kept: committed results keep none) that is no torch zip archive.

A run whose row.json says "ok" but whose files fail here is *damaged*: runs.csv lists it
with status `damaged` and the reasons in `error` (so the report leaves it out and says
why), and `fgvc benchmark` trains it again. Torch-free.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import yaml

from fgvc.config import config_from_dict
from fgvc.errors import FGVCError

# Written by every finished run (DESIGN.md, "Run folder"; `fgvc validate --out RESULTS/runs/NAME` too).
RUN_FILES = ("config.yaml", "predictions.csv", "provenance.json")  # classes.json is optional (added later)
# The features: features.npz, or feature_metrics.json alone in a lean results folder whose
# committed copy keeps only the numbers (tools/lean_results.py).
FEATURE_FILES = ("features.npz", "feature_metrics.json")
PREDICTION_COLUMNS = ("image_id", "label", "pred")
METRICS_NEEDED = ("epoch", "test_top1")
FEATURE_ARRAYS = ("test_features", "test_labels", "test_ids", "train_features", "train_labels", "train_ids")
NUMERIC_KINDS = "biuf"  # bool, int, unsigned, float: what features.npz holds
CHECKPOINT = "checkpoint.pt"  # a run's checkpoint (its format: fgvc.engine.checkpoint), where one is kept


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


def _array_kind(z: zipfile.ZipFile, member: str) -> str | None:
    """What is wrong with the .npy member's header (None: a numeric array); reads the header only."""
    with z.open(member) as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read(f)
    return None if dtype.kind in NUMERIC_KINDS and not dtype.hasobject else f"a {dtype} array"


def _features_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            members = {n.removesuffix(".npy"): n for n in z.namelist()}
            missing = [a for a in FEATURE_ARRAYS if a not in members]
            if missing:
                return f"features.npz lacks {', '.join(missing)}"
            for name, member in members.items():
                kind = _array_kind(z, member)
                if kind:
                    return f"features.npz's {name} is {kind}, not numbers (np.load without pickle refuses it)"
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        return f"features.npz is not a readable npz ({type(e).__name__})"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{path.name} is not valid JSON ({type(e).__name__})"
    return None


def _config_problem(path: Path, trained: bool) -> str | None:
    """config.yaml unreadable, or (a trained run) no longer the settings its folder's run id names."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        return f"config.yaml cannot be read ({type(e).__name__})"
    if not isinstance(loaded, dict):
        return "config.yaml is not a mapping of settings"
    if not trained:
        return None  # `fgvc validate --out OUT/runs/NAME`: the source run's settings under another name
    try:
        run_id = config_from_dict(loaded, str(path)).run_id
    except (FGVCError, TypeError, ValueError) as e:
        return f"config.yaml is not a run's settings ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
    if run_id != path.parent.name:
        return (f"config.yaml hashes to run id {run_id}, not its folder's: its settings were changed after the run "
                "(restore them, or train the edited settings as their own run)")
    return None


def _checkpoint_problem(path: Path) -> str | None:
    """A kept checkpoint that is no torch zip archive (empty, cut off, foreign); cheap: its
    directory is read, no tensor (`fgvc benchmark` also loads it: fgvc.grid.benchmark.plan)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = {n.rsplit("/", 1)[-1] for n in z.namelist()}
            if not {"data.pkl", "version"} <= names:
                return f"{path.name} is a zip archive but no torch checkpoint (no data.pkl and version records)"
    except (OSError, zipfile.BadZipFile) as e:
        return f"{path.name} cannot be loaded ({type(e).__name__}: not a whole torch checkpoint)"
    return None


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
        problems.append(_config_problem(run_dir / "config.yaml", trained))
    if (run_dir / CHECKPOINT).is_file():  # absent is fine: committed results keep none
        problems.append(_checkpoint_problem(run_dir / CHECKPOINT))
    return [p for p in problems if p]


__all__ = ["RUN_FILES", "FEATURE_FILES", "CHECKPOINT", "NUMERIC_KINDS", "run_problems"]
