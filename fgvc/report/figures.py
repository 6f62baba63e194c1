"""Report figures: per-class accuracy, confusion matrices, training curves.

Built on `matplotlib.figure.Figure` (Agg canvas) rather than pyplot, so no global
backend or state is touched and nothing waits for a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fgvc.io import atomic_path

DPI = 120
METHOD_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def save_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Atomic PNG write; no software/date metadata, so reruns give the same bytes."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def display_name(name: str) -> str:
    return name.replace("_", " ")


# --------------------------------------------------------------------------- numbers
def per_class_accuracy(preds: Sequence[pd.DataFrame], num_classes: int) -> np.ndarray:
    """Per-class top-1 (percent), mean over runs; NaN for a class with no test image."""
    accs = []
    for p in preds:
        correct = (p.pred == p.label).to_numpy(dtype=float)
        labels = p.label.to_numpy()
        accs.append([100.0 * correct[labels == k].mean() if (labels == k).any() else np.nan
                     for k in range(num_classes)])
    return np.nanmean(np.array(accs), axis=0) if accs else np.full(num_classes, np.nan)


def confusion_mean(preds: Sequence[pd.DataFrame], num_classes: int) -> np.ndarray:
    """Row-normalised confusion matrix (rows = true class), mean over runs."""
    from sklearn.metrics import confusion_matrix

    cms = []
    for p in preds:
        cm = confusion_matrix(p.label, p.pred, labels=np.arange(num_classes)).astype(float)
        rows = cm.sum(1, keepdims=True)
        cms.append(np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0))
    return np.mean(cms, axis=0)


# --------------------------------------------------------------------------- figures
def per_class_figure(names: Sequence[str], acc: Mapping[str, np.ndarray], order: Sequence[int], title: str,
                     path: Path, diff_ci: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Left: accuracy per class for each method; right: the difference (last - first),
    with `diff_ci` (low, high per class) as error bars when given."""
    labels = list(acc)
    k = len(order)
    fig = Figure(figsize=(11, 1.2 + 0.32 * k))
    ax, axd = fig.subplots(1, 2, sharey=True, gridspec_kw=dict(width_ratios=(2, 1)))
    y = np.arange(k)
    h = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        ax.barh(y + (i - (len(labels) - 1) / 2) * h, acc[lab][list(order)], height=h,
                color=METHOD_COLORS[i % len(METHOD_COLORS)], label=lab)
    ax.set_yticks(y, [display_name(names[j]) for j in order])
    ax.invert_yaxis()
    ax.set_xlabel("test top-1 (%), mean over seeds")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    if len(labels) >= 2:
        diff = acc[labels[-1]][list(order)] - acc[labels[0]][list(order)]
        xerr = None
        if diff_ci is not None:
            lo, hi = (np.asarray(v, dtype=float)[list(order)] for v in diff_ci)
            xerr = np.nan_to_num(np.clip([diff - lo, hi - diff], 0, None))
        axd.barh(y, diff, color=np.where(diff >= 0, "#2ca02c", "#d62728"), xerr=xerr,
                 error_kw=dict(ecolor="black", elinewidth=0.8, capsize=2))
        axd.axvline(0, color="black", lw=0.8)
        axd.set_xlabel(f"{labels[-1]} minus {labels[0]} (points)" + (", 95% bootstrap interval" if xerr is not None
                                                                     else ""))
        axd.grid(axis="x", alpha=0.3)
    else:
        axd.set_axis_off()
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_figure(names: Sequence[str], cms: Mapping[str, np.ndarray], title: str, path: Path) -> Path:
    """Row-normalised confusion heatmaps, one per method, side by side."""
    import seaborn as sns

    k = len(names)
    cell = 0.42 if k > 10 else 0.7
    side = 2.5 + cell * k
    fig = Figure(figsize=(side * len(cms) + 1.0, side + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(cms)))
    ticks = [display_name(n) for n in names]
    for i, (ax, (lab, cm)) in enumerate(zip(axes, cms.items())):
        sns.heatmap(cm, ax=ax, vmin=0, vmax=1, cmap="Blues", square=True, annot=k <= 10, fmt=".2f",
                    annot_kws=dict(fontsize="x-small"), xticklabels=ticks, yticklabels=ticks if i == 0 else False,
                    cbar=i == len(cms) - 1, cbar_kws=dict(label="fraction of the true class", shrink=0.7))
        ax.set_title(lab, fontsize="medium")
        ax.set_xlabel("predicted")
        if i == 0:
            ax.set_ylabel("true")
        ax.tick_params(labelsize="x-small")
    fig.suptitle(title, fontsize="medium")
    return save_figure(fig, path)


def curves_figure(metrics: Mapping[str, Sequence[pd.DataFrame]], title: str, path: Path) -> Path:
    """Train loss and test top-1 per epoch: mean over seeds, band = min..max over seeds."""
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    panels = (("train_loss", "train loss (CE + λ·center)"), ("test_top1", "test top-1 (%)"))
    for i, (lab, frames) in enumerate(metrics.items()):
        color = METHOD_COLORS[i % len(METHOD_COLORS)]
        for ax, (col, ylabel) in zip(axes, panels):
            series = [f.set_index("epoch")[col] for f in frames if col in f.columns and "epoch" in f.columns]
            if not series:
                continue
            # The test set may be evaluated every eval_every epochs only: plot the epochs it was.
            table = pd.concat(series, axis=1).dropna(how="all")
            sparse = len(table) < len(pd.concat(series, axis=1))
            ax.plot(table.index, table.mean(axis=1), color=color, label=f"{lab} (n={table.shape[1]})",
                    marker="o" if sparse else None)
            ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=color, alpha=0.2, lw=0)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(title + "\nline: mean over seeds; band: min to max over seeds", fontsize="medium")
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = ["save_figure", "per_class_accuracy", "confusion_mean", "per_class_figure", "confusion_figure",
           "curves_figure", "display_name"]
