"""`fgvc compare A.csv B.csv [...]`: results from different runs, machines or code
versions side by side, as differences against the first file.

Rows are aligned on model, method and the grid's hyper-parameters that every file has,
or on the keys given with `--on` (e.g. `--on model,method` to set a 2-epoch smoke grid
beside the 30-epoch grid); settings the files differ in but are not aligned on are named.
Nothing is silently dropped: rows that only one side has are listed.

Where both sides have per-seed rows (runs.csv), only the seeds both have enter a
difference: the Δ columns are means over those paired seeds, and the table says how many
there are. Each side's own mean over all its seeds is shown too, as an unpaired mean; where
a side has group means only (summary.csv), Δ is the difference of the unpaired means and
is marked so. The report's paired statistics over matching seeds (fgvc.report.stats: paired
t-test, TOST equivalence within a margin, the smallest effect detectable with 80 % power,
P(improvement), Holm across the groups of one comparison) say whether a difference is more
than seed noise, or rules one out.

`--metric val_top1` runs all of that on validation top-1 instead of the final-epoch test
top-1 (runs.csv of runs with a validation split): what a choice between two settings, e.g.
two center-update rules, should read, so that the test set is only reported.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fgvc.errors import FGVCError
from fgvc.io import atomic_write_text
from fgvc.report.load import EXTRA_CONFIG_KEYS, canon, read_results_csv
from fgvc.report.markdown import code, escape, inert, number, table
from fgvc.report.metric_names import DELTA_NAMES, PAIRED_METRICS
from fgvc.report.sources import source_warnings
from fgvc.report.stats import DEFAULT_MARGIN, PairedResult, adjust_across, paired_comparison, sort_key
from fgvc.report.verdicts import compare_cell

RUNS_REQUIRED = ["model", "method", "seed", "top1"]
SUMMARY_REQUIRED = ["model", "method", "n", "top1_mean"]
HYPER_KEYS = ["center_weight", "center_update", "lr", "batch_size", "epochs", "image_size", *EXTRA_CONFIG_KEYS]
# metric name in the comparison -> (runs.csv column, summary.csv column)
METRICS = {"top1": ("top1", "top1_mean"), "top5": ("top5", "top5_mean"),
           "mean_class_acc": ("mean_class_acc", "mean_class_acc_mean")}


@dataclass
class Results:
    path: Path
    kind: str  # "runs" or "summary"
    frame: pd.DataFrame

    @property
    def label(self) -> str:
        return f"{self.kind}.csv"


def read_results(path: Path, metric: str = "top1") -> Results:
    """A runs.csv (ok rows only) or summary.csv; anything else is an FGVCError naming
    the file and the columns it lacks. Rows without a numeric `metric` are left out (with a
    warning); `val_top1` needs a runs.csv with that column."""
    path = Path(path)
    if path.is_dir():
        raise FGVCError(f"{path}: is a folder; give its runs.csv or summary.csv")
    df = read_results_csv(path)
    cols = set(df.columns)
    if all(c in cols for c in RUNS_REQUIRED):
        kind = "runs"
        if "status" in cols:
            df = df[df.status.str.strip().str.lower() == "ok"]
    elif all(c in cols for c in SUMMARY_REQUIRED):
        kind = "summary"
    else:
        looks_summary = bool(cols & {"n", "top1_mean", "top1_std"})
        need = SUMMARY_REQUIRED if looks_summary else RUNS_REQUIRED
        missing = [c for c in need if c not in cols]
        raise FGVCError(f"{path}: not a results CSV: missing columns {', '.join(missing)} (a runs.csv needs "
                        f"{', '.join(RUNS_REQUIRED)}; a summary.csv needs {', '.join(SUMMARY_REQUIRED)})")
    df = df.copy()
    for c in ["model", "method", "seed", *HYPER_KEYS, "weights"]:
        if c in df.columns:
            df[c] = df[c].map(canon)
    for name, (rc, sc) in METRICS.items():
        col = rc if kind == "runs" else sc
        df[name] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else math.nan
    if metric not in PAIRED_METRICS:
        raise FGVCError(f"unknown metric {metric!r}: choose one of {', '.join(PAIRED_METRICS)}")
    if metric not in METRICS:
        if kind != "runs" or metric not in cols:
            raise FGVCError(f"{path}: no {metric} column (--metric {metric} needs the runs.csv of runs trained "
                            "with a validation split, val_fraction > 0)")
        df[metric] = pd.to_numeric(df[metric], errors="coerce")
    bad = ~np.isfinite(df[metric].astype(float))
    if bad.any():  # a NaN (or text) accuracy is no result: leave it out, and say so
        ids = df.run_id if "run_id" in df.columns else df.index.astype(str)
        print(f"warning: {path}: {int(bad.sum())} row(s) without a numeric {DELTA_NAMES[metric]} left out"
              + (f" ({', '.join(map(str, ids[bad][:5]))}{', ...' if bad.sum() > 5 else ''})" if kind == "runs" else ""),
              file=sys.stderr)
        df = df[~bad]
    if kind == "summary":
        df["n"] = pd.to_numeric(df["n"], errors="coerce")
    return Results(path, kind, df.reset_index(drop=True))


def _keys(results: list[Results], on: Sequence[str] | None = None) -> list[str]:
    """The keys rows are aligned on: `on` when given (checked against every file), else
    model, method and the hyper-parameters every file has (and weights where needed)."""
    if on:
        keys = _check_on(results, on)
    else:
        keys = ["model", "method"] + [k for k in HYPER_KEYS if all(k in r.frame.columns for r in results)]
        if all("weights" in r.frame.columns for r in results) and any(_dups(r, keys) for r in results):
            keys.insert(1, "weights")
    for r in results:
        d = _dups(r, keys)
        if d:
            raise FGVCError(f"{r.path}: {d} rows share the same {', '.join(keys)}"
                            + (", seed" if r.kind == "runs" else "")
                            + "; these columns cannot tell them apart (compare files of one grid, split the file, "
                              "or align on more keys with --on)")
    return keys


def _check_on(results: list[Results], on: Sequence[str]) -> list[str]:
    """`--on` keys, stripped and deduplicated; each must be a column of every file and not seed."""
    keys = list(dict.fromkeys(k.strip() for k in on if k.strip()))
    if not keys:
        raise FGVCError("--on: no key given; e.g. --on model,method")
    if "seed" in keys:
        raise FGVCError("--on seed: seeds are what runs are paired on, within each aligned row; leave seed out")
    for r in results:
        missing = [k for k in keys if k not in r.frame.columns]
        if missing:
            cols = ", ".join(c for c in r.frame.columns if c not in METRICS and c not in ("seed",))
            raise FGVCError(f"--on {','.join(keys)}: {r.path} has no column {', '.join(missing)}; its columns: {cols}")
    return keys


def _dups(r: Results, keys: list[str]) -> int:
    cols = keys + (["seed"] if r.kind == "runs" else [])
    return int(r.frame.duplicated(cols).sum())


def _delta_metrics(metric: str) -> list[str]:
    """The metrics with a Δ column: the paired one first, then the test metrics."""
    return list(dict.fromkeys([metric, *METRICS]))


def _delta_name(m: str, metric: str) -> str:
    """A Δ column's name; test top-1 says "test" where the paired metric is another."""
    return "test top-1" if m == "top1" and metric != "top1" else DELTA_NAMES[m]


