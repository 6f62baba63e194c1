"""What the report's sections read, loaded once: runs.csv, its groups and panels
(fgvc.report.panels), every ok run's predictions and features, class names, and the runs'
provenance (`Prov`, which also words the captions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fgvc.report.load import group_keys, load_runs
from fgvc.report.markdown import code, escape, short_sha
from fgvc.report.panels import Group, Panel, control_panels, group_runs, make_panels
from fgvc.report.stats import DEFAULT_MARGIN, summarize
from fgvc.report.summary import check_reasons, reference_applies, uniq
from fgvc.runs.inputs import started_inputs
from fgvc.runs.read import class_names, read_feature_metrics, read_features, read_predictions, read_provenance


UNKNOWN_DATA = "unknown (no provenance.json or inputs.json)"


class Prov:
    """provenance.json per run, read once (a run without one, pruned or unfinished, falls back
    on the inputs.json it wrote when it started: dataset and weights). The report states
    backbone, weights and data once (the Provenance section); a caption names them only for
    rows that differ."""

    def __init__(self, runs: pd.DataFrame):
        self.by_run = {r.run_id: {**started_inputs(Path(r.run_dir)), **read_provenance(Path(r.run_dir))}
                       for r in runs.itertuples()}
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
        return uniq(out)

    def _parts(self, rows: pd.DataFrame) -> tuple[str, str, str, str, str]:
        ids = list(rows.run_id)
        return (", ".join(code(m) for m in uniq(rows.model)) or "—",
                ", ".join(code(w) for w in uniq(rows.weights)) or "—",
                escape(", ".join(short_sha(s) for s in uniq(rows.weights_sha256))),
                ", ".join(code(d) for d in self.values(ids, "dataset")) or UNKNOWN_DATA,
                escape(", ".join(short_sha(s) for s in self.values(ids, "dataset_content_sha256"))))

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
        parts = [", ".join(uniq(rows.benchmark)), ", ".join(uniq(rows.model)),
                 ", ".join(self.values(ids, "dataset"))]
        return " · ".join(p for p in parts if p)


@dataclass
class Inputs:
    """What the sections read: runs.csv, its groups and panels, and every ok run's files."""

    out_dir: Path
    runs: pd.DataFrame
    ok: pd.DataFrame
    keys: list[str]
    summary: pd.DataFrame
    groups: list[Group]
    panels: list[Panel]
    prov: Prov
    preds: dict  # run_id -> predictions.csv frame or None
    feats: dict  # run_id -> features.npz arrays or None
    names: list[str]  # class names
    k: int  # number of classes
    notes: list[str]  # gathered for the "Notes" section; sections may add to it
    margin: float = DEFAULT_MARGIN  # equivalence margin, accuracy points
    compact: dict = field(default_factory=dict)  # run_id -> compactness numbers or None, computed once
    protocol: list = field(default_factory=list)  # fgvc.report.protocol.ProtocolCheck, one per check
    controls: list[Panel] = field(default_factory=list)  # each loss beside its mechanism control

    @property
    def fig_dir(self) -> Path:
        return self.out_dir / "figures"


def load_inputs(out_dir: Path, margin: float = DEFAULT_MARGIN) -> Inputs:
    runs = load_runs(out_dir)
    keys = group_keys(runs)
    ok = runs[runs.status == "ok"]
    notes: list[str] = []
    summary = summarize(runs, keys)
    groups = group_runs(ok, keys, notes)
    panels = make_panels(groups, keys)
    prov = Prov(runs)
    preds, feats = run_files(ok, notes)
    names, k = class_count(ok, preds)
    for g, reason in zip(groups, check_reasons(groups, ok, reference_applies(k))):
        g.check = reason
    return Inputs(out_dir, runs, ok, keys, summary, groups, panels, prov, preds, feats, names, k, notes, margin,
                  controls=control_panels(groups, keys))


def run_files(ok: pd.DataFrame, notes: list[str]) -> tuple[dict, dict]:
    """predictions.csv and features.npz per ok run (None where missing, with a note; a lean
    copy's runs, whose feature numbers are in feature_metrics.json, get one note together)."""
    preds, feats, lean, reduced = {}, {}, [], {}
    for r in ok.itertuples():
        d = Path(r.run_dir)
        preds[r.run_id] = read_predictions(d)
        feats[r.run_id] = read_features(d)
        recorded = read_feature_metrics(d)
        if recorded is not None and recorded.get("features_npz"):
            reduced.setdefault(recorded["features_npz"], []).append(r.run_id)
        if feats[r.run_id] is None and recorded is not None:
            lean.append(r.run_id)
        for name, obj in (("predictions.csv", preds[r.run_id]), ("features.npz", feats[r.run_id])):
            if obj is None and not (name == "features.npz" and recorded is not None):
                notes.append(f"{r.run_id}: no {name} in {d}")
    notes += _lean_notes(lean, reduced)
    return preds, feats


def _lean_notes(dropped: list[str], reduced: dict[str, list[str]]) -> list[str]:
    """What a lean copy (tools/lean_results.py) kept of the runs' features."""
    out = [f"{len(dropped)} run(s) keep no features.npz in this copy: their feature numbers come from "
           "feature_metrics.json, computed on their full features at the end of the run."] if dropped else []
    out += [f"features.npz of {', '.join(ids)} reduced to {how} in this copy (the UMAP / t-SNE figures are drawn from "
            "it; every number from feature_metrics.json, computed on the full features)."
            for how, ids in sorted(reduced.items())]
    return out


def class_count(ok: pd.DataFrame, preds: dict) -> tuple[list[str], int]:
    """Class names, and the number of classes: enough for every label, prediction and name."""
    k = max([int(max(p.label.max(), p.pred.max())) + 1 for p in preds.values() if p is not None and len(p)],
            default=0)
    names = class_names([Path(d) for d in ok.run_dir], k)
    return names, max(k, len(names))
