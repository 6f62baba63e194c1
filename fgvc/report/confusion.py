"""Confusion matrices: each group's row-normalised matrix, and the difference matrix
(other group minus the baseline) in test images per seed, with its largest changes named.

The difference matrix is drawn to be read at the width of a Markdown page: one matrix,
short class names, and numbers only in the cells that changed most. Its diagonal (images
classified correctly) is shown apart, in grey, since it is the per-class accuracy change
that the per-class figure already shows, and its size would swamp the colour scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fgvc.io import save_figure
from fgvc.report.figures import short_names
from fgvc.report.style import DIVERGING, DOUBLE, SEQUENTIAL, styled

TOP_CHANGES = 12  # off-diagonal cells annotated in the difference matrix
SHOWN_CONFUSION = 0.15  # off-diagonal cells of a confusion matrix that carry their percentage
MIN_CHANGE = 0.2  # ... when they changed by at least this many images per seed


def confusion_counts(preds: Sequence[pd.DataFrame], num_classes: int) -> np.ndarray:
    """Confusion counts (rows = true class, columns = predicted), mean over runs."""
    from sklearn.metrics import confusion_matrix

    cms = [confusion_matrix(p.label, p.pred, labels=np.arange(num_classes)).astype(float) for p in preds]
    return np.mean(cms, axis=0) if cms else np.zeros((num_classes, num_classes))


def confusion_mean(preds: Sequence[pd.DataFrame], num_classes: int) -> np.ndarray:
    """Row-normalised confusion matrix (rows = true class), mean over runs."""
    cms = []
    for p in preds:
        cm = confusion_counts([p], num_classes)
        rows = cm.sum(1, keepdims=True)
        cms.append(np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0))
    return np.mean(cms, axis=0)


def top_changes(diff: np.ndarray, n: int = TOP_CHANGES, least: float = MIN_CHANGE) -> list[tuple[int, int, float]]:
    """The off-diagonal cells of a difference matrix that changed most: (true, predicted,
    change), largest |change| first (ties: row, then column), at least `least` in size."""
    k = len(diff)
    cells = [(i, j, float(diff[i, j])) for i in range(k) for j in range(k) if i != j and abs(diff[i, j]) >= least]
    return sorted(cells, key=lambda c: (-round(abs(c[2]), 9), c[0], c[1]))[:n]


@styled
def confusion_figure(names: Sequence[str], cms: Mapping[str, np.ndarray], title: str, path: Path) -> Path:
    """Row-normalised confusion heatmaps, one per group, side by side on one colour scale;
    only the real confusions (off-diagonal cells of at least SHOWN_CONFUSION) carry their
    percentage, so the numbers that matter stay large enough to read."""
    ticks, common = short_names(names)
    k = len(names)
    side = min(DOUBLE / len(cms), 3.6)
    fig = Figure(figsize=(side * len(cms) + 0.8, side + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(cms)))
    for i, (ax, (lab, cm)) in enumerate(zip(axes, cms.items())):
        im = ax.imshow(cm, vmin=0, vmax=1, cmap=SEQUENTIAL)
        for r, c in zip(*np.nonzero((cm >= SHOWN_CONFUSION) & ~np.eye(k, dtype=bool))):
            ax.text(c, r, f"{100 * cm[r, c]:.0f}", ha="center", va="center", fontsize=6.5 if k > 10 else 8,
                    color="white" if cm[r, c] > 0.55 else "black", fontweight="bold")
        _ticks(ax, ticks, rows=i == 0, size=6 if k > 10 else 8)
        ax.set_title(lab)
        ax.grid(False)
    fig.colorbar(im, ax=list(axes), shrink=0.6, label="fraction of the true class")
    fig.suptitle(title + (f"\nclass names without the common word “{common}”" if common else "")
                 + f"; numbers: confusions of at least {SHOWN_CONFUSION:.0%} of the true class")
    return save_figure(fig, path)


def _ticks(ax, ticks: Sequence[str], rows: bool = True, size: float = 8) -> None:
    k = len(ticks)
    ax.set_xticks(range(k), ticks, rotation=60, ha="right", rotation_mode="anchor", fontsize=size)
    ax.set_yticks(range(k), ticks if rows else [""] * k, fontsize=size)
    ax.set_xlabel("predicted class")
    if rows:
        ax.set_ylabel("true class")


@styled
def confusion_diff_figure(names: Sequence[str], diff: np.ndarray, labels: tuple[str, str], seeds: int, title: str,
                          path: Path) -> Path:
    """The difference of two mean confusion-count matrices (labels[1] minus labels[0]), in
    test images per seed: off-diagonal cells coloured (red: more of that confusion with
    labels[1]), the TOP_CHANGES largest annotated; the diagonal in grey with its change."""
    ticks, common = short_names(names)
    k = len(names)
    off = np.where(np.eye(k, dtype=bool), np.nan, diff)
    vmax = max(float(np.nanmax(np.abs(off), initial=0.0)), 0.2)
    fig = Figure(figsize=(DOUBLE * 0.75, DOUBLE * 0.75), layout="constrained")
    ax = fig.subplots()
    cmap = _diverging()
    im = ax.imshow(off, cmap=cmap, vmin=-vmax, vmax=vmax)
    for i in range(k):
        ax.add_patch(_square(i, "#e6e6e6"))
        ax.text(i, i, f"{diff[i, i]:+.1f}".replace("+0.0", "0").replace("-0.0", "0"), ha="center", va="center",
                fontsize=5.5, color="#555555")
    for i, j, v in top_changes(diff):
        ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=6.5, fontweight="bold",
                color="white" if abs(v) > 0.6 * vmax else "black")
    _ticks(ax, ticks, size=6.5 if k > 10 else 8)
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.7,
                 label=f"{labels[1]} minus {labels[0]}: test images per seed (mean over {seeds})")
    fig.suptitle(title + f"\nred: confused more often with {labels[1]}; blue: less often. Bold: the "
                 f"{TOP_CHANGES} largest changes; grey diagonal: change in correct images"
                 + (f"\nclass names without the common word “{common}”" if common else ""))
    return save_figure(fig, path)


def _diverging():
    import matplotlib

    return matplotlib.colormaps[DIVERGING].with_extremes(bad="#e6e6e6")


def _square(i: int, color: str):
    from matplotlib.patches import Rectangle

    return Rectangle((i - 0.5, i - 0.5), 1, 1, facecolor=color, edgecolor="#999999", lw=0.4)


__all__ = ["confusion_counts", "confusion_mean", "top_changes", "confusion_figure", "confusion_diff_figure",
           "TOP_CHANGES", "MIN_CHANGE"]
