"""Statistics over seeds: group summaries, the paired center-vs-CE comparison, exact
McNemar per seed pair with Holm's correction, and the seeds needed for 80 % power.

Everything that cannot be computed (one seed, zero variance) comes back as NaN / None
with a reason, never as an exception: a report over a half-finished grid is still useful.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

SUMMARY_METRICS = ["n", "top1_mean", "top1_std", "top1_ci95_low", "top1_ci95_high", "top5_mean",
                   "mean_class_acc_mean"]
SUMMARY_EXTRA = ["top1_min", "top1_max", "top5_std", "mean_class_acc_std", "train_seconds_mean",
                 "images_per_second_mean"]


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std with ddof=1, CI low, CI high) by Student's t; NaN where n < 2."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def no_spread(values, atol: float = 1e-9) -> bool:
    """True when all values are equal up to float noise (percent arithmetic leaves
    1e-14-sized spreads that would otherwise give absurd t statistics)."""
    x = np.asarray(values, dtype=float)
    return bool(len(x) and np.all(np.abs(x - x[0]) <= atol * max(1.0, float(np.abs(x).max()))))


def summarize(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per group of ok runs that differ only in seed: keys, then SUMMARY_METRICS
    (then SUMMARY_EXTRA). Groups are sorted by their keys."""
    ok = runs[runs.status == "ok"]
    rows = []
    for key, g in ok.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, sd, lo, hi = mean_ci(g.top1)
        rows.append({
            **dict(zip(keys, key)), "n": len(g), "top1_mean": mean, "top1_std": sd, "top1_ci95_low": lo,
            "top1_ci95_high": hi, "top5_mean": g.top5.mean(), "mean_class_acc_mean": g.mean_class_acc.mean(),
            "top1_min": g.top1.min(), "top1_max": g.top1.max(), "top5_std": g.top5.std(ddof=1),
            "mean_class_acc_std": g.mean_class_acc.std(ddof=1), "train_seconds_mean": g.train_seconds.mean(),
            "images_per_second_mean": g.images_per_second.mean(),
        })
    frame = pd.DataFrame(rows, columns=keys + SUMMARY_METRICS + SUMMARY_EXTRA)
    if len(frame):
        order = sorted(range(len(frame)), key=lambda i: tuple(sort_key(frame.iloc[i][k]) for k in keys))
        frame = frame.iloc[order].reset_index(drop=True)
    return frame


def sort_key(value) -> tuple:
    """Numbers in numeric order, then text; `ce` before `center` falls out of text order."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


# --------------------------------------------------------------------------- tests
def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the input order."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c."""
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(int(min(b, c)), int(b + c), 0.5).pvalue)


def discordant(ce: pd.DataFrame, center: pd.DataFrame) -> tuple[int, int, int]:
    """(b, c, n): images CE got right and center wrong, the reverse, and images compared
    (aligned on image_id; images missing from either side are not compared)."""
    m = ce[["image_id", "label", "pred"]].merge(center[["image_id", "label", "pred"]], on="image_id",
                                                suffixes=("_ce", "_center"))
    a = (m.pred_ce == m.label_ce).to_numpy()
    b = (m.pred_center == m.label_center).to_numpy()
    return int((a & ~b).sum()), int((~a & b).sum()), len(m)


def power_paired(n: int, effect: float, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test with n pairs for standardized effect d = mean / sd."""
    df = n - 1
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n)
    return float(stats.nct.sf(t_crit, df, nc) + stats.nct.cdf(-t_crit, df, nc))


def seeds_for_power(mean_diff: float, sd_diff: float, power: float = 0.8, alpha: float = 0.05,
                    max_n: int = 100_000) -> int | None:
    """Smallest number of seed pairs giving `power` for a two-sided paired t-test at
    `alpha`, if the true mean difference and SD were the observed ones (noncentral t).
    None when it is undefined (zero or non-finite difference or SD) or above max_n."""
    if not (math.isfinite(mean_diff) and math.isfinite(sd_diff)) or mean_diff == 0 or sd_diff <= 0:
        return None
    effect = abs(mean_diff) / sd_diff
    lo, hi = 1, 2
    while power_paired(hi, effect, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > max_n:
            return None
    while hi - lo > 1:  # power grows with n: bisect on (lo fails, hi passes]
        mid = (lo + hi) // 2
        if power_paired(mid, effect, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass
class PairedResult:
    """Center vs CE over matching seeds; differences are center - CE in accuracy points."""

    seeds: list[str]
    ce_top1: list[float]
    center_top1: list[float]
    n: int
    mean_diff: float = math.nan
    sd_diff: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    t_stat: float = math.nan
    p_value: float = math.nan
    seeds_needed: int | None = None
    note: str = ""  # what could not be computed, and why
    mcnemar: list[dict] = field(default_factory=list)  # per seed: seed, b, c, n, p, p_holm

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_value) and self.p_value < 0.05


def paired_comparison(seeds, ce_top1, center_top1) -> PairedResult:
    ce = np.asarray(ce_top1, dtype=float)
    ct = np.asarray(center_top1, dtype=float)
    n = len(ce)
    res = PairedResult(seeds=[str(s) for s in seeds], ce_top1=ce.tolist(), center_top1=ct.tolist(), n=n)
    if n == 0:
        res.note = "no seed has both a CE and a center-loss run: nothing to compare"
        return res
    d = ct - ce
    res.mean_diff, res.sd_diff, res.ci_low, res.ci_high = mean_ci(d)
    if n < 2:
        res.note = ("only 1 seed pair: no standard deviation, confidence interval, t-test or power "
                    "estimate can be computed (run more seeds)")
        return res
    if no_spread(d):
        res.sd_diff, res.ci_low, res.ci_high = 0.0, res.mean_diff, res.mean_diff
        res.note = (f"all {n} paired differences are identical ({d[0]:+.2f} points): zero variance, so the "
                    "t-test and the power estimate are undefined")
        return res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_rel(ct, ce)
    res.t_stat, res.p_value = float(t.statistic), float(t.pvalue)
    res.seeds_needed = seeds_for_power(res.mean_diff, res.sd_diff)
    return res


def add_mcnemar(res: PairedResult, tables: list[tuple[str, int, int, int]]) -> PairedResult:
    """Attach exact McNemar tests (seed, b, c, n) with Holm-adjusted p-values across pairs."""
    ps = [mcnemar_exact(b, c) for _, b, c, _ in tables]
    adj = holm(ps) if ps else []
    res.mcnemar = [dict(seed=s, b=b, c=c, n=n, p=p, p_holm=float(a))
                   for (s, b, c, n), p, a in zip(tables, ps, adj)]
    return res


__all__ = ["SUMMARY_METRICS", "SUMMARY_EXTRA", "mean_ci", "summarize", "sort_key", "holm", "mcnemar_exact",
           "discordant", "no_spread", "power_paired", "seeds_for_power", "PairedResult", "paired_comparison", "add_mcnemar"]
