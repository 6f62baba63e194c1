"""`fgvc report OUT`: report.md, summary.csv and figures from a benchmark's output folder.

The report answers "does center loss help, and what does it do to the features?" with
statistics over seeds, and says plainly what the numbers cannot show. It leads with the
answer (fgvc.report.summary: the question, the verdict in brief, each group's recipe, which
runs are checks rather than results), states provenance once, then gives the evidence. Rerunning it on
the same files gives byte-identical report.md, summary.csv and comparisons.csv (no clock;
the bootstrap draws from a fixed RNG seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fgvc.errors import FGVCError
from fgvc.io import atomic_write_text
from fgvc.report import confusion, figures
from fgvc.report.bootstrap import BOOT_RESAMPLES, bootstrap_interval, class_intervals, paired_correctness
from fgvc.report.comparisons import comparison_row, comparisons_csv, headline, verdict
from fgvc.report.features import COMPACTNESS_COLUMNS, compactness
from fgvc.report.load import (CENTER_KEYS, class_names, group_keys, load_runs, read_features, read_metrics,
                              read_predictions, read_provenance)
from fgvc.report.markdown import compact, image, mean_sd, number, pvalue, short_sha, table, unique_stems
from fgvc.report.stats import (DEFAULT_MARGIN, SUMMARY_EXTRA, SUMMARY_METRICS, PairedResult, add_mcnemar,
                               adjust_across, paired_comparison, sort_key, summarize)
from fgvc.report.summary import (RECIPE_HEADER, REFERENCE, check_reasons, pair_heading, precision_notes, question,
                                 recipe_row, reference_applies, shared_settings, UNRECORDED_PRECISION)
from fgvc.report.summary import uniq as _uniq
from fgvc.report.sweep import sweep_section

ROUND = 4  # decimals of metric columns in summary.csv


# --------------------------------------------------------------------------- groups
@dataclass
class Group:
    key: tuple
    values: dict
    runs: pd.DataFrame  # ok runs of the group, one per seed (the first by run_id)
    label: str = ""
    check: str = ""  # why the group is a check and not a result ("" for a result): fgvc.report.summary

    @property
    def method(self) -> str:
        return self.values["method"]


@dataclass
class Panel:
    """The groups shown together in one section: a CE/center pair, or a lone group."""

    groups: list[Group]
    seeds: list[str]
    slug: str  # the readable stem of the panel's figure files (fgvc.report.markdown.unique_stems)
    paired: PairedResult | None = None
    notes: list[str] = field(default_factory=list)
    pairs: list = field(default_factory=list)  # per seed with both predictions: (CE right, other right, label)
    missing: list[str] = field(default_factory=list)  # matched seeds lacking a predictions.csv

    @property
    def check(self) -> str:
        """Why the panel's runs are a check ("" when they are results)."""
        return next((g.check for g in self.groups if g.check), "")


def _varying(groups: list[Group], keys: list[str]) -> list[str]:
    """The keys besides method and λ that tell groups apart (center-loss keys among the
    center-loss groups only)."""
    if not groups:
        return []
    vals = pd.DataFrame([g.values for g in groups])
    centre = vals[vals.method == "center"]
    show = []
    for k in keys:
        if k in ("method", "center_weight"):
            continue
        src = centre if k in CENTER_KEYS else vals
        if len(src) and src[k].nunique() > 1:
            show.append(k)
    return show


def _labels(groups: list[Group], keys: list[str]) -> None:
    """Readable group labels that name only what varies between groups."""
    show = _varying(groups, keys)
    for g in groups:
        v = g.values
        if v["method"] == "center":
            base = f"center λ={v['center_weight']}"
        else:
            base = v["method"].upper() if v["method"] == "ce" else v["method"]
        extra = [f"{k}={v[k]}" for k in show
                 if not (k in CENTER_KEYS and v["method"] != "center") and k not in ("model", "weights")]
        if "model" in show:
            extra.insert(0, v["model"])
        if "weights" in show:
            extra.insert(1 if "model" in show else 0, f"weights={v['weights']}")
        g.label = base + (f" ({', '.join(extra)})" if extra else "")


def _groups(ok: pd.DataFrame, keys: list[str], notes: list[str]) -> list[Group]:
    groups = []
    for key, g in ok.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values("run_id", kind="stable")
        dup = g[g.seed.duplicated()]
        for _, r in dup.iterrows():
            notes.append(f"run {r.run_id} repeats seed {r.seed} of its group; only the first run per seed "
                         "is used in paired tests and per-seed tables")
        groups.append(Group(key=key, values=dict(zip(keys, key)), runs=g.drop_duplicates("seed")))
    groups.sort(key=lambda g: tuple(sort_key(x) for x in g.key))
    _labels(groups, keys)
    return groups


