"""Statistics over seeds: group summaries, the paired center-vs-CE comparison (paired
t-test, TOST equivalence within a margin, the smallest effect detectable with 80 % power,
P(improvement)), exact McNemar per seed pair, and Holm's correction across tests.

Where statsmodels has the statistic it is used (ttost_paired, TTestPower, multipletests,
mcnemar); tests/test_report.py checks each against an independent scipy computation.

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
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from fgvc.report.bootstrap import paired_correctness

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
DEFAULT_MARGIN = 1.0  # equivalence margin, accuracy points (`fgvc report --margin`)
DETECT_EFFECT = 1.0  # the effect, in points, whose seeds-for-80%-power the report gives
ALPHA = 0.05
POWER = 0.8


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the input order (statsmodels)."""
    p = np.asarray(pvalues, dtype=float)
    if not len(p):
        return np.empty(0)
    return multipletests(p, alpha=ALPHA, method="holm")[1]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c (statsmodels)."""
    if b + c == 0:
        return 1.0
    return float(mcnemar([[0, int(b)], [int(c), 0]], exact=True).pvalue)


def discordant(ce: pd.DataFrame, center: pd.DataFrame) -> tuple[int, int, int]:
    """(b, c, n): images CE got right and center wrong, the reverse, and images compared
    (aligned on image_id; images missing from either side are not compared)."""
    a, b, _ = paired_correctness(ce, center)
    return int((a & ~b).sum()), int((~a & b).sum()), len(a)


def power_paired(n: int, effect: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test with n pairs for standardized effect d = mean / sd
    (statsmodels TTestPower: noncentral t with n - 1 degrees of freedom)."""
    return float(TTestPower().power(effect_size=abs(effect), nobs=n, alpha=alpha, alternative="two-sided"))


def seeds_for_power(mean_diff: float, sd_diff: float, power: float = POWER, alpha: float = ALPHA,
                    max_n: int = 100_000) -> int | None:
    """Smallest number of seed pairs giving `power` for a two-sided paired t-test at
    `alpha`, if the true mean difference and SD were these (noncentral t).
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


def min_detectable_effect(n: int, sd_diff: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true mean difference (same units as sd_diff) that a two-sided paired
    t-test with n pairs detects with `power` at `alpha`, for this SD of the differences
    (statsmodels TTestPower, noncentral t). NaN for n < 2 or a non-positive SD."""
    if n < 2 or not math.isfinite(sd_diff) or sd_diff <= 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(np.squeeze(d)) * sd_diff


def tost_paired(a, b, margin: float) -> tuple[float, float, float]:
    """Equivalence of b - a to zero within ±margin by two one-sided paired t-tests
    (statsmodels ttost_paired): (p, p of H0 diff <= -margin, p of H0 diff >= +margin);
    p is the larger. NaN for fewer than 2 pairs. With zero spread in the differences the
    t statistics are infinite, so p is 0 when |difference| < margin and 1 otherwise."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or not margin > 0:
        return math.nan, math.nan, math.nan
    d = b - a
    if no_spread(d):
        lower, upper = float(d[0] > -margin), float(d[0] < margin)
        return max(1 - lower, 1 - upper), 1 - lower, 1 - upper
    p, (_, p_lower, _), (_, p_upper, _) = ttost_paired(b, a, -margin, margin)
    return float(p), float(p_lower), float(p_upper)


def _prefix(sorted_a: np.ndarray, b: np.ndarray, holds) -> np.ndarray:
    """Per b[j], how many of `sorted_a`'s leading values `holds(b[j], a)`, for a test that
    holds on a prefix of the ascending `sorted_a` (a binary search, all b at once)."""
    lo = np.zeros(len(b), dtype=np.int64)
    hi = np.full(len(b), len(sorted_a), dtype=np.int64)
    while (open_ := lo < hi).any():
        mid = (lo + hi) // 2
        ok = open_ & holds(b, sorted_a[np.minimum(mid, len(sorted_a) - 1)])
        lo = np.where(ok, mid + 1, lo)
        hi = np.where(open_ & ~ok, mid, hi)
    return lo


def p_improvement(a, b, atol: float = 1e-9) -> float:
    """The share of all (a[i], b[j]) pairs with b[j] > a[i], ties (|b[j] - a[i]| <= atol)
    counting one half (the probability of superiority, a rank statistic); NaN when either
    side is empty. O((n + m) log n): for each b[j], a binary search over the sorted a finds
    how many a[i] it beats and ties with the same float differences b[j] - a[i] an n x m
    matrix would hold (rounding keeps them monotone in a[i]), so the value is the same to
    the last bit; a NaN counts as a pair that neither beats nor ties."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return math.nan
    s = np.sort(a[~np.isnan(a)])
    if not len(s):
        return 0.0
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, a pair that neither beats nor ties
        beats = _prefix(s, b, lambda bj, ai: bj - ai > atol)
        not_below = _prefix(s, b, lambda bj, ai: bj - ai >= -atol)
    return float((beats.sum() + 0.5 * (not_below - beats).sum()) / (len(a) * len(b)))


