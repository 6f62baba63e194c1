"""Which runs an embedding figure draws when nobody says: `fgvc report` and a bare `fgvc
visualize OUT` pick them here, so any results folder regenerates its UMAP / t-SNE figures.

The rule: each compared pair is CE and one other method; in a sweep (runs with validation
scores and several settings per method) each method at the setting the report chose on
validation, otherwise the report's own panels (fgvc.report.panels). The seed is the first
seed, in numeric order, for which every run of the pair kept its features.npz (committed
folders keep it only for the seeds their figures draw: tools/lean_results.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fgvc.report.load import group_keys
from fgvc.report.panels import Group, group_runs, make_panels
from fgvc.report.stats import sort_key
from fgvc.report.sweep import setting_keys, sweep_families, sweep_runs


@dataclass
class EmbeddingPick:
    """One embedding figure's runs (CE first), the file-name suffix and why these runs."""

    runs: list[pd.Series]
    seed: str
    suffix: str  # "" when the folder has one pair, else `_<what tells the pairs apart>`
    why: str


def has_features(run: pd.Series) -> bool:
    return (Path(run.run_dir) / "features.npz").is_file()


def _chosen_groups(ok: pd.DataFrame, groups: list[Group], keys: list[str]) -> tuple[list[Group], str] | None:
    """In a sweep, the group each method chose on validation (first family); else None."""
    val = sweep_runs(ok)
    if not len(val) or not (val.groupby("method").size() > val.groupby("method").seed.nunique()).any():
        return None  # no validation scores, or one setting per method: not a sweep
    fam = sweep_families(val, keys)[0]
    cols = setting_keys(fam.settings, keys)
    chosen_ids = set()
    for method, best in fam.by_method.items():
        runs = fam.runs[fam.runs.method == method]
        for c in cols:
            runs = runs[runs[c].astype(str) == str(best[c])]
        chosen_ids |= set(runs.run_id)
    picked = [g for g in groups if len(g.runs) and set(g.runs.run_id) <= chosen_ids]
    return picked, "each method at the setting chosen on validation"


def _pairs(ok: pd.DataFrame, keys: list[str]) -> tuple[list[tuple[list[Group], str]], str]:
    """(groups to draw together, file-name slug) per figure, and the why of the settings."""
    groups = group_runs(ok, keys, [])
    chosen = _chosen_groups(ok, groups, keys)
    if chosen is not None:
        picked, why = chosen
        ce = [g for g in picked if g.method == "ce"]
        others = [g for g in picked if g.method != "ce"]
        pairs = [(ce[:1] + [g], g.method) for g in others] or [(ce[:1], "ce")]
        return [p for p in pairs if p[0]], why
    panels = make_panels(groups, keys)
    paired = [(p.groups, p.slug) for p in panels if len(p.groups) == 2]
    return paired or [(p.groups, p.slug) for p in panels[:1]], "the groups the report compares"


def pick_embeddings(runs: pd.DataFrame) -> tuple[list[EmbeddingPick], list[str]]:
    """The embedding figures a results folder should have, and one line per pair that has
    no seed with saved features in every run (so nothing can be drawn for it)."""
    ok = runs[runs.status == "ok"]
    if not len(ok):
        return [], []
    pairs, why = _pairs(ok, group_keys(ok))
    picks, missing = [], []
    for groups, slug in pairs:
        by_seed = [{r.seed: r for _, r in g.runs.iterrows() if has_features(r)} for g in groups]
        common = sorted(set.intersection(*(set(s) for s in by_seed)), key=sort_key)
        labels = " vs ".join(g.label or g.method for g in groups)
        if not common:
            missing.append(f"{labels}: no seed with features.npz in every run (lean copies keep them only "
                           "for the seeds their figures draw); retrain a seed to draw it")
            continue
        seed = common[0]
        picks.append(EmbeddingPick([s[seed] for s in by_seed], seed, "" if len(pairs) == 1 else f"_{slug}",
                                   f"{labels}: seed {seed}, the first seed with saved features in every run; "
                                   f"settings: {why}"))
    return picks, missing


__all__ = ["EmbeddingPick", "pick_embeddings", "has_features"]
