"""Report figures: per-class accuracy, training curves, seed pairs (confusion matrices:
fgvc.report.confusion).

Built on `matplotlib.figure.Figure` (Agg canvas) rather than pyplot, so no global
backend or state is touched and nothing waits for a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fgvc.io import save_figure, tight_layout

METHOD_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def display_name(name: str) -> str:
    return name.replace("_", " ")


def short_names(names: Sequence[str]) -> tuple[list[str], str]:
    """Display names without a last word every name shares ("Baird_Sparrow" -> "Baird"
    when every class is a "..._Sparrow"), and that word ("" when none is shared)."""
    words = [display_name(n).rsplit(" ", 1) for n in names]
    last = {w[-1] for w in words}
    if len(names) > 1 and len(last) == 1 and all(len(w) == 2 for w in words):
        return [w[0] for w in words], last.pop()
    return [display_name(n) for n in names], ""


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
    tight_layout(fig)  # texts as written, not mathtext
    return save_figure(fig, path)


# The curve panels: (metrics.csv column, y label, log scale). The auxiliary term is drawn
# unweighted on its own axes, so CE + λ·aux never makes the auxiliary method look worse.
CURVE_PANELS = (("train_ce", "train CE loss", False), ("train_center", "auxiliary term (unweighted)", True),
                ("val_top1", "validation top-1 (%)", False), ("test_top1", "test top-1 (%)", False))


def curve_panels(metrics: Mapping[str, Sequence[pd.DataFrame]]) -> list[tuple[str, str, bool]]:
    """CURVE_PANELS that have data: the auxiliary panel only when some run has a non-zero
    term, the validation panel only when some run held out a validation split; the total
    loss instead of the CE loss for metrics.csv files without train_ce."""
    frames = [f for fs in metrics.values() for f in fs]
    panels = []
    for col, label, log in CURVE_PANELS:
        if col == "train_ce" and not any(col in f.columns for f in frames):
            col, label = "train_loss", "train loss (CE + λ·aux)"
        values = [pd.to_numeric(f[col], errors="coerce") for f in frames if col in f.columns]
        if col == "train_center" and not any((v.abs() > 0).any() for v in values):
            continue
        if values and any(v.notna().any() for v in values):
            panels.append((col, label, log))
    return panels


def _curve(ax, frames: Sequence[pd.DataFrame], col: str, color, label: str) -> None:
    """Mean over seeds and the min..max band of one column; markers where the column is
    recorded on fewer epochs than the run has (eval_every); all-zero series skipped."""
    series = [pd.to_numeric(f.set_index("epoch")[col], errors="coerce") for f in frames
              if col in f.columns and "epoch" in f.columns]
    if not series:
        return
    full = pd.concat(series, axis=1)
    table = full.dropna(how="all")
    if col == "train_center" and not (table.abs() > 0).any().any():
        return
    sparse = len(table) < len(full)
    ax.plot(table.index, table.mean(axis=1), color=color, label=f"{label} (n={table.shape[1]})",
            marker="o" if sparse else None, ms=4)
    ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=color, alpha=0.2, lw=0)


def curves_figure(metrics: Mapping[str, Sequence[pd.DataFrame]], title: str, path: Path) -> Path:
    """Train CE loss, the auxiliary term (unweighted, log scale), validation top-1 (runs
    with a validation split) and test top-1 per epoch: mean over seeds, band = min..max."""
    from matplotlib.ticker import MaxNLocator

    panels = curve_panels(metrics)
    fig = Figure(figsize=(4.0 * len(panels) + 0.5, 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (col, ylabel, log) in zip(axes, panels):
        for i, (lab, frames) in enumerate(metrics.items()):
            _curve(ax, frames, col, METHOD_COLORS[i % len(METHOD_COLORS)], lab)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel, fontsize="medium")
        if log:
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3, which="both" if log else "major")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(title + "\nline: mean over seeds; band: min to max over seeds", fontsize="medium")
    tight_layout(fig)  # texts as written, not mathtext
    return save_figure(fig, path)


# --------------------------------------------------------------------------- seed pairs
def paired_seeds_figure(pairs: Sequence[Mapping], title: str, path: Path) -> Path:
    """One row per compared pair. Left: each seed's test top-1 for the baseline and the
    other group, a line joining the two runs of a seed (green: the other group is better,
    red: worse, grey: tied). Right: the per-seed differences, their mean with the 95% (thin)
    and 90% (thick) t intervals, and the ±margin of the equivalence test.

    Each pair: label_a, label_b, seeds, a, b (top-1 per seed), ci95, ci90 ((low, high),
    NaN where undefined), margin, check ("" or why the pair is a check)."""
    fig = Figure(figsize=(9.0, 1.0 + 3.8 * len(pairs)))
    axes = np.atleast_2d(fig.subplots(len(pairs), 2, gridspec_kw=dict(width_ratios=(1.1, 1))))
    for (ax, axd), pair in zip(axes, pairs):
        _slopes(ax, pair)
        _differences(axd, pair)
    fig.suptitle(title, fontsize="medium")
    tight_layout(fig)  # texts as written, not mathtext
    return save_figure(fig, path)


def _slopes(ax, pair: Mapping) -> None:
    a, b = np.asarray(pair["a"], dtype=float), np.asarray(pair["b"], dtype=float)
    for s, x, y in zip(pair["seeds"], a, b):
        color = _sign_color(y - x)
        ax.plot([0, 1], [x, y], color=color, marker="o", ms=5, lw=1.5, alpha=0.85)
        ax.annotate(f"seed {s}", (1, y), xytext=(6, 0), textcoords="offset points", va="center",
                    fontsize="x-small", color=color)
    ax.set_xticks([0, 1], [pair["label_a"], pair["label_b"]])
    ax.set_xlim(-0.3, 1.55)
    ax.set_ylabel("test top-1 (%), final epoch")
    head = f"{pair['label_b']} vs {pair['label_a']}, {len(a)} seed pair{'s' if len(a) != 1 else ''}"
    ax.set_title(("CHECK, not a result: " if pair.get("check") else "") + head, fontsize="medium")
    ax.grid(axis="y", alpha=0.3)


def _sign_color(d: float) -> str:
    """Green for a positive difference, red for a negative one, grey for a tie."""
    return "#2ca02c" if d > 1e-9 else "#d62728" if d < -1e-9 else "#7f7f7f"


def _differences(ax, pair: Mapping) -> None:
    d = np.asarray(pair["b"], dtype=float) - np.asarray(pair["a"], dtype=float)
    m = float(pair["margin"])
    ax.axvspan(-m, m, color="#1f77b4", alpha=0.08, lw=0, label=f"±{m:g} point equivalence margin")
    ax.axvline(0, color="black", lw=0.8)
    jitter = np.linspace(-0.15, 0.15, len(d)) if len(d) > 1 else np.zeros(len(d))
    colors = [_sign_color(x) for x in d]
    ax.scatter(d, 1 + jitter, c=colors, s=36, zorder=3, label="one seed pair")
    for s, x, y in zip(pair["seeds"], d, 1 + jitter):
        ax.annotate(f"{s}", (x, y), xytext=(0, 5), textcoords="offset points", ha="center", fontsize="x-small")
    mean = float(d.mean()) if len(d) else np.nan
    for (lo, hi), lw, name in ((pair["ci95"], 1.2, "95%"), (pair["ci90"], 4.0, "90%")):
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [0.45, 0.45], color="black", lw=lw, solid_capstyle="butt",
                    label=f"{name} t interval of the mean")
    ax.plot([mean], [0.45], marker="D", color="black", ms=7, ls="none", label=f"mean {mean:+.2f}")
    span = max(np.nanmax(np.abs(np.r_[d, pair["ci95"], pair["ci90"]]), initial=0.0), m) * 1.25
    ax.set_xlim(-span, span)
    ax.set_ylim(0.2, 1.35)
    ax.set_yticks([])
    ax.set_xlabel(f"{pair['label_b']} minus {pair['label_a']} (points; numbers: seeds)")
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    ax.set_title("per-seed differences; their mean and t intervals", fontsize="medium")
    ax.grid(axis="x", alpha=0.3)


__all__ = ["save_figure", "per_class_accuracy", "per_class_figure", "curves_figure", "display_name", "short_names",
           "paired_seeds_figure", "CURVE_PANELS", "curve_panels"]
