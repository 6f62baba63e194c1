"""The top of the report: the question, each group's recipe, the verdict in brief, and
which groups are checks rather than results.

A group is a *check* when its benchmark is named as one (`smoke`, `check`, `demo`,
`debug` as a word of the name) or when it trained for fewer epochs than its benchmark is
meant to: fewer than the published recipe's 30 when the published reference applies (the
same 21 sparrow classes), or fewer than the longest runs of the same benchmark in the
folder. A check shows that the pipeline runs; its accuracy is not a result, so the report
never sets it beside the published reference rows.

Precision comes from provenance.json (`precision`); runs written before it was recorded
ran fp32 (there was no autocast), and are shown as such.

Groups and pairs are the report's (fgvc.report.report); this module reads only their
`values`, `runs` and `label` attributes, so it imports nothing of the report itself.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

import pandas as pd

from fgvc.report.markdown import code
from fgvc.report.stats import sort_key
from fgvc.runs.read import UNRECORDED_PRECISION, recorded_precision

# The published single runs this benchmark revisits; shown as labelled reference rows,
# never pooled with our runs, and only beside results on the same classes.
REFERENCE = dict(
    source="ModelArts community blog post \"Optimizing fine-grained classification with Center-Loss\" "
           "(pytorch/examples imagenet/main.py + KaiyangZhou/pytorch-center-loss)",
    setup="ResNet50, ImageNet-pretrained, 21 CUB-200-2011 sparrow classes (629 train / 615 test), "
          "SGD lr 0.001, batch 32, 30 epochs, one run per method",
    rows=[("CE", 73.6), ("CE + 0.001 × center loss", 75.7)],
    epochs=30,
    num_classes=21,
)
CHECK_WORDS = ("smoke", "check", "demo", "debug")
RECIPE_HEADER = ["group", "status", "seeds", "epochs", "lr", "schedule", "batch", "image px", "λ",
                 "center update", "precision"]


def reference_applies(num_classes: int) -> bool:
    """Whether the published reference rows belong beside these runs (same number of classes)."""
    return num_classes == REFERENCE["num_classes"]


def uniq(values: Iterable) -> list[str]:
    """The distinct non-empty values as text, in sort order."""
    return sorted({str(v) for v in values if v is not None and str(v) not in ("", "nan", "None")}, key=sort_key)


# --------------------------------------------------------------------------- checks
def check_reason(benchmarks: Sequence[str], epochs: int, longest: int, with_reference: bool) -> str:
    """Why a group is a check and not a result ("" for a result). `longest`: the most
    epochs any run of the same benchmark in the folder trained for."""
    for name in benchmarks:
        words = set(re.split(r"[^a-z0-9]+", str(name).lower()))
        hit = [w for w in CHECK_WORDS if w in words]
        if hit:
            return f"benchmark {code(name)} is a {hit[0]} run"
    if with_reference and epochs < REFERENCE["epochs"]:
        return f"{epochs} epochs, shorter than the published recipe's {REFERENCE['epochs']}"
    if epochs < longest:
        return f"{epochs} epochs, shorter than this benchmark's {longest}-epoch runs"
    return ""


def check_reasons(groups: Sequence, ok: pd.DataFrame, with_reference: bool) -> list[str]:
    """`check_reason` of each group (objects with `runs` and `values`), in order."""
    longest = {}
    for b, g in ok.groupby("benchmark", sort=False):
        longest[b] = int(pd.to_numeric(g.epochs, errors="coerce").max())
    out = []
    for g in groups:
        names = uniq(g.runs.benchmark)
        epochs = int(float(g.values["epochs"]))
        out.append(check_reason(names, epochs, max([longest.get(b, epochs) for b in names], default=epochs),
                                with_reference))
    return out


# --------------------------------------------------------------------------- precision
def precision_counts(run_ids: Iterable[str], prov: Mapping[str, Mapping]) -> dict[str, int]:
    """How many of the runs ran at each precision (as `precision` names them)."""
    counts: dict[str, int] = {}
    for rid in run_ids:
        p = recorded_precision(prov.get(rid, {}))
        counts[p] = counts.get(p, 0) + 1
    return dict(sorted(counts.items()))


def _kind(p: str) -> str:
    """The precision a run actually used: an unrecorded one is fp32."""
    return "fp32" if p == UNRECORDED_PRECISION else p


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {p}" for p, n in counts.items())


def precision_notes(groups: Sequence, pairs: Sequence[tuple], prov: Mapping[str, Mapping]) -> list[str]:
    """Warnings for a group whose runs mix precisions, and for a compared pair whose two
    groups ran at different precisions. `pairs`: (baseline group, other group)."""
    notes = []
    for g in groups:
        counts = precision_counts(g.runs.run_id, prov)
        if len({_kind(p) for p in counts}) > 1:
            notes.append(f"**Group {g.label} mixes precisions** ({_counts_text(counts)} runs): its seeds are not "
                         "all trained alike.")
    for a, b in pairs:
        ka = {_kind(p) for p in precision_counts(a.runs.run_id, prov)}
        kb = {_kind(p) for p in precision_counts(b.runs.run_id, prov)}
        if len(ka) == 1 and len(kb) == 1 and ka != kb:
            notes.append(f"**{b.label} ({kb.pop()}) and {a.label} ({ka.pop()}) ran at different precisions**: "
                         "their difference is partly a precision difference.")
    return notes


# --------------------------------------------------------------------------- recipe
def _schedule(runs: pd.DataFrame) -> str:
    parts = []
    for sched in uniq(runs.get("lr_schedule", pd.Series(["constant"]))) or ["constant"]:
        warm = [w for w in uniq(runs.get("warmup_epochs", pd.Series([]))) if w != "0"]
        parts.append(sched + (f", {'/'.join(warm)} warm-up epochs" if warm and sched != "constant" else ""))
    return "SGD, " + "; ".join(parts) + " lr"


def recipe_row(g, status: str, prov: Mapping[str, Mapping]) -> list:
    """One recipe-table row of a group (RECIPE_HEADER)."""
    v, runs = g.values, g.runs
    aux = v["method"] != "ce"
    seeds = sorted(runs.seed, key=sort_key)
    counts = precision_counts(runs.run_id, prov)
    return [g.label, status, f"{len(seeds)} ({', '.join(seeds)})", v["epochs"], v["lr"], _schedule(runs),
            v["batch_size"], v["image_size"], v["center_weight"] if aux else "—", v["center_update"] if aux else "—",
            next(iter(counts)) if len(counts) == 1 else _counts_text(counts)]


def shared_settings(ok: pd.DataFrame) -> str:
    """The optimizer and input settings every run shares, in one sentence ("" when none is recorded)."""
    parts = []
    for key, name in (("momentum", "momentum"), ("weight_decay", "weight decay"), ("crop_pct", "test crop_pct"),
                      ("augment", "augment")):
        vals = uniq(ok[key]) if key in ok.columns else []
        if len(vals) == 1:
            parts.append(f"{name} {vals[0]}")
    return ("Every run: " + ", ".join(parts) + "; test top-1 is read at the final epoch, never at a chosen one."
            if parts else "")


def question(models: Sequence[str], data: Sequence[str], num_classes: int, n_test: int,
             aux: Sequence[str] = ("center",)) -> str:
    """The question the report answers, naming the auxiliary losses, the backbone and the data."""
    on = f" on {code(', '.join(data))}" if data else ""
    size = f" ({num_classes} classes, {n_test} test images)" if num_classes and n_test else ""
    backbone = f" with {', '.join(code(m) for m in models)}" if models else ""
    what = ("center loss to cross-entropy (CE + λ·center)" if list(aux) in ([], ["center"]) else
            f"an auxiliary loss to cross-entropy (CE + λ·X, X one of {', '.join(code(a) for a in aux)})")
    return (f"**Question:** does adding {what} change final-epoch test "
            f"top-1{on}{size}{backbone}, compared seed for seed with plain CE, and what does it do to the "
            "features?")


def pair_heading(label_a: str, label_b: str, n: int, check: str) -> str:
    """The lead of one answer line: which groups, over how many matching seeds, and a check's label."""
    seeds = f"{n} matching seed{'s' if n != 1 else ''}"
    lead = f"**{label_b} vs {label_a}** ({seeds})"
    return lead + (f", *check, not a result ({check})*" if check else "")


__all__ = ["REFERENCE", "CHECK_WORDS", "RECIPE_HEADER", "reference_applies", "uniq",
           "check_reason", "check_reasons", "precision_counts", "precision_notes", "recipe_row",
           "shared_settings", "question", "pair_heading"]
