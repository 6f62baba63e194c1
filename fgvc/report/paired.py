"""The paired comparison of each CE baseline with the group beside it: the statistics
(`compare_panels`: paired t, TOST, McNemar per seed, the hierarchical bootstrap, Holm
across panels) and their report section. The verdict texts are fgvc.report.verdicts'."""

from __future__ import annotations

import pandas as pd

from fgvc.report.bootstrap import BOOT_RESAMPLES, bootstrap_interval, paired_correctness
from fgvc.report.inputs import Inputs, Prov
from fgvc.report.markdown import compact, number, pvalue, table
from fgvc.report.panels import Panel, group_name
from fgvc.report.stats import PairedResult, add_mcnemar, adjust_across, paired_comparison, sort_key
from fgvc.report.verdicts import comparison_row, verdict


def pairs_of(x: Inputs) -> list[Panel]:
    return [p for p in x.panels if len(p.groups) == 2]


def paired_section(x: Inputs) -> list[str]:
    pairs = pairs_of(x)
    lines = [f"## {paired_title(pairs)}: paired comparison over matching seeds", ""]
    if not pairs:
        return lines + ["No CE baseline and center-loss group share the same settings: nothing to pair.", ""]
    m = compact(x.margin) + (" point" if x.margin == 1 else " points")
    lines += ["Same seed = same head initialisation and batch order, so each seed is a matched pair. Differences "
              "are the method minus CE in accuracy points. Over seeds: the paired t-test with its 95% Student-t "
              f"interval, and an equivalence test (TOST: two one-sided paired t-tests against a margin of ±{m}, "
              "`fgvc report --margin`; equivalent when both reject at 0.05, i.e. when the 90% t interval "
              f"lies inside ±{m}). The hierarchical bootstrap ({BOOT_RESAMPLES:,} resamples, fixed RNG seed) draws "
              "seeds with replacement and, within each drawn seed, the test images with replacement (both runs' "
              "per-image correctness together), so its 95% interval covers test-sample variation too. The smallest "
              "detectable effect is the true difference a two-sided paired t-test with these seeds and this SD "
              "would detect with 80% power at alpha 0.05. P(improvement) is the share of pairs where the method beats "
              "CE. The exact McNemar test compares per-image correctness of the two runs of one seed (b: CE right "
              "and the method wrong; c: the reverse); its p-values are Holm-adjusted across the seed pairs."
              + _family_text(pairs) + " Every number is also in `comparisons.csv`.", ""]
    for p in pairs:
        lines += _pair(p, x.prov)
    return lines


def paired_title(pairs: list[Panel]) -> str:
    """The paired section's title: "Center loss vs CE", or "Each method vs CE" beside other losses."""
    return "Center loss vs CE" if all(p.groups[1].method == "center" for p in pairs) else "Each method vs CE"


def _family_text(pairs: list[Panel]) -> str:
    family = max((p.paired.family for p in pairs), default=0)
    if family <= 1:
        return ""
    return (f" This report makes {family} comparisons with a t-test, so their t-test and equivalence p-values are "
            "Holm-adjusted across them, and the verdicts use the adjusted values.")


def _pair(p: Panel, prov: Prov) -> list[str]:
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


def compare_panels(x: Inputs) -> None:
    """Every CE/other panel's comparison and every loss against its control, then Holm across
    them all (one family: the report's comparisons)."""
    pairs = pairs_of(x) + x.controls
    for p in pairs:
        pair_statistics(p, x.preds, x.margin)
    adjust_across([p.paired for p in pairs])


def pair_statistics(p: Panel, preds: dict, margin: float) -> None:
    """Set `p.paired`: the paired tests over the panel's seeds, with McNemar per seed and the
    hierarchical bootstrap over the seeds where both runs have predictions (`p.pairs`);
    `p.missing` lists the seeds that lack them."""
    ce, ct = p.groups
    ce_runs = ce.runs.set_index("seed")
    ct_runs = ct.runs.set_index("seed")
    res = paired_comparison(p.seeds, [ce_runs.top1[s] for s in p.seeds], [ct_runs.top1[s] for s in p.seeds],
                            margin=margin, ce_all=ce.runs.top1, center_all=ct.runs.top1)
    if ct.method != "center":  # the texts name the method compared with CE
        res.name = ct.method.replace("_", "-")
        res.loss = f"{res.name} loss"
    if ce.method != "ce":  # a loss against its control
        res.baseline = ce.method.replace("_", "-")
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


def comparison_rows(x: Inputs) -> list[dict]:
    return [comparison_row(group_name(p.groups[0]), group_name(p.groups[1]), p.groups[0].label,
                           p.groups[1].label, p.paired) for p in [*pairs_of(x), *x.controls]]


def controls_section(x: Inputs) -> list[str]:
    """Each loss against its mechanism control (fgvc.report.panels.control_panels), in full."""
    if not x.controls:
        return []
    lines = ["## Mechanism controls: loss vs its control", "",
             "Each loss against its control, the same loss with its mechanism removed, paired by seed as above; "
             "differences are the loss minus its control. `feature_norm` is center loss with every centre held at "
             "zero: it shrinks the features as center loss does, without pulling them towards their class centres. "
             "A loss better than its control says the mechanism matters beyond what the control keeps; "
             "equivalence says the control alone does what the loss does here. These comparisons are in the Holm "
             "family and in `comparisons.csv` too.", ""]
    for p in x.controls:
        lines += _pair(p, x.prov)
    return lines
