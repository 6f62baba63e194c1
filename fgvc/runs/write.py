"""A run folder's files (formats fixed in ../shared/DESIGN.md, "Contracts"): metrics.csv,
predictions.csv, features.npz, row.json and train.log. Written by train and validate alike,
each atomically (temp file, then rename)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from fgvc.config import RunConfig
from fgvc.engine.metrics import feature_metrics
from fgvc.io import atomic_path, atomic_write_json
from fgvc.runs.read import FEATURE_METRICS
from fgvc.runs.table import RUNS_COLUMNS

METRICS_COLUMNS = ["epoch", "train_ce", "train_center", "train_loss", "train_top1",
                   "test_top1", "test_top5", "lr", "seconds", "val_top1", "val_top5"]
ROW_COLUMNS = RUNS_COLUMNS  # row.json is one runs.csv row


def write_metrics(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history, columns=METRICS_COLUMNS).to_csv(tmp, index=False, float_format="%.6g")


def write_predictions(path: Path, ids: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> None:
    k = min(5, probs.shape[1])
    topk = np.argsort(-probs, axis=1)[:, :k]
    topp = np.take_along_axis(probs, topk, axis=1)
    frame = pd.DataFrame({
        "image_id": ids, "label": labels, "pred": topk[:, 0], "prob": topp[:, 0].round(6),
        "top5": [";".join(map(str, r)) for r in topk],
        "top5_probs": [";".join(f"{p:.6f}" for p in r) for r in topp],
    })
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_features(path: Path, test: dict, test_ids, train: dict, train_ids) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp, test_features=test["features"].astype(np.float16), test_labels=test["labels"].astype(np.int64),
            test_ids=np.asarray(test_ids, dtype=np.int64), train_features=train["features"].astype(np.float16),
            train_labels=train["labels"].astype(np.int64), train_ids=np.asarray(train_ids, dtype=np.int64))


def write_feature_metrics(path: Path, test: dict, train: dict) -> None:
    """feature_metrics.json from the features as features.npz stores them (float16), so the
    numbers equal those the report would compute from that file; results folders that drop or
    reduce features.npz keep them."""
    feats = dict(test_features=test["features"].astype(np.float16), test_labels=test["labels"],
                 train_features=train["features"].astype(np.float16), train_labels=train["labels"])
    atomic_write_json(path, feature_metrics(feats))


def write_outputs(run_dir: Path, test_ids, test_out: dict, train_ids, train_out: dict) -> None:
    """predictions.csv (test), features.npz (test and train) and feature_metrics.json from two
    `predict` outputs."""
    write_predictions(run_dir / "predictions.csv", np.asarray(test_ids), test_out["labels"], test_out["probs"])
    write_features(run_dir / "features.npz", test_out, test_ids, train_out, train_ids)
    write_feature_metrics(run_dir / FEATURE_METRICS, test_out, train_out)


def blank_row() -> dict:
    return {c: None for c in ROW_COLUMNS}


def make_row(cfg: RunConfig, winfo: dict, device: str, commit: str, **values) -> dict:
    """A run's runs.csv row: its identity, weights and device, then `values` (metrics, status)."""
    ident = cfg.identity()
    row = blank_row()
    row.update(run_id=cfg.run_id, benchmark=cfg.benchmark, model=cfg.model, weights=winfo["weights"],
               weights_sha256=winfo["weights_sha256"], method=cfg.method, center_weight=ident["center_weight"],
               center_update=ident["center_update"], seed=cfg.seed, epochs=cfg.epochs,
               batch_size=cfg.batch_size, lr=cfg.lr, image_size=cfg.image_size, device=device,
               git_commit=commit, status="ok", error="")
    row.update(values)
    return row


def read_row(run_dir: Path) -> dict | None:
    """A run folder's row.json, or None when absent or unreadable."""
    p = run_dir / "row.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


class QuietFileHandler(logging.FileHandler):
    """train.log's handler: a line that cannot be written (a full disk) is lost, not printed to
    stderr as a traceback ("--- Logging error ---"); the error that stops the run says why."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def run_logger(run_dir: Path) -> logging.Logger:
    """A logger that appends to the run's train.log (one per run folder).

    Keyed by run id, so a handler left open by a run cut off by an error (or one of the same
    run id in another OUT) is replaced, and handlers others attach (pytest's) do not count."""
    logger = logging.getLogger(f"fgvc.run.{run_dir.name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    path = str((run_dir / "train.log").resolve())
    for h in list(logger.handlers):  # left open by an interrupted run, maybe of another OUT with this run id
        if getattr(h, "baseFilename", None) != path:
            h.close()
            logger.removeHandler(h)
    if not logger.handlers:
        h = QuietFileHandler(path)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(h)
    return logger


def console(msg: str) -> None:
    """One line on stdout, printed above any tqdm bar (not through it) and flushed, so a
    run's per-epoch lines show as they come, also when stdout is a file or a pipe."""
    from tqdm.auto import tqdm

    tqdm.write(msg)
    sys.stdout.flush()


def close_logger(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        h.close()
        logger.removeHandler(h)


__all__ = ["METRICS_COLUMNS", "ROW_COLUMNS", "QuietFileHandler", "write_metrics", "write_predictions",
           "write_features", "write_feature_metrics", "write_outputs",
           "blank_row", "make_row", "read_row", "run_logger", "close_logger", "console"]