def _groups(r: Results, keys: list[str], metric: str = "top1") -> dict[tuple, dict]:
    """group key -> n, metric means, and per-seed `metric` (runs.csv only)."""
    out, ms = {}, _delta_metrics(metric)
    for key, g in r.frame.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        if r.kind == "runs":
            out[key] = dict(n=len(g), **{m: g[m].mean() for m in ms},
                            seeds=dict(zip(g.seed, g[metric].astype(float))),
                            per_seed={m: dict(zip(g.seed, g[m].astype(float))) for m in ms})
        else:
            row = g.iloc[0]
            out[key] = dict(n=row.n, **{m: row[m] for m in ms}, seeds=None, per_seed=None)
    return out


def _paired(a: dict, b: dict, margin: float) -> tuple[PairedResult, list[str], list[str]]:
    """The paired statistics of b - a over seeds present in both: (result, seeds only in a, only in b)."""
    seeds = sorted(set(a) & set(b), key=sort_key)
    only_a = sorted(set(a) - set(b), key=sort_key)
    only_b = sorted(set(b) - set(a), key=sort_key)
    res = paired_comparison(seeds, [a[s] for s in seeds], [b[s] for s in seeds], margin=margin,
                            ce_all=list(a.values()), center_all=list(b.values()))
    return res, only_a, only_b


@dataclass
class _Aligned:
    """The files read, their groups by the shared keys, and which key columns to show."""

    results: list[Results]
    keys: list[str]
    groups: list[dict[tuple, dict]]  # per file: group key -> _groups' summary
    all_keys: list[tuple]  # every group key of any file, in sort order
    shown: list[int]  # indices of the keys shown as columns: model, method and what varies
    margin: float = DEFAULT_MARGIN  # equivalence margin, accuracy points
    chosen: bool = False  # whether the keys were chosen with --on
    metric: str = "top1"  # what the paired statistics read (PAIRED_METRICS)