def _panels(groups: list[Group], keys: list[str]) -> list[Panel]:
    pair_keys = [k for k in keys if k != "method" and k not in CENTER_KEYS]
    ce = {tuple(g.values[k] for k in pair_keys): g for g in groups if g.method == "ce"}
    used, panels = set(), []
    for g in groups:
        if g.method == "ce":
            continue
        base = ce.get(tuple(g.values[k] for k in pair_keys))
        if base is None:
            panels.append(Panel([g], sorted(g.runs.seed, key=sort_key), ""))
            continue
        used.add(id(base))
        seeds = sorted(set(base.runs.seed) & set(g.runs.seed), key=sort_key)
        panels.append(Panel([base, g], seeds, ""))
    for g in groups:
        if g.method == "ce" and id(g) not in used:
            panels.append(Panel([g], sorted(g.runs.seed, key=sort_key), ""))
    show = _varying(groups, keys)
    stems = unique_stems([_stem(p.groups, show) for p in panels], [p.groups[-1].key for p in panels])
    for p, stem in zip(panels, stems):
        p.slug = stem
    return panels


def _stem(groups: list[Group], show: list[str]) -> str:
    """A panel's figure-file stem from what tells its groups apart: `center-lam0.001_vs_ce`,
    with `key-value` for each other varying key (`..._lr-0.01`)."""
    names = []
    for g in reversed(groups):
        v = g.values
        name = f"{v['method']}-lam{v['center_weight']}" if v["method"] == "center" else str(v["method"])
        names.append(name)
    extra = [f"{k}-{groups[-1].values[k]}" for k in show
             if not (k in CENTER_KEYS and groups[-1].method == "ce") and k != "weights"]
    return "_vs_".join(names) + "".join(f"_{e}" for e in extra)


# --------------------------------------------------------------------------- provenance
class _Prov:
    """provenance.json per run, read once. The report states backbone, weights and data
    once (the Provenance section); a caption names them only for rows that differ."""

    def __init__(self, runs: pd.DataFrame):
        self.by_run = {r.run_id: read_provenance(Path(r.run_dir)) for r in runs.itertuples()}
        ok = runs[runs.status == "ok"]
        self.base = self._parts(ok if len(ok) else runs)

    def values(self, run_ids, *names: str) -> list[str]:
        out = []
        for rid in run_ids:
            p = self.by_run.get(rid, {})
            for n in names:
                v = p.get(n, (p.get("versions") or {}).get(n))
                if v not in (None, ""):
                    out.append(Path(str(v)).name if n == "dataset" else str(v))
                    break
        return _uniq(out)

    def _parts(self, rows: pd.DataFrame) -> tuple[str, str, str, str, str]:
        ids = list(rows.run_id)
        return (", ".join(f"`{m}`" for m in _uniq(rows.model)) or "—",
                ", ".join(f"`{w}`" for w in _uniq(rows.weights)) or "—",
                ", ".join(short_sha(s) for s in _uniq(rows.weights_sha256)),
                ", ".join(f"`{d}`" for d in self.values(ids, "dataset")) or "unknown (no provenance.json)",
                ", ".join(short_sha(s) for s in self.values(ids, "dataset_content_sha256")))

    def caption(self, rows: pd.DataFrame) -> str:
        """" Backbone …; weights …; data …." for a caption when these runs' backbone,
        weights or data differ from the report's (stated once, in Provenance); else ""."""
        parts = self._parts(rows)
        if parts == self.base:
            return ""
        models, weights, wsha, data, dsha = parts
        return (f" Backbone {models}; weights {weights}" + (f" (sha256 {wsha})" if wsha else "")
                + f"; data {data}" + (f" (content sha256 {dsha})" if dsha else "") + ".")

    def title(self, rows: pd.DataFrame) -> str:
        """A short second line for a figure's title, so a PNG opened alone says what it shows:
        benchmark, backbone and data (no hashes)."""
        ids = list(rows.run_id)
        parts = [", ".join(_uniq(rows.benchmark)), ", ".join(_uniq(rows.model)),
                 ", ".join(self.values(ids, "dataset"))]
        return " · ".join(p for p in parts if p)


