"""The report's *Feature compactness* section (with the summary's line on the features).

Center loss claims to pull each class together; these numbers (fgvc.engine.metrics) say by
how much, in units that do not depend on the feature scale (a ratio, silhouettes, k-NN
accuracy). Each run's come from its feature_metrics.json (written at the end of the run, from
its full features) where it has one, else from its features.npz.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fgvc.engine.metrics import COMPACTNESS_COLUMNS, compactness
from fgvc.report.markdown import mean_sd, number, table
from fgvc.runs.read import read_feature_metrics

if TYPE_CHECKING:
    from fgvc.report.inputs import Inputs
    from fgvc.report.panels import Group, Panel

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
        f, out = x.feats.get(run_id), read_feature_metrics(Path(x.runs.set_index("run_id").run_dir[run_id]))
        if out is not None:
            out = {c: out[c] for c in COMPACTNESS_COLUMNS}
        elif f is not None and any(k not in f for k in need):
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


__all__ = ["compactness_section", "features_line"]