def _align(results: list[Results], margin: float = DEFAULT_MARGIN, on: Sequence[str] | None = None,
           metric: str = "top1") -> _Aligned:
    keys = _keys(results, on)
    groups = [_groups(r, keys, metric) for r in results]
    all_keys = sorted(set().union(*groups), key=lambda k: tuple(sort_key(v) for v in k))
    shown = [i for i, k in enumerate(keys) if k in ("model", "method") or bool(on)
             or len({key[i] for key in all_keys}) > 1]
    return _Aligned(results, keys, groups, all_keys, shown, margin, bool(on), metric)


def _files(al: _Aligned) -> list[str]:
    """The title, the numbered list of files and what the rows are aligned on."""
    lines = ["# fgvc compare", "", "Files (differences are against [1]; accuracies in percent points):", ""]
    for i, r in enumerate(al.results, 1):
        what = "ok runs" if r.kind == "runs" else "groups"
        lines.append(f"- [{i}] {code(r.path)} ({r.label}, {len(r.frame)} {what})")
    how = " (chosen with --on)" if al.chosen else ""
    seeds = " Within a row, runs are paired by seed where both sides are runs.csv." if any(
        r.kind == "runs" for r in al.results) else ""
    read = ("" if al.metric == "top1" else f" The paired statistics read {DELTA_NAMES[al.metric]} "
            f"(--metric {al.metric}); the test columns are shown beside it, not tested.")
    return lines + ["", f"Rows aligned on: {escape(', '.join(al.keys))}{how}.{seeds}{read}", ""]


PAIRING_TEXT = ("{m} [1] and [{i}]: each file's own mean over all its rows of the group (unpaired means; their "
                "n may differ). Δ: [{i}] minus [1] over the seeds both files have (the *paired* column counts them); "
                "a seed only one file has enters no Δ. Where a side has group means only (summary.csv), Δ is the "
                "difference of the unpaired means, marked *(unpaired)*.")


def _versus(al: _Aligned, i: int) -> list[str]:
    """The section "[i+1] vs [1]": a row per group, then the rows and seeds one side lacks, then per-seed top-1."""
    base, other = al.groups[0], al.groups[i]
    both_runs = al.results[0].kind == "runs" and al.results[i].kind == "runs"
    name = DELTA_NAMES[al.metric]
    header = [al.keys[j] for j in al.shown] + ["n [1]", f"n [{i + 1}]", f"{name} [1]", f"{name} [{i + 1}]", "paired",
                                               *(f"Δ {_delta_name(m, al.metric)}" for m in _delta_metrics(al.metric))]
    if both_runs:
        header.append("paired over seeds: t-test, TOST, MDE, P(improve)")
    paired = _paired_all(al, i) if both_runs else {}
    rows, one_sided, seed_notes, per_seed = [], [], [], []
    for key in al.all_keys:
        a, b = base.get(key), other.get(key)
        if a is None and b is None:
            continue
        label = ", ".join(f"{al.keys[j]}={key[j]}" for j in al.shown)
        if a is None or b is None:
            one_sided.append(f"{escape(label)}: only in [{1 if b is None else i + 1}]")
        cells = [key[j] for j in al.shown] + _metric_cells(a, b, al.metric)
        if both_runs:
            notes, seed_rows = _seed_rows(label, i, a, b, *paired[key][1:]) if key in paired else ([], [])
            cells.append(compare_cell(paired[key][0]) if key in paired else "—")
            seed_notes += notes
            per_seed += seed_rows
        rows.append(cells)
    lines = [f"## [{i + 1}] vs [1]", "", PAIRING_TEXT.format(i=i + 1, m=name), "", table(header, rows), ""]
    lines += _unaligned(al, i)
    if al.results[0].kind != al.results[i].kind:
        lines += ["One side has only group means (summary.csv): no per-seed test is possible.", ""]
    if one_sided or seed_notes:
        lines += ["Rows present on one side only:", ""] + [f"- {t}" for t in one_sided + seed_notes] + [""]
    if per_seed:
        lines += [f"Per seed ({name}):", "", table(["group", "seed", "[1]", f"[{i + 1}]", "Δ"], per_seed), ""]
    family = max((r.family for r, _, _ in paired.values()), default=0)
    if family > 1:
        lines += [f"Paired t-test and TOST p-values Holm-adjusted across the {family} groups with a t-test; the "
                  "verdicts use the adjusted values.", ""]
    return lines