# --------------------------------------------------------------------------- inputs
@dataclass
class _Inputs:
    """What the sections read: runs.csv, its groups and panels, and every ok run's files."""

    out_dir: Path
    runs: pd.DataFrame
    ok: pd.DataFrame
    keys: list[str]
    summary: pd.DataFrame
    groups: list[Group]
    panels: list[Panel]
    prov: _Prov
    preds: dict  # run_id -> predictions.csv frame or None
    feats: dict  # run_id -> features.npz arrays or None
    names: list[str]  # class names
    k: int  # number of classes
    notes: list[str]  # gathered for the "Notes" section; sections may add to it
    margin: float = DEFAULT_MARGIN  # equivalence margin, accuracy points
    compact: dict = field(default_factory=dict)  # run_id -> compactness numbers or None, computed once

    @property
    def fig_dir(self) -> Path:
        return self.out_dir / "figures"


def _load(out_dir: Path, margin: float = DEFAULT_MARGIN) -> _Inputs:
    runs = load_runs(out_dir)
    keys = group_keys(runs)
    ok = runs[runs.status == "ok"]
    notes: list[str] = []
    summary = summarize(runs, keys)
    groups = _groups(ok, keys, notes)
    panels = _panels(groups, keys)
    prov = _Prov(runs)
    preds, feats = _run_files(ok, notes)
    names, k = _classes(ok, preds)
    for g, reason in zip(groups, check_reasons(groups, ok, reference_applies(k))):
        g.check = reason
    x = _Inputs(out_dir, runs, ok, keys, summary, groups, panels, prov, preds, feats, names, k, notes, margin)
    _compare_all(x)
    return x


def _run_files(ok: pd.DataFrame, notes: list[str]) -> tuple[dict, dict]:
    """predictions.csv and features.npz per ok run (None where missing, with a note)."""
    preds, feats = {}, {}
    for r in ok.itertuples():
        d = Path(r.run_dir)
        preds[r.run_id] = read_predictions(d)
        feats[r.run_id] = read_features(d)
        for name, obj in (("predictions.csv", preds[r.run_id]), ("features.npz", feats[r.run_id])):
            if obj is None:
                notes.append(f"{r.run_id}: no {name} in {d}")
    return preds, feats


def _classes(ok: pd.DataFrame, preds: dict) -> tuple[list[str], int]:
    """Class names, and the number of classes: enough for every label, prediction and name."""
    k = max([int(max(p.label.max(), p.pred.max())) + 1 for p in preds.values() if p is not None and len(p)],
            default=0)
    names = class_names([Path(d) for d in ok.run_dir], k)
    return names, max(k, len(names))


# --------------------------------------------------------------------------- sections
def _title(x: _Inputs) -> list[str]:
    return [f"# fgvc report: {', '.join(_uniq(x.runs.benchmark)) or x.out_dir.name}", "",
            "Statistics over seeds from the runs in this folder: the answer and each group's recipe first, then "
            "the evidence.", ""]


def _pairs(x: _Inputs) -> list[Panel]:
    return [p for p in x.panels if len(p.groups) == 2]


def _summary_section(x: _Inputs) -> list[str]:
    """The question, the verdict in brief per comparison, each group's recipe, precision
    warnings and the figure of per-seed pairs."""
    pairs = _pairs(x)
    n_test = next((len(p) for p in x.preds.values() if p is not None), 0)
    data = x.prov.values(list(x.ok.run_id), "dataset")
    lines = ["## Summary", "", question(_uniq(x.ok.model), data, x.k, n_test), ""]
    if not pairs:
        lines += ["**Answer:** none: no CE baseline and center-loss group share the same settings, so nothing is "
                  "compared.", ""]
    else:
        lines += ["**Answer** (center loss minus CE in test top-1 points, paired by seed; the full verdict, with "
                  "McNemar, power and P(improvement), is under *Center loss vs CE* below):", ""]
        lines += [f"- {pair_heading(p.groups[0].label, p.groups[1].label, p.paired.n, p.check)}: "
                  f"{headline(p.paired)}" for p in pairs] + [""]
        feats = [line for line in (_features_line(x, p) for p in pairs) if line]
        lines += feats + ([""] if feats else [])
        if all(p.check for p in pairs):
            lines += ["**Every comparison here is a check**: it shows that the pipeline trains, evaluates and "
                      "reports, not how well center loss does. Its numbers are not results.", ""]
    rows = [recipe_row(g, f"**check**: {g.check}" if g.check else "result", x.prov.by_run) for g in x.groups]
    lines += ["*Table: the recipe of each group of runs (runs.csv, config.yaml; precision from provenance.json).*",
              "", table(RECIPE_HEADER, rows), ""]
    shared = shared_settings(x.ok)
    notes = precision_notes(x.groups, [(p.groups[0], p.groups[1]) for p in pairs], x.prov.by_run)
    if any(UNRECORDED_PRECISION in str(r[-1]) for r in rows):
        notes.append("fp32 (not recorded): these runs predate the `precision` key of provenance.json; runs "
                     "then always trained in fp32 (no autocast).")
    lines += ([shared, ""] if shared else []) + [f"- {n}" for n in notes] + ([""] if notes else [])
    return lines + _pairs_figure(x, [p for p in pairs if p.paired.n])


