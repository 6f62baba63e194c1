"""The report's units: a *group* is the runs that differ only in seed; a *panel* is the groups
shown together in one section (a CE baseline and the group compared with it, or a lone
group), with the paired statistics the report computes for it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from fgvc.losses.registry import controls
from fgvc.report.load import CENTER_KEYS, TUNED_KEYS
from fgvc.report.markdown import unique_stems
from fgvc.report.stats import PairedResult, sort_key


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
    """The groups shown together in one section: a CE/center pair (or a loss's control and the
    loss, fgvc.report.panels.control_panels), or a lone group. The first group is the baseline."""

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
    """The keys besides method and λ that tell groups apart (an auxiliary-loss key where it
    varies within one auxiliary-loss method)."""
    if not groups:
        return []
    vals = pd.DataFrame([g.values for g in groups])
    aux = vals[vals.method != "ce"]
    show = []
    for k in keys:
        if k in ("method", "center_weight"):
            continue
        varies = (aux.groupby("method")[k].nunique() > 1).any() if k in CENTER_KEYS else vals[k].nunique() > 1
        if len(aux if k in CENTER_KEYS else vals) and varies:
            show.append(k)
    return show


def _labels(groups: list[Group], keys: list[str]) -> None:
    """Readable group labels that name only what varies between groups."""
    show = _varying(groups, keys)
    for g in groups:
        v = g.values
        base = "CE" if v["method"] == "ce" else f"{v['method']} λ={v['center_weight']}"
        extra = [f"{k}={v[k]}" for k in show
                 if not (k in CENTER_KEYS and v["method"] == "ce") and k not in ("model", "weights")]
        if "model" in show:
            extra.insert(0, v["model"])
        if "weights" in show:
            extra.insert(1 if "model" in show else 0, f"weights={v['weights']}")
        g.label = base + (f" ({', '.join(extra)})" if extra else "")


def group_runs(ok: pd.DataFrame, keys: list[str], notes: list[str]) -> list[Group]:
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


def match(g: Group, candidates: list[Group], keys: list[str], also: tuple[str, ...] = ()) -> Group | None:
    """The group of `candidates` (another method's) that `g` is compared with: the one that
    matches it on every key but the method and the loss settings (and on `also`); else, where
    exactly one matches on everything but the tuned settings too (lr, label_smoothing), that
    one: each method at its own tuned setting, as a confirmation trains them."""
    pair_keys = [k for k in keys if k != "method" and k not in CENTER_KEYS]
    loose_keys = [k for k in pair_keys if k not in TUNED_KEYS]
    exact = [c for c in candidates if all(c.values[k] == g.values[k] for k in (*pair_keys, *also))]
    loose = [c for c in candidates if all(c.values[k] == g.values[k] for k in loose_keys)]
    return exact[0] if exact else (loose[0] if len(loose) == 1 else None)


def control_panels(groups: list[Group], keys: list[str]) -> list[Panel]:
    """Each loss's group beside its mechanism control's (fgvc.losses.registry.controls: center
    loss beside feature_norm, its centres held at zero), matched as `match` does, with the
    same λ where the folder has it: does the mechanism matter, or only what the control keeps?"""
    pairs = controls()
    panels = []
    for g in groups:
        if g.method not in pairs:
            continue
        control = match(g, [c for c in groups if c.method == pairs[g.method]], keys, also=("center_weight",))
        if control is not None:
            panels.append(Panel([control, g], sorted(set(control.runs.seed) & set(g.runs.seed), key=sort_key), ""))
    return panels


def make_panels(groups: list[Group], keys: list[str]) -> list[Panel]:
    used, panels = set(), []
    for g in groups:
        if g.method == "ce":
            continue
        base = match(g, [c for c in groups if c.method == "ce"], keys)
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
    with `key-value` for each other varying key: at the end where the panel's groups share it
    (`..._lr-0.01`), after each group's name where they differ (each method at its own tuned
    setting: `feature_norm-lam0.01_lr-0.01_vs_ce_lr-0.005`)."""
    keys = [k for k in show if k != "weights"]
    own = [k for k in keys if k not in CENTER_KEYS and len({str(g.values[k]) for g in groups}) > 1]
    names = []
    for g in reversed(groups):
        v = g.values
        name = f"{v['method']}-lam{v['center_weight']}" if v["method"] != "ce" else "ce"
        names.append(name + "".join(f"_{k}-{v[k]}" for k in own))
    extra = [f"{k}-{groups[-1].values[k]}" for k in keys
             if k not in own and not (k in CENTER_KEYS and groups[-1].method == "ce")]
    return "_vs_".join(names) + "".join(f"_{e}" for e in extra)


def group_name(g: Group) -> str:
    """A group as summary.csv names it: its key columns, `key=value` joined by `;`."""
    return ";".join(f"{k}={v}" for k, v in g.values.items())