def _unaligned(al: _Aligned, i: int) -> list[str]:
    """The settings [1] and [i+1] hold different values of, that the rows are not aligned on."""
    a, b = al.results[0].frame, al.results[i].frame
    diff = []
    for k in ["weights", *HYPER_KEYS]:
        if k in al.keys or k not in a.columns or k not in b.columns:
            continue
        va, vb = (sorted({v for v in f[k] if v != ""}, key=sort_key) for f in (a, b))
        if va != vb:
            diff.append(f"{k} ([1]: {escape(', '.join(va)) or '—'}; [{i + 1}]: {escape(', '.join(vb)) or '—'})")
    if not diff:
        return []
    return [f"Not aligned on, and different between the files: {'; '.join(diff)}. Rows are set side by side "
            "regardless; align on a key with --on to keep its values apart.", ""]


def _paired_all(al: _Aligned, i: int) -> dict[tuple, tuple[PairedResult, list[str], list[str]]]:
    """Per group that both files have: `_paired` of [i+1] minus [1], Holm-adjusted across them."""
    base, other = al.groups[0], al.groups[i]
    out = {key: _paired(base[key]["seeds"], other[key]["seeds"], al.margin)
           for key in al.all_keys if key in base and key in other}
    adjust_across([r for r, _, _ in out.values()])
    return out


def _metric_cells(a: dict | None, b: dict | None, metric: str = "top1") -> list[str]:
    """n and the unpaired `metric` mean of each side, the paired seeds, and the metric
    differences (b minus a) over them; between unpaired means, marked so, where a side has
    no per-seed rows; "—" where a side lacks the group or no seed pairs."""
    ms = _delta_metrics(metric)
    cells = [number(a["n"], 0) if a else "—", number(b["n"], 0) if b else "—",
             number(a[metric]) if a else "—", number(b[metric]) if b else "—"]
    if not (a and b):
        return cells + ["—"] * (1 + len(ms))
    if a.get("per_seed") is None or b.get("per_seed") is None:
        return cells + ["—"] + [f"{number(b[m] - a[m], sign=True)} (unpaired)" for m in ms]
    seeds = sorted(set(a["per_seed"][metric]) & set(b["per_seed"][metric]), key=sort_key)
    deltas = []
    for m in ms:
        d = [b["per_seed"][m][s] - a["per_seed"][m][s] for s in seeds]
        d = [x for x in d if math.isfinite(x)]
        deltas.append(number(sum(d) / len(d), sign=True) if d else "—")
    return cells + [str(len(seeds))] + deltas


def _seed_rows(label: str, i: int, a: dict, b: dict, only_a: list[str], only_b: list[str]
               ) -> tuple[list[str], list[list]]:
    """For a group with per-seed rows on both sides: notes on seeds only one side has, and
    the rows of the per-seed table."""
    notes = [f"{escape(label)}: seed(s) {escape(', '.join(seeds))} only in [{side}]"
             for side, seeds in ((1, only_a), (i + 1, only_b)) if seeds]
    rows = [[label, s, number(a["seeds"][s]), number(b["seeds"][s]), number(b["seeds"][s] - a["seeds"][s], sign=True)]
            for s in sorted(set(a["seeds"]) & set(b["seeds"]), key=sort_key)]
    return notes, rows


def compare(paths: Sequence[Path], out: Path | None = None, margin: float = DEFAULT_MARGIN,
            on: Sequence[str] | None = None, metric: str = "top1") -> str:
    """Markdown comparison of two or more results CSVs against the first; also written
    to `out` when given. `margin`: the equivalence margin in accuracy points; `on`: the
    keys to align rows on (default: model, method and the shared hyper-parameters);
    `metric`: what the paired statistics read (top1, or val_top1 for runs with a validation split)."""
    if len(paths) < 2:
        raise FGVCError(f"compare needs two or more CSV files, got {len(paths)}")
    results = [read_results(Path(p), metric) for p in paths]
    for line in source_warnings([(r.path, r.frame) for r in results]):
        print(line, file=sys.stderr)
    al = _align(results, margin, on, metric)
    lines = _files(al)
    for i in range(1, len(al.results)):
        lines += _versus(al, i)
    text = inert("\n".join(lines).rstrip() + "\n")  # nothing a file carries runs as HTML
    if out is not None:
        atomic_write_text(out, text)
    return text


__all__ = ["compare", "read_results", "RUNS_REQUIRED", "SUMMARY_REQUIRED", "PAIRED_METRICS"]
