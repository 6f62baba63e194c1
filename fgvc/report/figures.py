"""Report figures: per-class accuracy, training curves, and the forest plot of paired
differences (the seed pairs and the leaderboard; confusion matrices: fgvc.report.confusion).
Every figure is drawn in fgvc.report.style (`@styled`) at the width it is printed at.

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
from fgvc.report.style import DOUBLE, TIE, method_color, sign_color, styled


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
@styled
def per_class_figure(names: Sequence[str], acc: Mapping[str, np.ndarray], order: Sequence[int], title: str,
                     path: Path, diff_ci: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Left: accuracy per class for each method; right: the difference (last - first),
    with `diff_ci` (low, high per class) as error bars when given."""
    labels = list(acc)
    k = len(order)
    fig = Figure(figsize=(DOUBLE, 1.3 + 0.22 * k))
    ax, axd = fig.subplots(1, 2, sharey=True, gridspec_kw=dict(width_ratios=(2, 1)))
    y = np.arange(k)
    h = 0.8 / len(labels)
    for i, lab in enumerate(labels):
        ax.barh(y + (i - (len(labels) - 1) / 2) * h, acc[lab][list(order)], height=h,
                color=method_color(i), label=lab)
    ax.set_yticks(y, [display_name(names[j]) for j in order])
    ax.invert_yaxis()
    ax.set_xlabel("test top-1 (%), mean over seeds")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right")
    ax.grid(axis="y", visible=False)
    if len(labels) >= 2:
        diff = acc[labels[-1]][list(order)] - acc[labels[0]][list(order)]
        xerr = None
        if diff_ci is not None:
            lo, hi = (np.asarray(v, dtype=float)[list(order)] for v in diff_ci)
            xerr = np.nan_to_num(np.clip([diff - lo, hi - diff], 0, None))
        axd.barh(y, diff, color=[sign_color(v) for v in diff], xerr=xerr,
                 error_kw=dict(ecolor="black", elinewidth=0.8, capsize=2))
        axd.axvline(0, color="black", lw=0.8)
        axd.set_xlabel(f"{labels[-1]} minus {labels[0]} (points)" + ("\n95% bootstrap interval" if xerr is not None
                                                                     else ""))
        axd.grid(axis="y", visible=False)
    else:
        axd.set_axis_off()
    fig.suptitle(title)
    tight_layout(fig)  # texts as written, not mathtext
    return save_figure(fig, path)


# The curve panels: (metrics.csv column, y label, log scale). The auxiliary term is drawn
# unweighted on its own axes, so CE + λ·aux never makes the auxiliary method look worse.
CURVE_PANELS = (("train_ce", "train CE loss", False), ("train_center", "auxiliary term (unweighted)", True),
                ("val_top1", "validation top-1 (%)", False), ("test_top1", "test top-1 (%)", False))


def curve_panels(metrics: Mapping[str, Sequence[pd.DataFrame]]) -> list[tuple[str, str, bool]]:
    """CURVE_PANELS that have data: the auxiliary panel only when some run has a non-zero
    term, the validation panel only when some run held out a validation split, the test
    panel only when some run was tested at 2 epochs or more (a lone final point is a number,
    not a curve: the report's tables give it); the total loss instead of the CE loss for
    metrics.csv files without train_ce."""
    frames = [f for fs in metrics.values() for f in fs]
    panels = []
    for col, label, log in CURVE_PANELS:
        if col == "train_ce" and not any(col in f.columns for f in frames):
            col, label = "train_loss", "train loss (CE + λ·aux)"
        values = [pd.to_numeric(f[col], errors="coerce") for f in frames if col in f.columns]
        if col == "train_center" and not any((v.abs() > 0).any() for v in values):
            continue
        if col == "test_top1" and not any(v.notna().sum() >= 2 for v in values):
            continue
        if values and any(v.notna().any() for v in values):
            # a term that can be negative (max_entropy's -H) has no log scale: linear, so it is drawn at all
            panels.append((col, label, log and not any((v < 0).any() for v in values)))
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
            marker="o" if sparse else None, ms=3)
    ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=color, alpha=0.2, lw=0)


@styled
def curves_figure(metrics: Mapping[str, Sequence[pd.DataFrame]], title: str, path: Path) -> Path:
    """Train CE loss, the auxiliary term (unweighted; log scale unless negative), validation top-1 (runs
    with a validation split) and test top-1 (runs tested during training) per epoch: mean
    over seeds, band = min..max. Accuracy axes run from 0 to 100 %, so a small gap looks small."""
    from matplotlib.ticker import MaxNLocator

    panels = curve_panels(metrics)
    fig = Figure(figsize=(DOUBLE, 2.5))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (col, ylabel, log) in zip(axes, panels):
        for i, (lab, frames) in enumerate(metrics.items()):
            _curve(ax, frames, col, method_color(i), lab)
        ax.set_xlabel("epoch")
        ax.set_title(ylabel)
        if log:
            ax.set_yscale("log")
        elif "top1" in col:
            ax.set_ylim(0, 100)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title + "\nline: mean over seeds; band: min to max over seeds")
    tight_layout(fig)  # texts as written, not mathtext
    fig.subplots_adjust(bottom=0.3)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- forest plot