def _pairs_figure(x: _Inputs, pairs: list[Panel]) -> list[str]:
    """The figure of per-seed paired accuracies, linked, with its caption."""
    if not pairs:
        return []
    data = [dict(label_a=p.groups[0].label, label_b=p.groups[1].label, seeds=p.paired.seeds, a=p.paired.ce_top1,
                 b=p.paired.center_top1, ci95=(p.paired.ci_low, p.paired.ci_high),
                 ci90=(p.paired.ci90_low, p.paired.ci90_high), margin=p.paired.margin, check=p.check)
            for p in pairs]
    used = pd.concat([g.runs for p in pairs for g in p.groups])
    fig = figures.paired_seeds_figure(data, f"Final-epoch test top-1 per seed, matched pairs\n{x.prov.title(used)}",
                                      x.fig_dir / "paired_seeds_top1.png")
    return [image("Test top-1 per seed, matched pairs", fig, x.out_dir), "",
            "*Figure: final-epoch test top-1 of each seed's two runs, joined (green: center loss better, red: "
            "worse); right: the per-seed differences, their mean with its 95% (thin) and 90% (thick) Student-t "
            f"interval, and the ±{compact(x.margin)} point equivalence margin (shaded).{x.prov.caption(used)}*", ""]


def _provenance_block(x: _Inputs) -> list[str]:
    runs, ok, prov = x.runs, x.ok, x.prov
    ids = list(ok.run_id) if len(ok) else list(runs.run_id)
    rows = ok if len(ok) else runs
    weights = [f"`{w}`" for w in _uniq(rows.weights)]
    wsha = _uniq(rows.weights_sha256)
    data = prov.values(ids, "dataset")
    src = prov.values(ids, "dataset_source")
    dsha = prov.values(ids, "dataset_content_sha256")
    commits = _uniq(rows.git_commit)
    dirty = [rid for rid in ids if prov.by_run.get(rid, {}).get("git_dirty") is True]
    started = prov.values(ids, "started")
    finished = prov.values(ids, "finished")
    lines = [
        "## Provenance",
        "",
        f"- Benchmark: {', '.join(f'`{b}`' for b in _uniq(runs.benchmark)) or '—'}; "
        f"{len(runs)} runs in runs.csv, {len(ok)} ok, {len(runs) - len(ok)} failed or unfinished.",
        f"- Backbone: {', '.join(f'`{m}`' for m in _uniq(rows.model)) or '—'}",
        f"- Weights: {', '.join(weights) or '—'}" + (f"; sha256 {', '.join(f'`{s}`' for s in wsha)}" if wsha else ""),
        f"- Data: {', '.join(f'`{d}`' for d in data) or 'unknown (no provenance.json)'}"
        + (f" from {', '.join(f'`{s}`' for s in src)}" if src else "")
        + (f"; content sha256 {', '.join(f'`{s}`' for s in dsha)}" if dsha else ""),
        f"- Device: {', '.join(_uniq(rows.device)) or '—'}",
        f"- Software: {'; '.join(_software(prov, ids)) or '—'}",
        f"- Git commit: {', '.join(f'`{c}`' for c in commits) or '—'}"
        + (f"; uncommitted changes in {len(dirty)} run(s)" if dirty else ""),
    ]
    if len(commits) > 1:
        lines.append(f"- **Warning: these runs come from {len(commits)} different git commits**; differences "
                     "between groups may partly be code changes.")
    if started:
        lines.append(f"- Runs started {started[0]} to {started[-1]}"
                     + (f", last finished {finished[-1]}" if finished else "") + ".")
    return lines + ["", "These apply to every table and figure below; a caption names backbone, weights or data "
                    "only where its runs differ from them.", ""]


