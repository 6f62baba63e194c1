"""Paired comparisons as words and as `comparisons.csv`: the report's verdict on each
method-vs-CE comparison, the one-cell summary `fgvc compare` prints, and the CSV rows.

The numbers come from fgvc.report.stats (seed level) and fgvc.report.bootstrap (seeds
and test images); this module only words and formats them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fgvc.report.bootstrap import BOOT_SEED
from fgvc.report.markdown import compact, number, pvalue
from fgvc.report.stats import ALPHA, DETECT_EFFECT, PairedResult

# DESIGN.md, "OUT/comparisons.csv": these columns first, in this order (accuracy points).
COMPARISON_COLUMNS = ["a", "b", "n_pairs", "mean_diff", "sd_diff", "ci95_low", "ci95_high", "p_ttest", "p_holm",
                      "boot_ci95_low", "boot_ci95_high", "tost_margin", "tost_p", "mde80", "p_improve"]
COMPARISON_EXTRA = ["a_label", "b_label", "seeds", "t_stat", "ci90_low", "ci90_high", "tost_p_holm",
                    "equivalence_bound", "holm_family", "boot_seeds", "boot_resamples", "boot_rng_seed",
                    "seeds_for_1pt", "seeds_for_observed", "p_improve_all", "n_a_runs", "n_b_runs"]
COMPARISON_DECIMALS = 4  # decimals of point and share columns; p-values keep 4 significant digits


# --------------------------------------------------------------------------- words
def verdict(res: PairedResult) -> str:
    """The verdict paragraph on one comparison (differences are the method minus CE, or minus
    the loss's control: `res.baseline`)."""
    if res.n == 0:
        return f"**Verdict:** {res.note}."
    parts = _difference(res) + _bootstrap(res)
    if res.n >= 2 and math.isfinite(res.tost_p):
        parts += _equivalence(res)
    parts += _power(res) + _improvement(res)
    if res.mcnemar:
        parts.append(_mcnemar(res))
    return "**Verdict:** " + " ".join(parts)


def _difference(res: PairedResult) -> list[str]:
    """The mean difference with the t-test over seeds (or why there is none)."""
    if res.n == 1:
        return [f"With one seed pair, {res.name} minus {res.baseline} = {number(res.mean_diff, 2, sign=True)} points; "
                f"{res.note}."]
    if res.note:
        return [f"Over {res.n} matching seeds, {res.name} minus {res.baseline} = "
                f"{number(res.mean_diff, 2, sign=True)} points on "
                f"average; {res.note}."]
    parts = [f"Over {res.n} matching seeds, {res.name} minus {res.baseline} = "
             f"{number(res.mean_diff, 2, sign=True)} points on "
             f"average (95% CI {number(res.ci_low, 2, sign=True)} to {number(res.ci_high, 2, sign=True)}, Student t "
             f"over seeds; SD of the paired differences {number(res.sd_diff, 2)}; paired t-test t = {res.t_stat:.2f}, "
             f"p = {pvalue(res.p_value)})."]
    if res.family > 1:
        parts.append(f"Holm-adjusted across the {res.family} comparisons of this report: p = {pvalue(res.p_holm)}"
                     + (f", equivalence p = {pvalue(res.tost_p_holm)}." if math.isfinite(res.tost_p_holm) else "."))
    return parts


def _bootstrap(res: PairedResult) -> list[str]:
    if not res.boot_resamples:
        return ["No hierarchical bootstrap: no seed pair has both runs' predictions.csv."]
    seeds = f"{res.boot_seeds} seed pair{'s' if res.boot_seeds != 1 else ''}"
    return [f"Hierarchical bootstrap over seeds and test images ({res.boot_resamples:,} resamples of {seeds}): "
            f"95% interval {number(res.boot_low, 2, sign=True)} to {number(res.boot_high, 2, sign=True)} points; "
            "it also counts test-image sampling, which the t interval does not."]


def _equivalence(res: PairedResult) -> list[str]:
    """TOST against ±margin, and the one conclusion the two tests allow."""
    m = _margin_text(res)
    return [f"Equivalence (TOST, two one-sided paired t-tests against ±{m}): p = {pvalue(res.tost_p)}; "
            f"90% t interval {number(res.ci90_low, 2, sign=True)} to {number(res.ci90_high, 2, sign=True)}."
            ] + conclusion(res)


def _margin_text(res: PairedResult) -> str:
    return compact(res.margin) + (" point" if res.margin == 1 else " points")


def conclusion(res: PairedResult) -> list[str]:
    """The one conclusion the paired t-test and TOST allow together, in bold (with the
    bootstrap's caveat where it applies); the verdict paragraph and the report's summary
    both use it. Empty when there is no equivalence test (fewer than 2 seed pairs)."""
    if res.n < 2 or not math.isfinite(res.tost_p):
        return []
    m = _margin_text(res)
    p = res.tost_decision
    better = "better" if res.mean_diff > 0 else "worse"
    holm = _holm_text(res)
    if res.significant and res.equivalent:
        return [f"**The difference is statistically significant at the 0.05 level{holm} ({res.loss} is {better} "
                f"than {res.baseline} here), and also equivalent to zero within ±{m}: real, but smaller than {m}.**"]
    if res.significant:
        return [f"**The difference is statistically significant at the 0.05 level{holm}: {res.loss} is {better} "
                f"than {res.baseline} here.**"]
    if res.equivalent:
        parts = [f"**The difference is not statistically significant{holm}, and it is equivalent to zero within "
                 f"±{m} at the 0.05 level** (equivalence p = {pvalue(p)}): over seeds, these runs rule "
                 f"out an effect of {m} or more in either direction."]
        if res.boot_resamples and (res.boot_low <= -res.margin or res.boot_high >= res.margin):
            parts.append(f"The bootstrap interval, which also counts test-image sampling, reaches beyond ±{m}: "
                         f"on another test set of this size, an effect somewhat larger than {m} is not ruled out.")
        return parts
    return [f"**The difference is not statistically significant{holm}, and equivalence within ±{m} "
            f"cannot be concluded either** (equivalence p = {pvalue(p)}); "
            + (f"before adjustment, the 90% interval would support equivalence only for a margin wider than "
               f"±{number(res.equivalence_bound, 2)} points." if holm else
               f"these seeds would support equivalence only for a margin wider than "
               f"±{number(res.equivalence_bound, 2)} points (the larger end of the 90% interval).")]


def _holm_text(res: PairedResult) -> str:
    """Where the decision read Holm-adjusted p-values, say so with the unadjusted one, so that
    a 95% interval that excludes zero beside 'not significant' is not read as a contradiction."""
    if res.family <= 1 or not math.isfinite(res.p_holm):
        return ""
    return (f" after Holm adjustment across the {res.family} comparisons of this report (p = {pvalue(res.p_holm)}; "
            f"unadjusted p = {pvalue(res.p_value)})")


def headline(res: PairedResult) -> str:
    """The verdict in brief, for the top of the report: the mean difference with its 95%
    intervals (and the 90% interval the equivalence test reads), then `conclusion`."""
    if res.n == 0:
        return res.note[:1].upper() + res.note[1:] + "."
    if res.n == 1 or res.note:
        first = _difference(res)[0]
    else:
        boot = (f"; hierarchical bootstrap over seeds and test images {number(res.boot_low, 2, sign=True)} to "
                f"{number(res.boot_high, 2, sign=True)}" if res.boot_resamples else "")
        first = (f"{res.name} minus {res.baseline} = {number(res.mean_diff, 2, sign=True)} points on average "
                 f"(95% CI {number(res.ci_low, 2, sign=True)} to {number(res.ci_high, 2, sign=True)}, Student t "
                 f"over seeds{boot}; 90% interval {number(res.ci90_low, 2, sign=True)} to "
                 f"{number(res.ci90_high, 2, sign=True)} against the ±{_margin_text(res)} equivalence margin).")
    words = conclusion(res)
    holm = ([f"(Holm-adjusted across the {res.family} comparisons of this report.)"]
            if res.family > 1 and res.n >= 2 and not res.note and not words else [])
    return " ".join([first] + words + holm)


def brief(res: PairedResult) -> str:
    """The verdict in one short line, for a summary of many comparisons (a loss zoo): the mean
    difference, its 95% t interval, the (Holm-adjusted) p-value and `conclusion` in a few words."""
    if res.n < 2 or res.note or not math.isfinite(res.tost_p):
        return headline(res)
    m = _margin_text(res)
    if res.significant:
        word = f"significant, {res.loss} {'better' if res.mean_diff > 0 else 'worse'}" + (
            f", and equivalent within ±{m}" if res.equivalent else "")
    else:
        word = f"not significant, equivalent within ±{m}" if res.equivalent else \
            f"not significant, and not equivalent within ±{m}"
    p = (f"p (Holm, {res.family} comparisons) = {pvalue(res.p_holm)}" if res.family > 1 and math.isfinite(res.p_holm)
         else f"p = {pvalue(res.p_value)}")
    return (f"{number(res.mean_diff, 2, sign=True)} points (95% CI {number(res.ci_low, 2, sign=True)} to "
            f"{number(res.ci_high, 2, sign=True)}; {p}): **{word}**.")


def _power(res: PairedResult) -> list[str]:
    """The smallest detectable effect and the seeds a 1-point effect needs (before the
    post-hoc figure for the observed effect, which says little)."""
    if not math.isfinite(res.mde80):
        return []
    one = number(DETECT_EFFECT, 0)
    need = (f"detecting {one} point would need {res.seeds_for_1pt} seeds" if res.seeds_for_1pt
            else f"seeds for {one} point: not available")
    parts = [f"Smallest effect these {res.n} seeds detect with 80% power (two-sided paired t-test, alpha "
             f"{ALPHA}, noncentral t, this SD of the differences): {number(res.mde80, 2)} points; {need}."]
    if res.seeds_needed is not None:
        parts.append(f"(The observed {abs(res.mean_diff):.2f} points would need about {res.seeds_needed} seeds; "
                     "a post-hoc figure that says little.)")
    return parts


def _improvement(res: PairedResult) -> list[str]:
    d = np.asarray(res.center_top1) - np.asarray(res.ce_top1)
    wins, ties = int(np.sum(d > 1e-9)), int(np.sum(np.abs(d) <= 1e-9))
    tie = f", {ties} tied" if ties else ""
    return [f"P(improvement): {res.loss} beats {res.baseline} in {wins} of {res.n} seed pairs{tie} "
            f"({number(res.p_improve, 2)}) and in {number(res.p_improve_all, 2)} of all "
            f"{res.n_center_runs} × {res.n_ce_runs} {res.name} × {res.baseline} run pairs (ties count one half)."]


def _mcnemar(res: PairedResult) -> str:
    k = sum(m["p_holm"] < ALPHA for m in res.mcnemar)
    return (f"Per-image exact McNemar: {k} of {len(res.mcnemar)} seed pairs differ significantly at 0.05 "
            f"after Holm adjustment (smallest adjusted p = {pvalue(min(m['p_holm'] for m in res.mcnemar))}). "
            "McNemar asks whether two particular runs differ on these test images; it ignores "
            "seed-to-seed variation, so only the tests over seeds speak to the method in general.")


def compare_cell(res: PairedResult) -> str:
    """One table cell for `fgvc compare`: the seed-level statistics of b minus a."""
    if res.n < 2:
        return f"n={res.n}: too few matching seeds"
    m = compact(res.margin)
    if res.note:
        eq = "equivalent" if res.equivalent else "not equivalent"
        return f"n={res.n}: identical differences ({res.mean_diff:+.2f}), no t-test; {eq} within ±{m}"
    holm = f", Holm p={res.p_holm:.3g}" if res.family > 1 else ""
    sig = "significant" if res.significant else "not significant"
    eq = "equivalent" if res.equivalent else "not equivalent"
    return (f"n={res.n}, Δ {res.mean_diff:+.2f} [{res.ci_low:+.2f}, {res.ci_high:+.2f}], p={res.p_value:.3g}{holm} "
            f"({sig}); TOST ±{m}: p={res.tost_decision:.3g} ({eq}); MDE80 {res.mde80:.2f}; "
            f"P(improve) {res.p_improve:.2f}")


# --------------------------------------------------------------------------- comparisons.csv
def comparison_row(a: str, b: str, a_label: str, b_label: str, res: PairedResult) -> dict:
    """One comparisons.csv row (COMPARISON_COLUMNS + COMPARISON_EXTRA) for b minus a."""
    return dict(
        a=a, b=b, n_pairs=res.n, mean_diff=res.mean_diff, sd_diff=res.sd_diff, ci95_low=res.ci_low,
        ci95_high=res.ci_high, p_ttest=res.p_value, p_holm=res.p_holm, boot_ci95_low=res.boot_low,
        boot_ci95_high=res.boot_high, tost_margin=res.margin, tost_p=res.tost_p, mde80=res.mde80,
        p_improve=res.p_improve, a_label=a_label, b_label=b_label, seeds=";".join(res.seeds), t_stat=res.t_stat,
        ci90_low=res.ci90_low, ci90_high=res.ci90_high, tost_p_holm=res.tost_p_holm,
        equivalence_bound=res.equivalence_bound if res.n >= 2 else math.nan, holm_family=res.family,
        boot_seeds=res.boot_seeds, boot_resamples=res.boot_resamples,
        boot_rng_seed=BOOT_SEED if res.boot_resamples else None, seeds_for_1pt=res.seeds_for_1pt,
        seeds_for_observed=res.seeds_needed, p_improve_all=res.p_improve_all, n_a_runs=res.n_ce_runs,
        n_b_runs=res.n_center_runs)


def comparisons_csv(rows: list[dict]) -> str:
    """comparisons.csv text: points and shares to COMPARISON_DECIMALS decimals, p-values to 4
    significant digits, counts as integers, empty cells for what is undefined."""
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS + COMPARISON_EXTRA)
    pcols = ["p_ttest", "p_holm", "tost_p", "tost_p_holm"]
    icols = ["n_pairs", "holm_family", "boot_seeds", "boot_resamples", "boot_rng_seed", "seeds_for_1pt",
             "seeds_for_observed", "n_a_runs", "n_b_runs"]
    text = ["a", "b", "a_label", "b_label", "seeds"]
    for c in frame.columns:
        if c in icols:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("Int64")
        elif c in pcols:
            frame[c] = [float(f"{p:.4g}") if isinstance(p, float) and math.isfinite(p) else math.nan
                        for p in frame[c].astype(float)]
        elif c not in text:
            frame[c] = frame[c].astype(float).round(COMPARISON_DECIMALS) + 0.0  # no -0.0
    return frame.to_csv(index=False, lineterminator="\n")


__all__ = ["COMPARISON_COLUMNS", "COMPARISON_EXTRA", "verdict", "conclusion", "headline", "brief", "compare_cell",
           "comparison_row", "comparisons_csv"]