def p_improvement_paired(a, b, atol: float = 1e-9) -> float:
    """The share of matched pairs i with b[i] > a[i], ties counting one half; NaN when empty."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return float(np.mean(np.where(np.abs(d) <= atol, 0.5, d > 0))) if len(d) else math.nan


@dataclass
class PairedResult:
    """Center (or any method) vs CE over matching seeds; differences are method - CE in
    accuracy points. Holm fields stay NaN until `adjust_across` sets them; bootstrap
    fields until the caller that has the predictions sets them."""

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
    seeds_needed: int | None = None  # for the observed effect (post hoc; says little)
    note: str = ""  # what could not be computed, and why
    mcnemar: list[dict] = field(default_factory=list)  # per seed: seed, b, c, n, p, p_holm
    margin: float = DEFAULT_MARGIN
    ci90_low: float = math.nan
    ci90_high: float = math.nan
    tost_p: float = math.nan
    mde80: float = math.nan  # smallest effect detected with 80% power at alpha 0.05, points
    seeds_for_1pt: int | None = None  # seeds for 80% power at DETECT_EFFECT points
    p_improve: float = math.nan  # over matched seed pairs
    p_improve_all: float = math.nan  # over all method x CE run pairs
    n_ce_runs: int = 0
    n_center_runs: int = 0
    p_holm: float = math.nan  # paired t-test p, Holm-adjusted across the report's comparisons
    tost_p_holm: float = math.nan
    family: int = 1  # how many comparisons the Holm adjustment ran over
    boot_low: float = math.nan  # hierarchical bootstrap 95% interval of mean_diff
    boot_high: float = math.nan
    boot_seeds: int = 0  # seed pairs with predictions that the bootstrap used
    boot_resamples: int = 0
    name: str = "center"  # the compared method as the texts name it: "<name> minus CE"
    loss: str = "center loss"  # ... and "<loss> beats CE"
    baseline: str = "CE"  # what it is compared with: CE, or a loss's control ("center minus feature-norm")

    @property
    def p_decision(self) -> float:
        """The t-test p-value the verdict uses: Holm-adjusted when there is a family."""
        return self.p_holm if math.isfinite(self.p_holm) else self.p_value

    @property
    def tost_decision(self) -> float:
        return self.tost_p_holm if math.isfinite(self.tost_p_holm) else self.tost_p

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_decision) and self.p_decision < ALPHA

    @property
    def equivalent(self) -> bool:
        return math.isfinite(self.tost_decision) and self.tost_decision < ALPHA

    @property
    def equivalence_bound(self) -> float:
        """The narrowest margin the 90% t interval supports: max(|low|, |high|)."""
        return max(abs(self.ci90_low), abs(self.ci90_high))


def paired_comparison(seeds, ce_top1, center_top1, margin: float = DEFAULT_MARGIN, ce_all=None,
                      center_all=None) -> PairedResult:
    """Seed-level statistics of center - CE over matched seeds. `ce_all` / `center_all`:
    every run's top-1 of each group (default: the matched ones), for P(improvement) over
    all run pairs."""
    ce = np.asarray(ce_top1, dtype=float)
    ct = np.asarray(center_top1, dtype=float)
    n = len(ce)
    res = PairedResult(seeds=[str(s) for s in seeds], ce_top1=ce.tolist(), center_top1=ct.tolist(), n=n,
                       margin=float(margin))
    ce_all = ce if ce_all is None else np.asarray(ce_all, dtype=float)
    center_all = ct if center_all is None else np.asarray(center_all, dtype=float)
    res.n_ce_runs, res.n_center_runs = len(ce_all), len(center_all)
    res.p_improve_all = p_improvement(ce_all, center_all)
    if n == 0:
        res.note = "no seed has both a CE and a center-loss run: nothing to compare"
        return res
    d = ct - ce
    res.p_improve = p_improvement_paired(ce, ct)
    res.mean_diff, res.sd_diff, res.ci_low, res.ci_high = mean_ci(d)
    if n < 2:
        res.note = ("only 1 seed pair: no standard deviation, confidence interval, t-test, equivalence test or "
                    "power estimate can be computed (run more seeds)")
        return res
    res.tost_p = tost_paired(ce, ct, margin)[0]
    if no_spread(d):
        res.sd_diff, res.ci_low, res.ci_high = 0.0, res.mean_diff, res.mean_diff
        res.ci90_low = res.ci90_high = res.mean_diff
        res.note = (f"all {n} paired differences are identical ({d[0]:+.2f} points): zero variance, so the "
                    "t-test and the power estimates are undefined (the equivalence test's t statistics are "
                    "infinite)")
        return res
    _, _, res.ci90_low, res.ci90_high = mean_ci(d, 0.90)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_rel(ct, ce)
    res.t_stat, res.p_value = float(t.statistic), float(t.pvalue)
    res.seeds_needed = seeds_for_power(res.mean_diff, res.sd_diff)
    res.seeds_for_1pt = seeds_for_power(DETECT_EFFECT, res.sd_diff)
    res.mde80 = min_detectable_effect(n, res.sd_diff)
    return res


def adjust_across(results: list[PairedResult]) -> list[PairedResult]:
    """Holm-adjust the t-test and TOST p-values across `results` (the comparisons of one
    report), each over the results where it is defined; sets p_holm, tost_p_holm, family."""
    for name, out in (("p_value", "p_holm"), ("tost_p", "tost_p_holm")):
        idx = [i for i, r in enumerate(results) if math.isfinite(getattr(r, name))]
        adj = holm([getattr(results[i], name) for i in idx])
        for i, a in zip(idx, adj):
            setattr(results[i], out, float(a))
    family = sum(math.isfinite(r.p_value) for r in results)
    for r in results:
        r.family = family
    return results


def add_mcnemar(res: PairedResult, tables: list[tuple[str, int, int, int]]) -> PairedResult:
    """Attach exact McNemar tests (seed, b, c, n) with Holm-adjusted p-values across pairs."""
    ps = [mcnemar_exact(b, c) for _, b, c, _ in tables]
    adj = holm(ps) if ps else []
    res.mcnemar = [dict(seed=s, b=b, c=c, n=n, p=p, p_holm=float(a))
                   for (s, b, c, n), p, a in zip(tables, ps, adj)]
    return res


__all__ = ["SUMMARY_METRICS", "SUMMARY_EXTRA", "DEFAULT_MARGIN", "DETECT_EFFECT", "ALPHA", "POWER", "mean_ci",
           "summarize", "sort_key", "holm", "mcnemar_exact", "discordant", "no_spread", "power_paired",
           "seeds_for_power", "min_detectable_effect", "tost_paired", "p_improvement", "p_improvement_paired",
           "PairedResult", "paired_comparison", "adjust_across", "add_mcnemar"]