def _software(prov: _Prov, ids: list) -> list[str]:
    """"name version[, version...]" per package recorded in the runs' provenance."""
    soft = []
    for name, label in (("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"),
                        ("numpy", "numpy"), ("scikit_learn", "scikit-learn"), ("python", "python")):
        v = prov.values(ids, name, f"{name}_version")
        if v:
            soft.append(f"{label} {', '.join(v)}")
    return soft


def _accuracy_rows(x: _Inputs) -> tuple[list[list], list[list]]:
    """The accuracy-table rows of the result groups and of the check groups."""
    by_key = {g.key: g for g in x.groups}
    keys = [c for c in x.summary.columns if c not in SUMMARY_METRICS + SUMMARY_EXTRA]
    results, checks = [], []
    for _, s in x.summary.iterrows():
        g = by_key[tuple(s[k] for k in keys)]
        ci = (f"[{number(s.top1_ci95_low)}, {number(s.top1_ci95_high)}]" if math.isfinite(s.top1_ci95_low)
              else "— (n < 2)")
        row = [s.model, g.label, int(s.n), mean_sd(s.top1_mean, s.top1_std), ci, number(s.top1_min),
               number(s.top1_max), number(s.top5_mean), number(s.mean_class_acc_mean)]
        if g.check:
            checks.append([f"check: {g.check}"] + row)
        else:
            results.append(["this benchmark"] + row)
    return results, checks


def _accuracy_section(x: _Inputs) -> list[str]:
    header = ["source", "backbone", "method", "n", "top-1 mean ± std", "95% CI", "min", "max", "top-5",
              "mean-class"]
    results, checks = _accuracy_rows(x)
    with_ref = reference_applies(x.k) and bool(results)
    ref = [["*published reference, single run, not ours*", "ResNet50", method, 1, number(top1)] + ["—"] * 5
           for method, top1 in REFERENCE["rows"]] if with_ref else []
    what = ("final-epoch test accuracy (%) per group of runs differing only in seed: mean ± SD (ddof 1), Student-t "
            "95% CI of the mean, min and max over seeds")
    lines = ["## Accuracy", ""]
    if results:
        lines += [f"*Table: {what}.{x.prov.caption(x.ok)}*", "", table(header, results + ref), ""]
    if with_ref:
        lines += [f"Reference rows: {REFERENCE['source']}; {REFERENCE['setup']}. They are reported as published, "
                  "are not produced by this benchmark and enter no statistic here.", ""]
    elif results and x.k:
        lines += [f"No published reference is shown: the one this benchmark revisits ({REFERENCE['setup']}) is on "
                  f"{REFERENCE['num_classes']} classes, these runs on {x.k}.", ""]
    if checks:
        refs = ", ".join(f"{m} {number(t)}%" for m, t in REFERENCE["rows"])
        lines += ["### Checks, not results", "",
                  "These groups trained shorter than their benchmark is meant to, or belong to a check benchmark: "
                  "they show that the pipeline runs, and their accuracy says nothing about the method. They are "
                  "kept apart from the results" + (f" and from the published reference ({refs} after "
                                                   f"{REFERENCE['epochs']} epochs)" if reference_applies(x.k) else "")
                  + ".", "", f"*Table: {what}; checks only.{x.prov.caption(x.ok)}*", "", table(header, checks), ""]
    return lines


def _sweep_section(x: _Inputs) -> list[str]:
    return sweep_section(x.ok, x.keys, x.prov.caption, x.fig_dir, x.out_dir)


def _paired_section(x: _Inputs) -> list[str]:
    lines = ["## Center loss vs CE: paired comparison over matching seeds", ""]
    pairs = [p for p in x.panels if len(p.groups) == 2]
    if not pairs:
        return lines + ["No CE baseline and center-loss group share the same settings: nothing to pair.", ""]
    m = compact(x.margin) + (" point" if x.margin == 1 else " points")
    lines += ["Same seed = same head initialisation and batch order, so each seed is a matched pair. Differences "
              "are center minus CE in accuracy points. Over seeds: the paired t-test with its 95% Student-t "
              f"interval, and an equivalence test (TOST: two one-sided paired t-tests against a margin of ±{m}, "
              "`fgvc report --margin`; equivalent when both reject at 0.05, i.e. when the 90% t interval "
              f"lies inside ±{m}). The hierarchical bootstrap ({BOOT_RESAMPLES:,} resamples, fixed RNG seed) draws "
              "seeds with replacement and, within each drawn seed, the test images with replacement (both runs' "
              "per-image correctness together), so its 95% interval covers test-sample variation too. The smallest "
              "detectable effect is the true difference a two-sided paired t-test with these seeds and this SD "
              "would detect with 80% power at alpha 0.05. P(improvement) is the share of pairs where center beats "
              "CE. The exact McNemar test compares per-image correctness of the two runs of one seed (b: CE right "
              "and center wrong; c: the reverse); its p-values are Holm-adjusted across the seed pairs."
              + _family_text(pairs) + " Every number is also in `comparisons.csv`.", ""]
    for p in pairs:
        lines += _pair(p, x.prov)
    return lines


