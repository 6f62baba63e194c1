"""Feature compactness of one run's final-epoch last-conv features, and the report's
*Feature compactness* section (with the summary's line on the features).

Center loss claims to pull each class together; these numbers say by how much, in
units that do not depend on the feature scale (a ratio, silhouettes, k-NN accuracy).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import pairwise_distances, silhouette_score
from sklearn.neighbors import KNeighborsClassifier

from fgvc.report.markdown import mean_sd, number, table

if TYPE_CHECKING:
    from fgvc.report.inputs import Inputs
    from fgvc.report.panels import Group, Panel

COMPACTNESS_COLUMNS = ["compactness_ratio", "silhouette_euclidean", "silhouette_cosine", "knn1_acc", "knn5_acc"]


def compactness_ratio(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean distance of each feature to its own class centre (the class's mean feature)
    divided by the mean distance over all pairs of class centres. Lower = more compact."""
    classes = np.unique(labels)
    if len(classes) < 2:
        return math.nan
    centres = np.stack([features[labels == k].mean(0) for k in classes])
    idx = np.searchsorted(classes, labels)
    intra = np.linalg.norm(features - centres[idx], axis=1).mean()
    d = pairwise_distances(centres)
    inter = d[np.triu_indices(len(classes), k=1)].mean()
    return float(intra / inter) if inter > 0 else math.nan


def silhouette(features: np.ndarray, labels: np.ndarray, metric: str = "euclidean") -> float:
    """Mean silhouette of the features by class; NaN unless 2 <= classes <= n - 1."""
    if not 2 <= len(np.unique(labels)) <= len(labels) - 1:
        return math.nan
    return float(silhouette_score(features, labels, metric=metric))


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int) -> float:
    """Percent of test features whose k nearest train features (cosine) vote their class."""
    if len(train_y) < k:
        return math.nan
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train_x, train_y)
    return 100.0 * float(knn.score(test_x, test_y))


def compactness(feats: dict[str, np.ndarray]) -> dict[str, float]:
    """All compactness numbers of one run from its features.npz arrays (float32)."""
    x, y = feats["test_features"].astype(np.float32), np.asarray(feats["test_labels"])
    tx, ty = feats["train_features"].astype(np.float32), np.asarray(feats["train_labels"])
    return dict(
        compactness_ratio=compactness_ratio(x, y),
        silhouette_euclidean=silhouette(x, y, "euclidean"),
        silhouette_cosine=silhouette(x, y, "cosine"),
        knn1_acc=knn_accuracy(tx, ty, x, y, 1),
        knn5_acc=knn_accuracy(tx, ty, x, y, 5),
    )



def compactness_section(x: Inputs) -> list[str]:
    rows, used = [], []
    for g in x.groups:
        row = _compactness_row(g, x)
        if row:
            rows.append(row)
            used.append(g.runs)
    if not rows:
        return ["## Feature compactness", "", "No features.npz found: nothing to measure.", ""]
    return [
        "## Feature compactness",
        "",
        "Final-epoch pooled last-conv features. Ratio: mean distance of a test feature to its own class centre "
        "(the mean test feature of the class) divided by the mean distance between class centres (lower = tighter "
        "classes). Silhouette of the test features by true class (higher = better separated). k-NN: accuracy (%) "
        "of test features classified by their k nearest train features under cosine distance.",
        "",
        f"*Table: mean ± SD over seeds.{x.prov.caption(pd.concat(used))}*",
        "",
        table(["group", "n", "centre-distance ratio", "silhouette (euclidean)", "silhouette (cosine)",
               "k-NN top-1, k=1", "k-NN top-1, k=5"], rows),
        "",
    ]


def _run_compactness(x: Inputs, run_id: str) -> dict | None:
    """fgvc.report.features.compactness of one run, computed once; None without complete
    features (a note for an incomplete features.npz)."""
    if run_id not in x.compact:
        need = ("test_features", "test_labels", "train_features", "train_labels")
        f, out = x.feats.get(run_id), None
        if f is not None and any(k not in f for k in need):
            x.notes.append(f"{run_id}: features.npz lacks {', '.join(k for k in need if k not in f)}")
        elif f is not None:
            out = compactness(f)
        x.compact[run_id] = out
    return x.compact[run_id]


def _compactness_table(x: Inputs, runs: pd.DataFrame) -> pd.DataFrame:
    """The compactness numbers of the runs with complete features, one row per run."""
    per_run = [c for c in (_run_compactness(x, rid) for rid in runs.run_id) if c is not None]
    return pd.DataFrame(per_run, columns=COMPACTNESS_COLUMNS)


def _compactness_row(g: Group, x: Inputs) -> list | None:
    """Label, number of runs and mean ± SD of each measure over the group's runs with
    complete features; None when there are none."""
    t = _compactness_table(x, g.runs)
    if not len(t):
        return None
    return [g.label, len(t)] + [mean_sd(t[c].mean(), t[c].std(ddof=1), 1 if c.startswith("knn") else 3)
                                for c in COMPACTNESS_COLUMNS]


def features_line(x: Inputs, p: Panel) -> str:
    """The summary's line on what the method does to the features: the compactness means of
    the pair over its matching seeds ("" without features)."""
    tables = [_compactness_table(x, g.runs[g.runs.seed.isin(p.seeds)]) for g in p.groups]
    if not all(len(t) for t in tables):
        return ""
    (la, ta), (lb, tb) = ((g.label, t) for g, t in zip(p.groups, tables))
    return (f"- Features, {lb} vs {la} (mean over {min(len(ta), len(tb))} seeds): centre-distance ratio "
            f"{number(tb.compactness_ratio.mean(), 3)} vs {number(ta.compactness_ratio.mean(), 3)} (lower = tighter "
            f"classes), cosine silhouette {number(tb.silhouette_cosine.mean(), 3)} vs "
            f"{number(ta.silhouette_cosine.mean(), 3)}, 5-NN top-1 {number(tb.knn5_acc.mean())} vs "
            f"{number(ta.knn5_acc.mean())}% (*Feature compactness* below).")


__all__ = ["COMPACTNESS_COLUMNS", "compactness_ratio", "silhouette", "knn_accuracy", "compactness"]
