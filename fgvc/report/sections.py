"""The report's plain sections, in reading order: title, summary (the answer and each
group's recipe), provenance, accuracy, training curves, time, embeddings, failed runs,
notes. The paired, per-class, sweep and feature sections have modules of their own."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from fgvc.grid.halving import PRUNED
from fgvc.report import figures
from fgvc.report.features import features_line
from fgvc.report.inputs import UNKNOWN_DATA, Inputs, Prov
from fgvc.report.markdown import code, compact, escape, image, mean_sd, number, table
from fgvc.report.paired import paired_title, pairs_of
from fgvc.report.panels import Panel
from fgvc.report.protocol import provisional
from fgvc.report.stats import SUMMARY_EXTRA, SUMMARY_METRICS, sort_key
from fgvc.report.summary import (RECIPE_HEADER, REFERENCE, pair_heading, precision_notes, question, recipe_row,
                                 reference_applies, shared_settings, uniq)
from fgvc.report.verdicts import brief, headline
from fgvc.runs.read import UNRECORDED_PRECISION, read_metrics


def title_section(x: Inputs) -> list[str]:
    return [f"# fgvc report: {escape(', '.join(uniq(x.runs.benchmark)) or x.out_dir.name)}", "",
            "Statistics over seeds from the runs in this folder: the answer and each group's recipe first, then "
            "the evidence.", ""]


BRIEF_OVER = 3  # a summary of more comparisons than this gives each verdict in one short line


def summary_section(x: Inputs) -> list[str]:
    """The question, the verdict in brief per comparison, each group's recipe, precision
    warnings and the figure of per-seed pairs."""
    pairs = pairs_of(x)
    n_test = next((len(p) for p in x.preds.values() if p is not None), 0)
    data = x.prov.values(list(x.ok.run_id), "dataset")
    aux = sorted(set(x.ok.method) - {"ce"})
    lines = ["## Summary", "", question(uniq(x.ok.model), data, x.k, n_test, aux), ""]
    if not pairs:
        lines += ["**Answer:** none: no CE baseline and center-loss group share the same settings, so nothing is "
                  "compared.", ""]
    else:
        title = paired_title(pairs)
        who = "center loss" if title.startswith("Center") else "each method"
        lines += [f"**Answer** ({who} minus CE in test top-1 points, paired by seed; the full verdict, with "
                  f"McNemar, power and P(improvement), is under *{title}* below):", ""]
        many = len(pairs) > BRIEF_OVER
        lines += _answer_lines(pairs, many)
        if x.controls:
            lines += ["**Mechanism control** (the loss minus its control, which keeps all but the loss's mechanism; "
                      "in full under *Mechanism controls* below):", ""] + _answer_lines(x.controls, many)
        why = provisional(x.protocol)
        lines += [f"**This verdict is {why}.**", ""] if why else []
        feats = [line for line in (features_line(x, p) for p in pairs) if line] if not many else [
            "What each method does to the features (centre-distance ratio, silhouette, k-NN): *Feature compactness* "
            "below."]
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


def _answer_lines(panels: list[Panel], many: bool = False) -> list[str]:
    """One verdict per comparison: in full, or in brief where there are many (the features then
    only under *Feature compactness*)."""
    say = brief if many else headline
    return [f"- {pair_heading(p.groups[0].label, p.groups[1].label, p.paired.n, p.check)}: {say(p.paired)}"
            for p in panels] + [""]


def _pairs_figure(x: Inputs, pairs: list[Panel]) -> list[str]:
    """The forest plot of the per-seed paired differences, linked, with its caption."""
    if not pairs:
        return []
    rows = [dict(label=f"{p.groups[1].label} − {p.groups[0].label}",
                 diffs=[b - a for a, b in zip(p.paired.ce_top1, p.paired.center_top1)], mean=p.paired.mean_diff,
                 ci95=(p.paired.ci_low, p.paired.ci_high), ci90=(p.paired.ci90_low, p.paired.ci90_high),
                 boot=(p.paired.boot_low, p.paired.boot_high), check=p.check) for p in pairs]
    used = pd.concat([g.runs for p in pairs for g in p.groups])
    fig = figures.forest_figure(rows, f"Paired differences in final-epoch test top-1\n{x.prov.title(used)}",
                                x.fig_dir / "paired_seeds_top1.png", "difference in test top-1 (points)",
                                margin=x.margin)
    return [image("Paired differences in test top-1, one row per comparison", fig, x.out_dir), "",
            "*Figure: one row per comparison on one shared axis: each seed pair's difference in test top-1 (dots; "
            "blue: the method better than CE, vermillion: worse), their mean (diamond) with its 95% (thin) and 90% "
            "(thick) Student-t interval, the 95% hierarchical bootstrap interval (grey) and the "
            f"±{compact(x.margin)} point equivalence margin (shaded). Per-seed accuracies: the table "
            f"below.{x.prov.caption(used)}*", ""]


def provenance_section(x: Inputs) -> list[str]:
    runs, ok, prov = x.runs, x.ok, x.prov
    ids = list(ok.run_id) if len(ok) else list(runs.run_id)
    rows = ok if len(ok) else runs
    weights = [code(w) for w in uniq(rows.weights)]
    wsha = uniq(rows.weights_sha256)
    data = prov.values(ids, "dataset")
    src = prov.values(ids, "dataset_source")
    dsha = prov.values(ids, "dataset_content_sha256")
    commits = uniq(rows.git_commit)
    dirty = [rid for rid in ids if prov.by_run.get(rid, {}).get("git_dirty") is True]
    started = prov.values(ids, "started")
    finished = prov.values(ids, "finished")
    pruned = int((runs.status == PRUNED).sum())
    lines = [
        "## Provenance",
        "",
        f"- Benchmark: {', '.join(code(b) for b in uniq(runs.benchmark)) or '—'}; "
        f"{len(runs)} runs in runs.csv, {len(ok)} ok, "
        + (f"{pruned} pruned by successive halving, " if pruned else "")
        + f"{len(runs) - len(ok) - pruned} failed or unfinished.",
        f"- Backbone: {', '.join(code(m) for m in uniq(rows.model)) or '—'}",
        f"- Weights: {', '.join(weights) or '—'}" + (f"; sha256 {', '.join(code(s) for s in wsha)}" if wsha else ""),
        f"- Data: {', '.join(code(d) for d in data) or UNKNOWN_DATA}"
        + (f" from {', '.join(code(s) for s in src)}" if src else "")
        + (f"; content sha256 {', '.join(code(s) for s in dsha)}" if dsha else ""),
        f"- Device: {escape(', '.join(uniq(rows.device))) or '—'}" + _cpus(prov, ids),
        f"- Software: {'; '.join(_software(prov, ids)) or '—'}",
        f"- Git commit: {', '.join(code(c) for c in commits) or '—'}"
        + (f"; uncommitted changes in {len(dirty)} run(s)" if dirty else ""),
    ]
    if len(commits) > 1:
        lines.append(f"- **Warning: these runs come from {len(commits)} different git commits**; differences "
                     "between groups may partly be code changes.")
    if started:
        lines.append(f"- Runs started {escape(started[0])} to {escape(started[-1])}"
                     + (f", last finished {escape(finished[-1])}" if finished else "") + ".")
    return lines + ["", "These apply to every table and figure below; a caption names backbone, weights or data "
                    "only where its runs differ from them.", ""]


def _cpus(prov: Prov, ids: list) -> str:
    """"; CPU ..." where the runs recorded it (provenance `cpu_id`, `cpu_capability`), with a
    warning where they ran on several kinds: the same code and config then differ in the last
    bits, which training grows (docs/results.md, commit check: 1.5 test points by epoch 2). Runs
    on a GPU are left out: their host CPU only feeds the data."""
    kinds = uniq(f"{p.get('cpu_id')}, torch kernels {p.get('cpu_capability')}" for rid in ids
                 if (p := prov.by_run.get(rid, {})).get("cpu_id") and str(p.get("device", "cpu")).startswith("cpu"))
    if not kinds:
        return ""
    text = f"; CPU {escape('; '.join(kinds))}"
    if len(kinds) > 1:
        text += (f" (**{len(kinds)} kinds of CPU**: a run retrained on another kind can end as far off as with a "
                 "new seed; each run's numbers repeat only on its own kind)")
    return text


def _software(prov: Prov, ids: list) -> list[str]:
    """"name version[, version...]" per package recorded in the runs' provenance."""
    soft = []
    for name, label in (("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"),
                        ("numpy", "numpy"), ("scikit_learn", "scikit-learn"), ("python", "python")):
        v = prov.values(ids, name, f"{name}_version")
        if v:
            soft.append(f"{label} {escape(', '.join(v))}")
    return soft