def _family_text(pairs: list[Panel]) -> str:
    family = max((p.paired.family for p in pairs), default=0)
    if family <= 1:
        return ""
    return (f" This report makes {family} comparisons with a t-test, so their t-test and equivalence p-values are "
            "Holm-adjusted across them, and the verdicts use the adjusted values.")


def _pair(p: Panel, prov: _Prov) -> list[str]:
    """One CE/center panel: the per-seed table, the seeds left out, the verdict."""
    ce, ct = p.groups
    lines = [f"### {ct.label} vs {ce.label}" + (" (check, not a result)" if p.check else ""), ""]
    if p.check:
        lines += [f"*A check ({p.check}): the numbers below show that the comparison runs, not a result.*", ""]
    lines += [f"*Table: test top-1 (%) per seed.{prov.caption(pd.concat([ce.runs, ct.runs]))}*", "",
             table(["seed", f"{ce.label}", f"{ct.label}", "difference", "McNemar b", "c", "p (exact)",
                    "p (Holm)"], _pair_rows(p.paired)), ""]
    only = sorted(set(ce.runs.seed) ^ set(ct.runs.seed), key=sort_key)
    if only:
        lines += [f"Seeds with a run of only one method (not compared): {', '.join(only)}.", ""]
    if p.missing:
        lines += [f"No predictions.csv for seed(s) {', '.join(p.missing)}: McNemar and the bootstrap leave them "
                  "out.", ""]
    return lines + [verdict(p.paired), ""]


def _compare_all(x: _Inputs) -> None:
    """Every CE/other panel's comparison, then Holm across them."""
    pairs = [p for p in x.panels if len(p.groups) == 2]
    for p in pairs:
        _compare_pair(p, x.preds, x.margin)
    adjust_across([p.paired for p in pairs])


def _compare_pair(p: Panel, preds: dict, margin: float) -> None:
    """Set `p.paired`: the paired tests over the panel's seeds, with McNemar per seed and the
    hierarchical bootstrap over the seeds where both runs have predictions (`p.pairs`);
    `p.missing` lists the seeds that lack them."""
    ce, ct = p.groups
    ce_runs = ce.runs.set_index("seed")
    ct_runs = ct.runs.set_index("seed")
    res = paired_comparison(p.seeds, [ce_runs.top1[s] for s in p.seeds], [ct_runs.top1[s] for s in p.seeds],
                            margin=margin, ce_all=ce.runs.top1, center_all=ct.runs.top1)
    tables = []
    for s in p.seeds:
        a, b = preds.get(ce_runs.run_id[s]), preds.get(ct_runs.run_id[s])
        if a is None or b is None:
            p.missing.append(s)
            continue
        ra, rb, labels = paired_correctness(a, b)
        p.pairs.append((ra, rb, labels))
        tables.append((s, int((ra & ~rb).sum()), int((~ra & rb).sum()), len(ra)))
    add_mcnemar(res, tables)
    if p.pairs:
        res.boot_low, res.boot_high = bootstrap_interval([(a, b) for a, b, _ in p.pairs])
        res.boot_seeds, res.boot_resamples = len(p.pairs), BOOT_RESAMPLES
    p.paired = res


def _pair_rows(res: PairedResult) -> list[list]:
    mc = {m["seed"]: m for m in res.mcnemar}
    rows = []
    for s, x, y in zip(res.seeds, res.ce_top1, res.center_top1):
        m = mc.get(s)
        rows.append([s, number(x), number(y), number(y - x, sign=True)]
                    + ([m["b"], m["c"], pvalue(m["p"]), pvalue(m["p_holm"])] if m else ["—"] * 4))
    return rows


