"""The per-class sections of the report: per-class accuracy with bootstrap intervals of the
difference, and the confusion matrices (each group's, and a pair's difference)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fgvc.report import confusion, figures
from fgvc.report.bootstrap import BOOT_RESAMPLES, class_intervals
from fgvc.report.inputs import Inputs
from fgvc.report.markdown import image, number, table
from fgvc.report.panels import Panel


def per_class_section(x: Inputs) -> list[str]:
    lines = ["## Per-class accuracy", ""]
    for p in x.panels:
        acc, used = _class_accuracy(p, x.preds, x.k)
        if acc:
            lines += _per_class_panel(x, p, acc, pd.concat(used))
    return lines


def _class_accuracy(p: Panel, preds: dict, k: int) -> tuple[dict, list[pd.DataFrame]]:
    """Per-class test top-1 (mean over the panel's seeds) per group label, and the runs it
    used; groups without predictions are left out."""
    acc, used = {}, []
    for g in p.groups:
        runs = g.runs[g.runs.seed.isin(p.seeds)]
        frames = [preds[r] for r in runs.run_id if preds.get(r) is not None]
        if frames:
            acc[g.label] = figures.per_class_accuracy(frames, k)
            used.append(runs)
    return acc, used


def _per_class_panel(x: Inputs, p: Panel, acc: dict, used: pd.DataFrame) -> list[str]:
    """Table and figure of per-class accuracy (with bootstrap intervals of the difference
    for a pair), then the confusion matrices, of one panel."""
    cap = x.prov.caption(used)
    labels = list(acc)
    diff = acc[labels[-1]] - acc[labels[0]] if len(labels) == 2 else acc[labels[0]]
    ci = class_intervals(p.pairs, x.k)[1:] if len(labels) == 2 and p.pairs else None
    order = sorted(range(x.k), key=lambda j: (-np.nan_to_num(diff[j], nan=-np.inf), j))
    title = " vs ".join(reversed(labels))
    fig = figures.per_class_figure(x.names, acc, order, f"Per-class test top-1: {title}\n{x.prov.title(used)}",
                                   x.fig_dir / f"per_class_{p.slug}.png", diff_ci=ci)
    what = "sorted by the difference (last minus first)" if len(labels) == 2 else "sorted by accuracy"
    bars = "; bars: 95% hierarchical bootstrap interval over seeds and the class's images" if ci else ""
    return [f"### {title}", "",
            f"*Table: per-class test top-1 (%), mean over seeds {', '.join(p.seeds)}, {what}"
            + (", with the 95% hierarchical bootstrap interval of the difference (seeds, then that class's test "
               f"images, {BOOT_RESAMPLES:,} resamples)" if ci else "") + f".{cap}*", "",
            _per_class_table(x, acc, diff, order, used, ci), ""] + _class_interval_text(x, ci, labels[-1]) + [
            image(f"Per-class accuracy, {title}", fig, x.out_dir), "",
            f"*Figure: per-class test top-1 (mean over seeds) and its difference{bars}.{cap}*", ""
            ] + _confusion(x, p, acc, title, cap)


def _per_class_table(x: Inputs, acc: dict, diff: np.ndarray, order: list[int], used: pd.DataFrame,
                     ci: tuple[np.ndarray, np.ndarray] | None) -> str:
    counts = np.bincount(next(iter(x.preds[r] for r in used.run_id if x.preds.get(r) is not None)).label,
                         minlength=x.k)
    labels = list(acc)
    header = ["class", "test images"] + labels + (["difference"] if len(labels) == 2 else [])
    header += ["95% bootstrap interval", "excludes 0"] if ci else []
    rows = []
    for j in order:
        row = [x.names[j], int(counts[j])] + [number(acc[lab][j]) for lab in labels]
        row += [number(diff[j], sign=True)] if len(labels) == 2 else []
        if ci:
            lo, hi = ci[0][j], ci[1][j]
            row += [f"[{number(lo, sign=True)}, {number(hi, sign=True)}]", _excludes_zero(lo, hi) or "no"]
        rows.append(row)
    return table(header, rows)


def _excludes_zero(lo: float, hi: float) -> str:
    """"**yes** (above 0)" / "**yes** (below 0)" when the interval excludes zero, else ""."""
    if lo > 0:
        return "**yes** (above 0)"
    if hi < 0:
        return "**yes** (below 0)"
    return ""


def _class_interval_text(x: Inputs, ci: tuple[np.ndarray, np.ndarray] | None, other: str) -> list[str]:
    """How many class intervals exclude zero, and what chance alone would give (`other`: the
    group compared with the baseline)."""
    if not ci:
        return []
    lo, hi = ci
    found = [x.names[j] for j in range(x.k) if _excludes_zero(lo[j], hi[j])]
    k = int(np.sum(np.isfinite(lo)))
    which = f": {', '.join(found)}" if found else ""
    return [f"{len(found)} of {k} class intervals exclude zero{which}. Each interval is at 95% and none is "
            f"adjusted for the others: if {other} changed nothing, about 1 in 20 (here about "
            f"{number(k / 20, 1)} of {k}) would exclude zero by chance, so a lone class that does is no finding.", ""]


def _confusion(x: Inputs, p: Panel, acc: dict, title: str, cap: str) -> list[str]:
    """The panel's confusion figures: for a pair, the difference matrix (other minus CE, in
    test images per seed) with its largest changes listed; then each group's row-normalised
    matrix (mean over seeds)."""
    preds = {lab: [x.preds[r] for r in g.runs[g.runs.seed.isin(p.seeds)].run_id if x.preds.get(r) is not None]
             for g, lab in zip([g for g in p.groups if g.label in acc], acc)}
    used = pd.concat([g.runs for g in p.groups])
    lines = _confusion_diff(x, p, preds, title, cap) if len(preds) == 2 else []
    cms = {lab: confusion.confusion_mean(frames, x.k) for lab, frames in preds.items()}
    fig = confusion.confusion_figure(x.names, cms, f"Confusion matrices (row-normalised, mean over seeds)\n"
                                     f"{x.prov.title(used)}", x.fig_dir / f"confusion_{p.slug}.png")
    return lines + [image(f"Confusion matrices, {title}", fig, x.out_dir), "",
                    f"*Figure: row-normalised confusion matrices (rows: true class), mean over seeds, {title}; "
                    f"cells of 10% or more carry their percentage.{cap}*", ""]


def _confusion_diff(x: Inputs, p: Panel, preds: dict, title: str, cap: str) -> list[str]:
    """The difference matrix of a pair, linked, and its largest off-diagonal changes in words."""
    (la, fa), (lb, fb) = preds.items()
    diff = confusion.confusion_counts(fb, x.k) - confusion.confusion_counts(fa, x.k)
    n = min(len(fa), len(fb))
    used = pd.concat([g.runs for g in p.groups])
    fig = confusion.confusion_diff_figure(x.names, diff, (la, lb), n,
                                          f"Confusions, {lb} minus {la}\n{x.prov.title(used)}",
                                          x.fig_dir / f"confusion_diff_{p.slug}.png")
    top = confusion.top_changes(diff, n=5)
    words = "; ".join(f"{x.names[i]} taken for {x.names[j]} {number(v, 1, sign=True)}" for i, j, v in top)
    return [image(f"Confusion difference, {title}", fig, x.out_dir), "",
            f"*Figure: confusion counts of {lb} minus those of {la} (rows: true class, columns: predicted), in test "
            f"images per seed, mean over {n} seeds; the {confusion.TOP_CHANGES} largest off-diagonal changes carry "
            f"their value, the grey diagonal the change in correctly classified images.{cap}*", "",
            (f"Largest changes (images per seed, {lb} minus {la}): {words}. No cell is tested on its own: with "
             f"about {number(len(fa[0]) / max(x.k, 1), 0)} test images a class, one image per seed is about "
             f"{number(100 * max(x.k, 1) / len(fa[0]), 1)} points of that class's accuracy; read the cells against "
             "the per-class intervals above.") if top else
            "No confusion changed by 0.2 images per seed or more.", ""]