def _accuracy_rows(x: Inputs) -> tuple[list[list], list[list]]:
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


def accuracy_section(x: Inputs) -> list[str]:
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


def curves_section(x: Inputs) -> list[str]:
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
        aux = ", ".join(sorted({g.method for g in p.groups} - {"ce"}))
        fig = figures.curves_figure(metrics, f"{title}\n{x.prov.title(used)}", x.fig_dir / f"curves_{p.slug}.png")
        lines += [image(f"Training curves, {title}", fig, x.out_dir), "",
                  f"*Figure: per epoch, {escape(title)}: the train cross-entropy loss, the auxiliary "
                  f"{f'({aux}) ' if aux else ''}term unweighted on a log scale (the run minimises CE + λ·term, so "
                  "the total loss would make the auxiliary method look worse), validation top-1 where the runs held "
                  "out a validation split, and test top-1 (markers: the epochs it was evaluated on, where "
                  "`eval_every` thinned them); line = mean over seeds, band = min to max. The test set is only "
                  "watched, never used to pick an epoch."
                  f"{x.prov.caption(used)}*", ""]
    return lines


def time_section(x: Inputs) -> list[str]:
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


def embedding_section(x: Inputs, picked: Sequence[str] = ()) -> list[str]:
    """The UMAP / t-SNE figures in OUT/figures; `picked`: what this report drew and why
    (fgvc.report.embedding_pick), or why a pair could not be drawn."""
    found = [p for pat in ("umap_*.png", "tsne_*.png") for p in sorted(x.fig_dir.glob(pat))]
    lines = ["## Feature embeddings (UMAP, t-SNE)", ""]
    lines += [f"- {why}" for why in picked] + ([""] if picked else [])
    if not found:
        return lines + ["None drawn: `fgvc report OUT` draws them from the saved features (`--embeddings none` "
                        "skips them), `fgvc visualize OUT --seed S` for another seed.", ""]
    caption = x.prov.caption(x.ok)
    for p in found:
        emb, split, seed = (p.stem.split("_") + ["", "", ""])[:3]
        lines += [image(p.stem, p, x.out_dir), "",
                  f"*Figure: {'UMAP' if emb == 'umap' else 't-SNE'} of final-epoch pooled last-conv {split} features, "
                  f"seed {seed.lstrip('s')}, CE and the compared method side by side (each fitted on its own; "
                  f"coordinates in `{p.with_suffix('.csv').relative_to(x.out_dir).as_posix()}`). Under each panel, "
                  "numbers measured on the features themselves (5-NN top-1 against the train features and the "
                  "cosine silhouette, as in the compactness table) and, for comparison, the silhouette of the 2-D "
                  f"map itself: a map can look more or less separated than the features are.{caption}*", ""]
    return lines