def _group_name(g: Group) -> str:
    """A group as summary.csv names it: its key columns, `key=value` joined by `;`."""
    return ";".join(f"{k}={v}" for k, v in g.values.items())


def _comparison_rows(x: _Inputs) -> list[dict]:
    return [comparison_row(_group_name(p.groups[0]), _group_name(p.groups[1]), p.groups[0].label,
                           p.groups[1].label, p.paired) for p in x.panels if len(p.groups) == 2]


def _per_class_section(x: _Inputs) -> list[str]:
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


def _per_class_panel(x: _Inputs, p: Panel, acc: dict, used: pd.DataFrame) -> list[str]:
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
            _per_class_table(x, acc, diff, order, used, ci), ""] + _class_interval_text(x, ci) + [
            image(f"Per-class accuracy, {title}", fig, x.out_dir), "",
            f"*Figure: per-class test top-1 (mean over seeds) and its difference{bars}.{cap}*", ""
            ] + _confusion(x, p, acc, title, cap)


def _per_class_table(x: _Inputs, acc: dict, diff: np.ndarray, order: list[int], used: pd.DataFrame,
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


def _class_interval_text(x: _Inputs, ci: tuple[np.ndarray, np.ndarray] | None) -> list[str]:
    """How many class intervals exclude zero, and what chance alone would give."""
    if not ci:
        return []
    lo, hi = ci
    found = [x.names[j] for j in range(x.k) if _excludes_zero(lo[j], hi[j])]
    k = int(np.sum(np.isfinite(lo)))
    which = f": {', '.join(found)}" if found else ""
    return [f"{len(found)} of {k} class intervals exclude zero{which}. Each interval is at 95% and none is "
            f"adjusted for the others: if center loss changed nothing, about 1 in 20 (here about "
            f"{number(k / 20, 1)} of {k}) would exclude zero by chance, so a lone class that does is no finding.", ""]


def _confusion(x: _Inputs, p: Panel, acc: dict, title: str, cap: str) -> list[str]:
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


def _confusion_diff(x: _Inputs, p: Panel, preds: dict, title: str, cap: str) -> list[str]:
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


def _curves_section(x: _Inputs) -> list[str]:
    lines = ["## Training curves", ""]
    for p in x.panels:
        metrics = {}
        for g in p.groups:
            frames = [m for m in (read_metrics(Path(d)) for d in g.runs.run_dir) if m is not None]
            if frames:
                metrics[g.label] = frames
        if not metrics:
            continue
        used = pd.concat([g.runs for g in p.groups])
        title = " vs ".join(reversed(list(metrics)))
        fig = figures.curves_figure(metrics, f"{title}\n{x.prov.title(used)}", x.fig_dir / f"curves_{p.slug}.png")
        lines += [image(f"Training curves, {title}", fig, x.out_dir), "",
                  f"*Figure: per epoch, {title}: the train cross-entropy loss, the auxiliary (center-loss) term "
                  "unweighted on a log scale (the run minimises CE + λ·term, so the total loss would make the "
                  "auxiliary method look worse), validation top-1 where the runs held out a validation split, and "
                  "test top-1 (markers: the epochs it was evaluated on, where `eval_every` thinned them); line = "
                  "mean over seeds, band = min to max. The test set is only watched, never used to pick an epoch."
                  f"{x.prov.caption(used)}*", ""]
    return lines


def _compactness_section(x: _Inputs) -> list[str]:
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


def _run_compactness(x: _Inputs, run_id: str) -> dict | None:
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


def _compactness_table(x: _Inputs, runs: pd.DataFrame) -> pd.DataFrame:
    """The compactness numbers of the runs with complete features, one row per run."""
    per_run = [c for c in (_run_compactness(x, rid) for rid in runs.run_id) if c is not None]
    return pd.DataFrame(per_run, columns=COMPACTNESS_COLUMNS)


def _compactness_row(g: Group, x: _Inputs) -> list | None:
    """Label, number of runs and mean ± SD of each measure over the group's runs with
    complete features; None when there are none."""
    t = _compactness_table(x, g.runs)
    if not len(t):
        return None
    return [g.label, len(t)] + [mean_sd(t[c].mean(), t[c].std(ddof=1), 1 if c.startswith("knn") else 3)
                                for c in COMPACTNESS_COLUMNS]


def _features_line(x: _Inputs, p: Panel) -> str:
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


def _time_section(x: _Inputs) -> list[str]:
    rows, used = [], []
    for g in x.groups:
        used.append(g.runs)
        for r in sorted(g.runs.itertuples(), key=lambda r: sort_key(r.seed)):
            rows.append([g.label, r.seed, number(r.train_seconds, 0), number(r.images_per_second, 1),
                         r.device or "—"])
    if not rows:
        return []
    return ["## Time", "", f"*Table: training time per run and training throughput (train images per second), as "
            f"recorded by the runner, with the device each run used.{x.prov.caption(pd.concat(used))}*", "",
            table(["group", "seed", "train seconds", "images/s", "device"], rows), ""]


def _embedding_section(x: _Inputs) -> list[str]:
    found = [p for pat in ("umap_*.png", "tsne_*.png") for p in sorted(x.fig_dir.glob(pat))]
    lines = ["## Feature embeddings (UMAP, t-SNE)", ""]
    if not found:
        return lines + ["None yet: `fgvc visualize OUT` (or `make visualize`) draws them from the saved features; "
                        "rerun `fgvc report OUT` afterwards to link them here.", ""]
    caption = x.prov.caption(x.ok)
    for p in found:
        emb, split, seed = (p.stem.split("_") + ["", "", ""])[:3]
        lines += [image(p.stem, p, x.out_dir), "",
                  f"*Figure: {'UMAP' if emb == 'umap' else 't-SNE'} of final-epoch pooled last-conv {split} features, "
                  f"seed {seed.lstrip('s')}, CE and center loss side by side (each fitted on its own; coordinates in "
                  f"`{p.with_suffix('.csv').relative_to(x.out_dir).as_posix()}`). Under each panel, numbers "
                  "measured on the features themselves (5-NN top-1 against the train features and the cosine "
                  "silhouette, as in the compactness table) and, for comparison, the silhouette of the 2-D map "
                  f"itself: a map can look more or less separated than the features are.{caption}*", ""]
    return lines


def _failed_section(runs: pd.DataFrame) -> list[str]:
    bad = runs[runs.status != "ok"]
    if not len(bad):
        return []
    rows = [[r.run_id, r.method, r.seed, r.status or "—", r.error or "—"] for r in bad.itertuples()]
    return ["## Failed or unfinished runs", "", "Not included in any statistic above.", "",
            table(["run", "method", "seed", "status", "error"], rows), ""]


def _notes_section(notes: list[str]) -> list[str]:
    return ["## Notes", ""] + [f"- {n}" for n in notes] + [""] if notes else []


# --------------------------------------------------------------------------- entry point
def summary_csv(summary: pd.DataFrame) -> str:
    s = summary.copy()
    metric_cols = [c for c in SUMMARY_METRICS + SUMMARY_EXTRA if c != "n"]
    s[metric_cols] = s[metric_cols].astype(float).round(ROUND)
    return s.to_csv(index=False, lineterminator="\n")


def write_report(out_dir: Path, margin: float = DEFAULT_MARGIN) -> Path:
    """Write OUT/report.md, OUT/summary.csv, OUT/comparisons.csv and OUT/figures/*.png;
    returns report.md's path. `margin`: the equivalence margin in accuracy points."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise FGVCError(f"equivalence margin {margin!r}: must be a positive number of accuracy points, e.g. 1")
    x = _load(Path(out_dir), float(margin))
    lines = _title(x) + (_summary_section(x) if len(x.ok) else []) + _provenance_block(x)
    if not len(x.ok):
        lines += ["No successful runs yet: nothing to summarise.", ""]
    else:
        lines += _accuracy_section(x)
        lines += _sweep_section(x)
        lines += _paired_section(x)
        lines += _per_class_section(x)
        lines += _curves_section(x)
        lines += _compactness_section(x)  # may add notes
        lines += _time_section(x)
        lines += _embedding_section(x)
    lines += _failed_section(x.runs)
    lines += _notes_section(x.notes)
    lines += ["Files: `summary.csv` (one row per group; accuracies in percent), `comparisons.csv` (one row per "
              "paired comparison; differences in accuracy points, `a` the CE baseline, `b` the other group, "
              "named by their summary.csv keys), `runs.csv` (one row per run).", ""]

    atomic_write_text(x.out_dir / "summary.csv", summary_csv(x.summary))
    atomic_write_text(x.out_dir / "comparisons.csv", comparisons_csv(_comparison_rows(x)))
    report = x.out_dir / "report.md"
    atomic_write_text(report, "\n".join(lines).rstrip() + "\n")
    return report


__all__ = ["write_report", "REFERENCE", "summary_csv"]
