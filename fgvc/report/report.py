"""`fgvc report OUT`: report.md, summary.csv and figures from a benchmark's output folder.

The report answers "does center loss help, and what does it do to the features?" with
statistics over seeds, and says plainly what the numbers cannot show. Rerunning it on
the same files gives byte-identical report.md and summary.csv (no clock, no randomness).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fgvc.io import atomic_write_text
from fgvc.report import figures as F
from fgvc.report.features import COMPACTNESS_COLUMNS, compactness
from fgvc.report.load import (CENTER_KEYS, class_names, group_keys, load_runs, read_features, read_metrics,
                              read_predictions, read_provenance)
from fgvc.report.stats import (SUMMARY_EXTRA, SUMMARY_METRICS, PairedResult, add_mcnemar, discordant,
                               paired_comparison, sort_key, summarize)

# The published single runs this benchmark revisits; shown as labelled reference rows,
# never pooled with our runs.
REFERENCE = dict(
    source="ModelArts community blog post \"Optimizing fine-grained classification with Center-Loss\" "
           "(pytorch/examples imagenet/main.py + KaiyangZhou/pytorch-center-loss)",
    setup="ResNet50, ImageNet-pretrained, 21 CUB-200-2011 sparrow classes (629 train / 615 test), "
          "SGD lr 0.001, batch 32, 30 epochs, one run per method",
    rows=[("CE", 73.6), ("CE + 0.001 × center loss", 75.7)],
)
ROUND = 4  # decimals of metric columns in summary.csv


# --------------------------------------------------------------------------- formatting
def _f(x: float, nd: int = 1, sign: bool = False) -> str:
    if x is None or not math.isfinite(float(x)):
        return "—"
    x = round(float(x), nd) + 0.0  # no "-0.0"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def _p(p: float) -> str:
    return "—" if p is None or not math.isfinite(p) else f"{p:.3g}"


def _cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ").strip()


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _short(sha: str, n: int = 12) -> str:
    return f"{sha[:n]}…" if sha and len(sha) > n else (sha or "—")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _uniq(values) -> list[str]:
    return sorted({str(v) for v in values if v is not None and str(v) not in ("", "nan", "None")},
                  key=sort_key)


# --------------------------------------------------------------------------- groups
@dataclass
class Group:
    key: tuple
    values: dict
    runs: pd.DataFrame  # ok runs of the group, one per seed (the first by run_id)
    label: str = ""

    @property
    def method(self) -> str:
        return self.values["method"]


@dataclass
class Panel:
    """The groups shown together in one section: a CE/center pair, or a lone group."""

    groups: list[Group]
    seeds: list[str]
    slug: str
    paired: PairedResult | None = None
    notes: list[str] = field(default_factory=list)


def _labels(groups: list[Group], keys: list[str]) -> None:
    """Readable group labels that name only what varies between groups."""
    if not groups:
        return
    vals = pd.DataFrame([g.values for g in groups])
    centre = vals[vals.method == "center"]
    show = []
    for k in keys:
        if k in ("method", "center_weight"):
            continue
        src = centre if k in CENTER_KEYS else vals
        if len(src) and src[k].nunique() > 1:
            show.append(k)
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
        tag = hashlib.sha256(json.dumps(list(g.key)).encode()).hexdigest()[:6]
        slug = _slug(f"{g.values['model']}-{g.method}-lam{g.values['center_weight']}-{tag}")
        if base is None:
            panels.append(Panel([g], sorted(g.runs.seed, key=sort_key), slug))
            continue
        used.add(id(base))
        seeds = sorted(set(base.runs.seed) & set(g.runs.seed), key=sort_key)
        panels.append(Panel([base, g], seeds, slug))
    for g in groups:
        if g.method == "ce" and id(g) not in used:
            tag = hashlib.sha256(json.dumps(list(g.key)).encode()).hexdigest()[:6]
            panels.append(Panel([g], sorted(g.runs.seed, key=sort_key), _slug(f"{g.values['model']}-ce-{tag}")))
    return panels


# --------------------------------------------------------------------------- provenance
class _Prov:
    """provenance.json per run, read once."""

    def __init__(self, runs: pd.DataFrame):
        self.by_run = {r.run_id: read_provenance(Path(r.run_dir)) for r in runs.itertuples()}

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

    def caption(self, rows: pd.DataFrame) -> str:
        """Backbone, weights and data of these runs, for a table or figure caption."""
        ids = list(rows.run_id)
        models = ", ".join(f"`{m}`" for m in _uniq(rows.model)) or "—"
        weights = ", ".join(f"`{w}`" for w in _uniq(rows.weights)) or "—"
        wsha = ", ".join(_short(s) for s in _uniq(rows.weights_sha256))
        data = ", ".join(f"`{d}`" for d in self.values(ids, "dataset")) or "unknown (no provenance.json)"
        dsha = ", ".join(_short(s) for s in self.values(ids, "dataset_content_sha256"))
        return (f"Backbone {models}; weights {weights}" + (f" (sha256 {wsha})" if wsha else "")
                + f"; data {data}" + (f" (content sha256 {dsha})" if dsha else "") + ".")


def _provenance_block(runs: pd.DataFrame, ok: pd.DataFrame, prov: _Prov) -> list[str]:
    ids = list(ok.run_id) if len(ok) else list(runs.run_id)
    rows = ok if len(ok) else runs
    weights = [f"`{w}`" for w in _uniq(rows.weights)]
    wsha = _uniq(rows.weights_sha256)
    data = prov.values(ids, "dataset")
    src = prov.values(ids, "dataset_source")
    dsha = prov.values(ids, "dataset_content_sha256")
    soft = []
    for name, label in (("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"),
                        ("numpy", "numpy"), ("scikit_learn", "scikit-learn"), ("python", "python")):
        v = prov.values(ids, name, f"{name}_version")
        if v:
            soft.append(f"{label} {', '.join(v)}")
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
        f"- Software: {'; '.join(soft) or '—'}",
        f"- Git commit: {', '.join(f'`{c}`' for c in commits) or '—'}"
        + (f"; uncommitted changes in {len(dirty)} run(s)" if dirty else ""),
    ]
    if len(commits) > 1:
        lines.append(f"- **Warning: these runs come from {len(commits)} different git commits**; differences "
                     "between groups may partly be code changes.")
    if started:
        lines.append(f"- Runs started {started[0]} to {started[-1]}"
                     + (f", last finished {finished[-1]}" if finished else "") + ".")
    return lines + [""]


# --------------------------------------------------------------------------- sections
def _accuracy_section(summary: pd.DataFrame, groups: list[Group], ok: pd.DataFrame, prov: _Prov) -> list[str]:
    label = {g.key: g.label for g in groups}
    keys = [c for c in summary.columns if c not in SUMMARY_METRICS + SUMMARY_EXTRA]
    header = ["source", "backbone", "method", "n", "top-1 mean ± std", "95% CI", "min", "max", "top-5",
              "mean-class"]
    rows = []
    for _, s in summary.iterrows():
        sd = f" ± {_f(s.top1_std)}" if math.isfinite(s.top1_std) else ""
        ci = f"[{_f(s.top1_ci95_low)}, {_f(s.top1_ci95_high)}]" if math.isfinite(s.top1_ci95_low) else "— (n < 2)"
        rows.append(["this benchmark", s.model, label[tuple(s[k] for k in keys)], int(s.n), _f(s.top1_mean) + sd,
                     ci, _f(s.top1_min), _f(s.top1_max), _f(s.top5_mean), _f(s.mean_class_acc_mean)])
    for method, top1 in REFERENCE["rows"]:
        rows.append(["*published reference, single run, not ours*", "ResNet50", method, 1, _f(top1), "—", "—", "—",
                     "—", "—"])
    return [
        "## Accuracy",
        "",
        f"*Table: final-epoch test accuracy (%) per group of runs differing only in seed: mean ± SD "
        f"(ddof 1), Student-t 95% CI of the mean, min and max over seeds. {prov.caption(ok)}*",
        "",
        _table(header, rows),
        "",
        f"Reference rows: {REFERENCE['source']}; {REFERENCE['setup']}. They are reported as published, are not "
        "produced by this benchmark and enter no statistic here.",
        "",
    ]


def _paired_section(panels: list[Panel], preds: dict, prov: _Prov) -> list[str]:
    lines = ["## Center loss vs CE: paired comparison over matching seeds", ""]
    pairs = [p for p in panels if len(p.groups) == 2]
    if not pairs:
        return lines + ["No CE baseline and center-loss group share the same settings: nothing to pair.", ""]
    lines += ["Same seed = same head initialisation and batch order, so each seed is a matched pair. Differences "
              "are center minus CE in accuracy points. The exact McNemar test compares per-image correctness "
              "of the two runs of one seed (b: CE right and center wrong; c: the reverse); its p-values are "
              "Holm-adjusted across the seed pairs.", ""]
    for p in pairs:
        ce, ct = p.groups
        ce_runs = ce.runs.set_index("seed")
        ct_runs = ct.runs.set_index("seed")
        res = paired_comparison(p.seeds, [ce_runs.top1[s] for s in p.seeds], [ct_runs.top1[s] for s in p.seeds])
        tables, missing = [], []
        for s in p.seeds:
            a, b = preds.get(ce_runs.run_id[s]), preds.get(ct_runs.run_id[s])
            if a is None or b is None:
                missing.append(s)
                continue
            tables.append((s, *discordant(a, b)))
        add_mcnemar(res, tables)
        p.paired = res
        mc = {m["seed"]: m for m in res.mcnemar}
        rows = []
        for s, x, y in zip(res.seeds, res.ce_top1, res.center_top1):
            m = mc.get(s)
            rows.append([s, _f(x), _f(y), _f(y - x, sign=True)]
                        + ([m["b"], m["c"], _p(m["p"]), _p(m["p_holm"])] if m else ["—"] * 4))
        lines += [f"### {ct.label} vs {ce.label}", "",
                  f"*Table: test top-1 (%) per seed. {prov.caption(pd.concat([ce.runs, ct.runs]))}*", "",
                  _table(["seed", f"{ce.label}", f"{ct.label}", "difference", "McNemar b", "c", "p (exact)",
                          "p (Holm)"], rows), ""]
        only = sorted(set(ce.runs.seed) ^ set(ct.runs.seed), key=sort_key)
        if only:
            lines += [f"Seeds with a run of only one method (not compared): {', '.join(only)}.", ""]
        if missing:
            lines += [f"No predictions.csv for seed(s) {', '.join(missing)}: McNemar not computed there.", ""]
        lines += [_verdict(res), ""]
    return lines


def _verdict(res: PairedResult) -> str:
    if res.n == 0:
        return f"**Verdict:** {res.note}."
    parts = []
    if res.n == 1:
        parts.append(f"With one seed pair, center minus CE = {_f(res.mean_diff, sign=True)} points; {res.note}.")
    elif res.note:
        parts.append(f"Over {res.n} matching seeds, center minus CE = {_f(res.mean_diff, sign=True)} points on "
                     f"average; {res.note}.")
    else:
        parts.append(f"Over {res.n} matching seeds, center minus CE = {_f(res.mean_diff, 2, sign=True)} points on "
                     f"average (95% CI {_f(res.ci_low, 2, sign=True)} to {_f(res.ci_high, 2, sign=True)}; SD of "
                     f"the paired differences {_f(res.sd_diff, 2)}; paired t-test t = {res.t_stat:.2f}, "
                     f"p = {_p(res.p_value)}).")
        if res.significant:
            better = "better" if res.mean_diff > 0 else "worse"
            parts.append(f"**The difference is statistically significant at the 0.05 level: center loss is "
                         f"{better} than CE here.**")
        else:
            parts.append("**The difference is not statistically significant at the 0.05 level**: these seeds are "
                         "consistent with no effect.")
        if res.seeds_needed is not None:
            parts.append(f"An effect of {abs(res.mean_diff):.2f} points with this SD would need about "
                         f"{res.seeds_needed} seeds for 80% power at alpha 0.05 (two-sided paired t-test, power "
                         f"from the noncentral t distribution); this benchmark has {res.n}.")
            if not res.significant and res.seeds_needed > res.n:
                parts.append("With fewer seeds than that, an effect this small cannot be expected to reach "
                             "significance, so the absence of significance is not evidence of no effect either.")
        else:
            parts.append("A seeds-for-80%-power estimate is not available for this effect size.")
    if res.mcnemar:
        k = sum(m["p_holm"] < 0.05 for m in res.mcnemar)
        parts.append(f"Per-image exact McNemar: {k} of {len(res.mcnemar)} seed pairs differ significantly at 0.05 "
                     f"after Holm adjustment (smallest adjusted p = {_p(min(m['p_holm'] for m in res.mcnemar))}). "
                     "McNemar asks whether two particular runs differ on these test images; it ignores "
                     "seed-to-seed variation, so only the test over seeds speaks to the method in general.")
    return "**Verdict:** " + " ".join(parts)


def _per_class_section(panels: list[Panel], preds: dict, names: list[str], k: int, prov: _Prov,
                       fig_dir: Path, out_dir: Path) -> list[str]:
    lines = ["## Per-class accuracy", ""]
    for p in panels:
        acc, used = {}, []
        for g in p.groups:
            runs = g.runs[g.runs.seed.isin(p.seeds)]
            frames = [preds[r] for r in runs.run_id if preds.get(r) is not None]
            if frames:
                acc[g.label] = F.per_class_accuracy(frames, k)
                used.append(runs)
        if not acc:
            continue
        rows_df = pd.concat(used)
        cap = prov.caption(rows_df)
        counts = np.bincount(next(iter(preds[r] for r in rows_df.run_id if preds.get(r) is not None)).label,
                             minlength=k)
        labels = list(acc)
        diff = acc[labels[-1]] - acc[labels[0]] if len(labels) == 2 else acc[labels[0]]
        order = sorted(range(k), key=lambda j: (-np.nan_to_num(diff[j], nan=-np.inf), j))
        header = ["class", "test images"] + labels + (["difference"] if len(labels) == 2 else [])
        rows = [[names[j], int(counts[j])] + [_f(acc[lab][j]) for lab in labels]
                + ([_f(diff[j], sign=True)] if len(labels) == 2 else []) for j in order]
        title = " vs ".join(reversed(labels))
        fig = F.per_class_figure(names, acc, order, f"Per-class test top-1: {title}\n{_plain(cap)}",
                                 fig_dir / f"per_class_{p.slug}.png")
        what = "sorted by the difference (last minus first)" if len(labels) == 2 else "sorted by accuracy"
        lines += [f"### {title}", "",
                  f"*Table: per-class test top-1 (%), mean over seeds {', '.join(p.seeds)}, {what}. {cap}*", "",
                  _table(header, rows), "",
                  f"![Per-class accuracy, {title}]({fig.relative_to(out_dir).as_posix()})", "",
                  f"*Figure: per-class test top-1 (mean over seeds) and its difference. {cap}*", ""]
        cms = {lab: F.confusion_mean([preds[r] for r in g.runs[g.runs.seed.isin(p.seeds)].run_id
                                      if preds.get(r) is not None], k)
               for g, lab in zip([g for g in p.groups if g.label in acc], labels)}
        fig = F.confusion_figure(names, cms, f"Confusion matrices (row-normalised, mean over seeds)\n{_plain(cap)}",
                                 fig_dir / f"confusion_{p.slug}.png")
        lines += [f"![Confusion matrices, {title}]({fig.relative_to(out_dir).as_posix()})", "",
                  f"*Figure: row-normalised confusion matrices (rows: true class), mean over seeds, {title}. {cap}*",
                  ""]
    return lines


def _plain(caption: str) -> str:
    return caption.replace("`", "").replace("*", "")


def _curves_section(panels: list[Panel], prov: _Prov, fig_dir: Path, out_dir: Path) -> list[str]:
    lines = ["## Training curves", ""]
    for p in panels:
        metrics = {}
        for g in p.groups:
            frames = [m for m in (read_metrics(Path(d)) for d in g.runs.run_dir) if m is not None]
            if frames:
                metrics[g.label] = frames
        if not metrics:
            continue
        cap = prov.caption(pd.concat([g.runs for g in p.groups]))
        title = " vs ".join(reversed(list(metrics)))
        fig = F.curves_figure(metrics, f"{title}\n{_plain(cap)}", fig_dir / f"curves_{p.slug}.png")
        lines += [f"![Training curves, {title}]({fig.relative_to(out_dir).as_posix()})", "",
                  f"*Figure: train loss and test top-1 per epoch, {title}; line = mean over seeds, band = min to max. "
                  f"The test set is only watched, never used to pick an epoch. {cap}*", ""]
    return lines


def _compactness_section(groups: list[Group], feats: dict, prov: _Prov, notes: list[str]) -> list[str]:
    rows, used = [], []
    for g in groups:
        per_run = []
        for r in g.runs.itertuples():
            f = feats.get(r.run_id)
            if f is None:
                continue
            need = ("test_features", "test_labels", "train_features", "train_labels")
            if any(k not in f for k in need):
                notes.append(f"{r.run_id}: features.npz lacks {', '.join(k for k in need if k not in f)}")
                continue
            per_run.append(compactness(f))
        if not per_run:
            continue
        used.append(g.runs)
        t = pd.DataFrame(per_run)
        cells = []
        for c in COMPACTNESS_COLUMNS:
            nd = 1 if c.startswith("knn") else 3
            m, s = t[c].mean(), t[c].std(ddof=1)
            cells.append(_f(m, nd) + (f" ± {_f(s, nd)}" if math.isfinite(s) else ""))
        rows.append([g.label, len(t)] + cells)
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
        f"*Table: mean ± SD over seeds. {prov.caption(pd.concat(used))}*",
        "",
        _table(["group", "n", "centre-distance ratio", "silhouette (euclidean)", "silhouette (cosine)",
                "k-NN top-1, k=1", "k-NN top-1, k=5"], rows),
        "",
    ]


def _time_section(groups: list[Group], prov: _Prov) -> list[str]:
    rows, used = [], []
    for g in groups:
        used.append(g.runs)
        for r in sorted(g.runs.itertuples(), key=lambda r: sort_key(r.seed)):
            rows.append([g.label, r.seed, _f(r.train_seconds, 0), _f(r.images_per_second, 1), r.device or "—"])
    if not rows:
        return []
    return ["## Time", "", f"*Table: training time per run and training throughput (train images per second), as "
            f"recorded by the runner, with the device each run used. {prov.caption(pd.concat(used))}*", "",
            _table(["group", "seed", "train seconds", "images/s", "device"], rows), ""]


def _embedding_section(out_dir: Path, fig_dir: Path, caption: str) -> list[str]:
    found = [p for pat in ("umap_*.png", "tsne_*.png") for p in sorted(fig_dir.glob(pat))]
    lines = ["## Feature embeddings (UMAP, t-SNE)", ""]
    if not found:
        return lines + ["None yet: `fgvc visualize OUT` (or `make visualize`) draws them from the saved features; "
                        "rerun `fgvc report OUT` afterwards to link them here.", ""]
    for p in found:
        emb, split, seed = (p.stem.split("_") + ["", "", ""])[:3]
        lines += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})", "",
                  f"*Figure: {'UMAP' if emb == 'umap' else 't-SNE'} of final-epoch pooled last-conv {split} features, "
                  f"seed {seed.lstrip('s')}, CE and center loss side by side (each fitted on its own; coordinates in "
                  f"`{p.with_suffix('.csv').relative_to(out_dir).as_posix()}`). {caption}*", ""]
    return lines


def _failed_section(runs: pd.DataFrame) -> list[str]:
    bad = runs[runs.status != "ok"]
    if not len(bad):
        return []
    rows = [[r.run_id, r.method, r.seed, r.status or "—", r.error or "—"] for r in bad.itertuples()]
    return ["## Failed or unfinished runs", "", "Not included in any statistic above.", "",
            _table(["run", "method", "seed", "status", "error"], rows), ""]


# --------------------------------------------------------------------------- entry point
def summary_csv(summary: pd.DataFrame) -> str:
    s = summary.copy()
    metric_cols = [c for c in SUMMARY_METRICS + SUMMARY_EXTRA if c != "n"]
    s[metric_cols] = s[metric_cols].astype(float).round(ROUND)
    return s.to_csv(index=False, lineterminator="\n")


def write_report(out_dir: Path) -> Path:
    """Write OUT/report.md, OUT/summary.csv and OUT/figures/*.png; returns report.md's path."""
    out_dir = Path(out_dir)
    runs = load_runs(out_dir)
    keys = group_keys(runs)
    ok = runs[runs.status == "ok"]
    notes: list[str] = []
    summary = summarize(runs, keys)
    groups = _groups(ok, keys, notes)
    panels = _panels(groups, keys)
    fig_dir = out_dir / "figures"
    prov = _Prov(runs)

    preds, feats = {}, {}
    for r in ok.itertuples():
        d = Path(r.run_dir)
        preds[r.run_id] = read_predictions(d)
        feats[r.run_id] = read_features(d)
        for name, obj in (("predictions.csv", preds[r.run_id]), ("features.npz", feats[r.run_id])):
            if obj is None:
                notes.append(f"{r.run_id}: no {name} in {d}")
    k = max([int(max(p.label.max(), p.pred.max())) + 1 for p in preds.values() if p is not None and len(p)],
            default=0)
    names = class_names([Path(d) for d in ok.run_dir], k)
    k = max(k, len(names))

    lines = [f"# fgvc report: {', '.join(_uniq(runs.benchmark)) or out_dir.name}", "",
             "Does center loss help fine-grained classification, and what does it do to the features? "
             "Statistics over seeds from the runs in this folder.", ""]
    lines += _provenance_block(runs, ok, prov)
    if not len(ok):
        lines += ["No successful runs yet: nothing to summarise.", ""]
    else:
        lines += _accuracy_section(summary, groups, ok, prov)
        from fgvc.report.sweep import sweep_section  # here: sweep.py imports this module's helpers

        lines += sweep_section(ok, keys, prov.caption, fig_dir, out_dir)
        lines += _paired_section(panels, preds, prov)
        lines += _per_class_section(panels, preds, names, k, prov, fig_dir, out_dir)
        lines += _curves_section(panels, prov, fig_dir, out_dir)
        lines += _compactness_section(groups, feats, prov, notes)
        lines += _time_section(groups, prov)
        lines += _embedding_section(out_dir, fig_dir, prov.caption(ok))
    lines += _failed_section(runs)
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["Files: `summary.csv` (one row per group; accuracies in percent), `runs.csv` (one row per run).", ""]

    atomic_write_text(out_dir / "summary.csv", summary_csv(summary))
    report = out_dir / "report.md"
    atomic_write_text(report, "\n".join(lines).rstrip() + "\n")
    return report


__all__ = ["write_report", "REFERENCE", "summary_csv"]