def pruned_section(runs: pd.DataFrame) -> list[str]:
    """The runs successive halving stopped at a rung (fgvc.grid.halving): where, and why."""
    pruned = runs[runs.status == PRUNED]
    if not len(pruned):
        return []
    rows = [[r.run_id, r.method, r.seed, int(r.epochs) if str(r.epochs).isdigit() else r.epochs or "—",
             number(r.val_top1), r.error or "—"] for r in pruned.itertuples()]
    return ["## Pruned by successive halving", "",
            f"{len(pruned)} run(s) stopped at a rung because their setting's mean validation top-1 over seeds ranked "
            "below the kept fraction of their method's settings; they count in the tuning budget (*Protocol*) and "
            "enter no other statistic.", "",
            table(["run", "method", "seed", "epochs trained", "validation top-1", "why"], rows), ""]


def failed_section(runs: pd.DataFrame) -> list[str]:
    bad = runs[(runs.status != "ok") & (runs.status != PRUNED)]
    if not len(bad):
        return []
    rows = [[r.run_id, r.method, r.seed, r.status or "—", r.error or "—"] for r in bad.itertuples()]
    return ["## Failed or unfinished runs", "", "Not included in any statistic above.", "",
            table(["run", "method", "seed", "status", "error"], rows), ""]


def notes_section(notes: list[str]) -> list[str]:
    return ["## Notes", ""] + [f"- {escape(n)}" for n in notes] + [""] if notes else []