@styled
def forest_figure(rows: Sequence[Mapping], title: str, path: Path, xlabel: str, margin: float | None = None) -> Path:
    """Paired differences on one shared, zero-anchored axis, one row per comparison (top
    first): each seed pair's difference (dots: blue better, vermillion worse), the mean
    (diamond) with its 95% t interval (thin line) and 90% t interval (thick), the 95%
    hierarchical bootstrap interval (grey bar under it) where known, and the ±margin of the
    equivalence test (shaded) where given.

    Each row: label, diffs (per seed pair; may be empty), mean, ci95 and optionally ci90,
    boot ((low, high), NaN where undefined) and check (why the row is a check, or "")."""
    n = len(rows)
    fig = Figure(figsize=(DOUBLE, 1.5 + 0.42 * n))
    ax = fig.subplots()
    if margin:
        ax.axvspan(-margin, margin, color=TIE, alpha=0.12, lw=0, label=f"±{margin:g} point equivalence margin")
    ax.axvline(0, color="black", lw=0.8)
    span = [abs(float(margin or 0))]
    for i, row in enumerate(rows):
        span += _forest_row(ax, n - 1 - i, row)
    lim = max([s for s in span if np.isfinite(s)] + [0.5]) * 1.15
    ax.set_xlim(-lim, lim)
    ax.set_yticks(range(n)[::-1], [("CHECK: " if r.get("check") else "") + r["label"] for r in rows])
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(xlabel)
    fig.suptitle(title)
    tight_layout(fig)  # texts as written, not mathtext
    fig.legend(*_unique_legend(ax), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3)
    return save_figure(fig, path)


def _forest_row(ax, y: float, row: Mapping) -> list[float]:
    """Draw one comparison at height y; returns the |x| values it spans."""
    d = np.asarray(row.get("diffs", ()), dtype=float)
    jitter = np.linspace(-0.12, 0.12, len(d)) if len(d) > 1 else np.zeros(len(d))
    ax.scatter(d, y + 0.18 + jitter, c=[sign_color(v) for v in d], s=12, zorder=3, label="one seed pair")
    spans = list(np.abs(d))
    boot = row.get("boot", (np.nan, np.nan))
    if np.all(np.isfinite(boot)):
        ax.plot(boot, [y - 0.16] * 2, color=TIE, lw=3, solid_capstyle="butt", label="95% bootstrap interval")
        spans += [abs(v) for v in boot]
    for key, lw, name in (("ci95", 1.2, "95% t interval"), ("ci90", 3.5, "90% t interval")):
        lo, hi = row.get(key, (np.nan, np.nan))
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [y, y], color="black", lw=lw, solid_capstyle="butt", label=name)
            spans += [abs(lo), abs(hi)]
    mean = float(row["mean"])
    if np.isfinite(mean):
        ax.plot([mean], [y], marker="D", color=sign_color(mean), mec="black", ms=6, ls="none", zorder=4,
                label="mean difference")
        right = max([mean] + [v for v in (*row.get("ci95", ()), *boot) if np.isfinite(v)])
        ax.annotate(f"{mean:+.1f}", (right, y), xytext=(5, 0), textcoords="offset points", va="center",
                    fontsize="small")
        spans.append(abs(mean))
    return spans


def _unique_legend(ax) -> tuple[list, list[str]]:
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    return list(seen.values()), list(seen)


def _knob(settings: Sequence[str]) -> tuple[list[str], str]:
    """Tick labels and axis name of one method's settings: ("0.3", "1"), "λ" for "λ 0.3", "λ 1";
    the settings as written (and no name) where they are not one key each."""
    parts = [s.split(" ") for s in settings]
    if all(len(p) == 2 for p in parts) and len({p[0] for p in parts}) == 1:
        return [p[1] for p in parts], display_name(parts[0][0])
    return list(settings), ""


@styled
def standings_figure(standings: pd.DataFrame, epochs: Sequence[int], title: str, path: Path) -> Path:
    """Successive halving, one panel per method on one shared accuracy axis: each setting's mean
    validation top-1 over seeds (rows of fgvc.report.progress.standings_table, in their order)
    against the method's own knob, one line per rung (darker: later); a pruned setting's line
    stops at the rung it was stopped at."""
    from matplotlib import colormaps

    methods = list(dict.fromkeys(standings.method))
    ncols = min(5, len(methods))
    nrows = -(-len(methods) // ncols)
    fig = Figure(figsize=(DOUBLE, 0.9 + 1.9 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    shades = colormaps["Blues"](np.linspace(0.45, 0.95, len(epochs)))
    for ax, method in zip(axes, methods):
        rows = standings[standings.method == method]
        ticks, knob = _knob(list(rows.setting))
        xs = np.arange(len(rows))
        for e, shade in zip(epochs, shades):
            ys = pd.to_numeric(rows[f"epoch {e}"], errors="coerce").to_numpy(dtype=float)
            ax.plot(xs, ys, marker="o", ms=3.5, color=shade, label=f"epoch {e}")
        ax.set_xticks(xs, ticks, rotation=0 if knob else 30)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_title("CE" if method == "ce" else display_name(method))
        ax.set_xlabel(knob)
    for ax in axes[len(methods):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("validation top-1 (%)")
    fig.suptitle(title)
    tight_layout(fig)
    fig.legend(*_unique_legend(axes[0]), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(epochs))
    return save_figure(fig, path)


__all__ = ["save_figure", "per_class_accuracy", "per_class_figure", "curves_figure", "display_name", "short_names",
           "forest_figure", "CURVE_PANELS", "curve_panels", "standings_figure"]
