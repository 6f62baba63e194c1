"""The paired statistics (TOST, smallest detectable effect, P(improvement), Holm across
comparisons) and the hierarchical bootstrap, each against an independent computation
(scipy, or a plain loop over drawn indices) and on data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from fgvc.report.bootstrap import (BOOT_RESAMPLES, bootstrap_interval, class_intervals, hierarchical_bootstrap,
                                   percentile_interval)
from fgvc.report.verdicts import (COMPARISON_COLUMNS, brief, comparison_row, comparisons_csv, conclusion, headline,
                                  verdict)
from fgvc.report.markdown import pvalue
from fgvc.report.stats import (adjust_across, mcnemar_exact, min_detectable_effect, p_improvement,
                               p_improvement_paired, paired_comparison, power_paired, seeds_for_power, tost_paired)


def scipy_power(n: int, dz: float, alpha: float = 0.05) -> float:
    """Two-sided paired t-test power from scipy's noncentral t, written out."""
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = dz * math.sqrt(n)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def scipy_tost(a, b, m):
    """TOST as two one-sided scipy paired t-tests: H0 b - a <= -m, and H0 b - a >= m."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    p_low = stats.ttest_rel(b + m, a, alternative="greater").pvalue
    p_up = stats.ttest_rel(b - m, a, alternative="less").pvalue
    return max(p_low, p_up), p_low, p_up


def seeds(n):
    return [str(i) for i in range(n)]


# --------------------------------------------------------------------------- TOST
@pytest.mark.parametrize("margin", [0.3, 1.0, 2.5])
def test_tost_matches_scipy_and_the_90_percent_interval(margin):
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(3, 12))
        a = rng.normal(56, 1, n)
        b = a + rng.normal(rng.normal(0, 0.5), 0.8, n)
        p, p_low, p_up = tost_paired(a, b, margin)
        assert (p, p_low, p_up) == pytest.approx(scipy_tost(a, b, margin), rel=1e-9)
        d = b - a
        lo, hi = stats.t.interval(0.90, n - 1, loc=d.mean(), scale=stats.sem(d))
        assert (p < 0.05) == (-margin < lo and hi < margin)  # TOST at 0.05 = 90% interval inside ±m
        res = paired_comparison(seeds(n), a, b, margin=margin)
        assert res.tost_p == pytest.approx(p) and (res.ci90_low, res.ci90_high) == pytest.approx((lo, hi))
        assert res.equivalence_bound == pytest.approx(max(abs(lo), abs(hi)))


def test_identical_runs_are_equivalent_at_any_margin():
    a = [55.6, 55.9, 55.1, 56.6, 57.4]
    for margin in (0.01, 1.0, 100.0):
        assert tost_paired(a, a, margin)[0] == 0.0
        res = paired_comparison(seeds(5), a, a, margin=margin)
        assert res.mean_diff == 0.0 and res.sd_diff == 0.0 and res.equivalent and not res.significant
        assert res.p_improve == 0.5 and res.p_improve_all == pytest.approx(p_improvement(a, a))
        assert "equivalent to zero within" in verdict(res)


def test_shifted_copy_gives_the_shift():
    a = np.array([55.6, 55.9, 55.1, 56.6, 57.4])
    res = paired_comparison(seeds(5), a, a + 0.7, margin=1.0)
    assert res.mean_diff == pytest.approx(0.7) and res.sd_diff == 0.0 and res.equivalent
    assert res.p_improve == 1.0
    assert tost_paired(a, a + 0.7, 0.5) == (1.0, 0.0, 1.0)  # every difference is above +0.5
    # a shifted copy plus noise: the mean difference is the shift plus the noise's mean
    noise = np.array([0.3, -0.2, 0.1, -0.4, 0.2])
    res = paired_comparison(seeds(5), a, a + 2.0 + noise)
    assert res.mean_diff == pytest.approx(2.0 + noise.mean()) and res.significant and not res.equivalent
    assert "statistically significant at the 0.05 level: center loss is better" in verdict(res)


def test_tost_undefined_below_two_pairs():
    assert all(math.isnan(v) for v in tost_paired([50.0], [51.0], 1.0))
    res = paired_comparison(["0"], [50.0], [51.0])
    assert math.isnan(res.tost_p) and math.isnan(res.mde80) and not res.equivalent


# --------------------------------------------------------------------------- power
@pytest.mark.parametrize("n, bracket", [(3, 5.0), (5, 3.0), (10, 3.0), (34, 3.0)])
def test_min_detectable_effect_matches_scipy_noncentral_t(n, bracket):
    dz = optimize.brentq(lambda d: scipy_power(n, d) - 0.8, 1e-3, bracket)  # scipy's nct is NaN far out
    assert min_detectable_effect(n, 1.0) == pytest.approx(dz, rel=1e-4)
    assert min_detectable_effect(n, 0.72) == pytest.approx(0.72 * dz, rel=1e-4)
    assert scipy_power(n, min_detectable_effect(n, 1.0)) == pytest.approx(0.8, abs=1e-5)


def test_min_detectable_effect_known_value_and_undefined():
    # G*Power, paired t-test, two-tailed alpha 0.05, power 0.8, 10 pairs: dz = 0.996
    assert min_detectable_effect(10, 1.0) == pytest.approx(0.996, abs=5e-4)
    assert math.isnan(min_detectable_effect(1, 1.0)) and math.isnan(min_detectable_effect(5, 0.0))


def test_power_and_seeds_for_power_against_scipy():
    for n, dz in ((5, 1.2), (10, 0.5), (34, 0.5), (4, 2.0)):
        assert power_paired(n, dz) == pytest.approx(scipy_power(n, dz), rel=1e-6)
    for mean, sd in ((1.0, 0.72), (0.5, 1.3), (2.0, 0.9)):
        n = seeds_for_power(mean, sd)
        assert scipy_power(n, mean / sd) >= 0.8 > scipy_power(n - 1, mean / sd)
    res = paired_comparison(seeds(4), [50.0, 51.0, 52.0, 53.0], [50.5, 51.2, 53.1, 53.3])
    assert res.seeds_for_1pt == seeds_for_power(1.0, res.sd_diff)


# --------------------------------------------------------------------------- P(improvement), McNemar, Holm
def test_p_improvement_against_a_loop():
    rng = np.random.default_rng(7)
    a = np.round(rng.normal(56, 1, 6), 1)
    b = np.round(rng.normal(56.3, 1, 4), 1)
    b[0] = a[2]  # a tie
    loop = np.mean([1.0 if y > x else 0.5 if y == x else 0.0 for x in a for y in b])
    assert p_improvement(a, b) == pytest.approx(loop)
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 2.5, 5.0])
    assert p_improvement_paired(x, y) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert math.isnan(p_improvement([], [1.0])) and math.isnan(p_improvement_paired([], []))


def _p_improvement_matrix(a, b, atol=1e-9) -> float:
    """The formula before issue 30: the n x m matrix of differences (quadratic memory)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return math.nan
    d = b[:, None] - a[None, :]
    return float(np.mean(np.where(np.abs(d) <= atol, 0.5, d > 0)))


def test_p_improvement_equals_the_matrix_formula_to_the_last_bit():
    """The rank statistic gives exactly what the n x m matrix gave: ties within atol (also
    differences of 1e-9 +- rounding), repeated values, NaN and infinities, empty sides."""
    rng = np.random.default_rng(30)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-9, -1e-9, 5e-10, 1.0, 100.0])
    for t in range(3000):
        n, m = (int(v) for v in rng.integers(0, 10, 2))
        if t % 4 == 0:
            a, b = rng.normal(60, 5, n), rng.normal(60, 5, m)
        elif t % 4 == 1:  # accuracies on a grid of 1/3 points: many exact ties
            a, b = rng.integers(150, 160, n) / 3, rng.integers(150, 160, m) / 3
        elif t % 4 == 2:  # differences at the tie tolerance
            a = rng.integers(0, 1000, n) * 0.1
            b = np.resize(a, m) + rng.choice([0.0, 1e-9, -1e-9, 2e-9, 1e-10, 0.3], m) if n else rng.random(m)
        else:
            a, b = rng.choice(specials, n), rng.choice(specials, m)
        with np.errstate(invalid="ignore"):
            want = _p_improvement_matrix(a, b)
        got = p_improvement(a, b)
        assert (math.isnan(want) and math.isnan(got)) or got == want, (a, b, want, got)


def test_p_improvement_of_100000_runs_a_side_needs_no_matrix():
    rng = np.random.default_rng(1)
    a, b = rng.normal(60, 2, 100_000), rng.normal(60.5, 2, 100_000)
    got = p_improvement(a, b)  # the matrix would be 74.5 GiB
    # P(b > a) for two normals 0.5 apart with SD 2 each: Phi(0.5 / (2 * sqrt 2))
    assert got == pytest.approx(stats.norm.cdf(0.5 / (2 * math.sqrt(2))), abs=0.005)


def test_mcnemar_matches_scipy_binomial():
    for b, c in ((3, 9), (30, 37), (0, 5), (12, 12), (1, 0)):
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue)


def test_holm_across_comparisons_by_hand():
    rng = np.random.default_rng(11)
    results = []
    for shift in (0.0, 0.4, 1.5, 3.0):
        a = rng.normal(56, 1, 5)
        results.append(paired_comparison(seeds(5), a, a + shift + rng.normal(0, 0.7, 5)))
    results.append(paired_comparison(["0"], [50.0], [51.0]))  # no t-test: not in the family
    adjust_across(results)
    for name, out in (("p_value", "p_holm"), ("tost_p", "tost_p_holm")):
        p = np.array([getattr(r, name) for r in results[:4]])
        order, adj, running = np.argsort(p), np.empty(4), 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (4 - rank) * p[i]))
            adj[i] = running
        assert [getattr(r, out) for r in results[:4]] == pytest.approx(adj)
    assert math.isnan(results[4].p_holm) and all(r.family == 4 for r in results)
    assert "Holm-adjusted across the 4 comparisons" in verdict(results[0])
    lone = adjust_across([paired_comparison(seeds(3), [1.0, 2.0, 3.0], [1.5, 2.1, 3.9])])[0]
    assert lone.p_holm == pytest.approx(lone.p_value) and lone.family == 1


def test_conclusion_names_the_holm_adjustment_it_read():
    """A 95% interval that excludes zero beside 'not significant' must say the decision read
    Holm-adjusted p-values, with the unadjusted one (the sweep's λ 0.01 case: 3 seeds, 8 tests)."""
    big = paired_comparison(seeds(3), [56.4, 55.0, 55.3], [65.5, 68.1, 65.5])
    rest = [paired_comparison(seeds(3), [50.0, 51.0, 52.0], [50.2, 51.5, 51.9]) for _ in range(7)]
    adjust_across([big, *rest])
    assert big.p_value < 0.05 < big.p_holm and big.ci_low > 0
    words = " ".join(conclusion(big))
    assert "not statistically significant after Holm adjustment across the 8 comparisons" in words
    assert f"unadjusted p = {pvalue(big.p_value)}" in words and "before adjustment" in words
    assert headline(big).count("Holm") == 1
    lone = paired_comparison(seeds(3), [56.4, 55.0, 55.3], [65.5, 68.1, 65.5])
    assert "Holm" not in " ".join(conclusion(lone)) and "statistically significant at the 0.05 level:" in " ".join(
        conclusion(lone))


# --------------------------------------------------------------------------- bootstrap
def slow_bootstrap(pairs, resamples, rng):
    """The hierarchical bootstrap written as the plain loop it stands for: draw seeds,
    then within each drawn seed draw image indices, both runs' correctness together."""
    out = np.empty(resamples)
    for r in range(resamples):
        per_seed = []
        for _ in range(len(pairs)):
            a, b = pairs[rng.integers(len(pairs))]
            idx = rng.integers(0, len(a), len(a))
            per_seed.append(100.0 * (b[idx].mean() - a[idx].mean()))
        out[r] = np.mean(per_seed)
    return out


def fake_pairs(rng, n_seeds=4, n_images=(200, 200, 180, 200), p_a=0.55, shift=0.05):
    pairs = []
    for s in range(n_seeds):
        a = rng.random(n_images[s]) < p_a + rng.normal(0, 0.03)
        flip = rng.random(n_images[s]) < 0.12  # discordant images
        b = np.where(flip, rng.random(n_images[s]) < 0.5 + shift, a)
        pairs.append((a, b))
    return pairs


def test_bootstrap_matches_a_plain_loop():
    rng = np.random.default_rng(5)
    pairs = fake_pairs(rng)
    fast = hierarchical_bootstrap(pairs, BOOT_RESAMPLES)
    slow = slow_bootstrap(pairs, 10_000, np.random.default_rng(99))
    assert len(fast) == BOOT_RESAMPLES
    sd = slow.std()  # about 0.8 points; Monte Carlo error of the quantiles below is about 0.05 sd
    assert fast.mean() == pytest.approx(slow.mean(), abs=0.05 * sd)
    assert fast.std() == pytest.approx(sd, rel=0.04)
    for q in (2.5, 50, 97.5):
        assert np.percentile(fast, q) == pytest.approx(np.percentile(slow, q), abs=0.15 * sd)


def test_bootstrap_variance_matches_the_two_stage_formula():
    # Var(one drawn seed) = Var over seeds of the per-seed means + mean of (per-image variance / n);
    # the resample averages len(pairs) such draws.
    pairs = fake_pairs(np.random.default_rng(8))
    d = [100.0 * (b.astype(float) - a.astype(float)) for a, b in pairs]
    m = np.array([x.mean() for x in d])
    within = np.mean([x.var() / len(x) for x in d])
    expected = (m.var() + within) / len(pairs)
    dist = hierarchical_bootstrap(pairs, 40_000)
    assert dist.mean() == pytest.approx(m.mean(), abs=0.05)
    assert dist.var() == pytest.approx(expected, rel=0.03)


def test_bootstrap_known_answers_and_determinism():
    rng = np.random.default_rng(1)
    a = [rng.random(50) < 0.6 for _ in range(3)]
    assert np.all(hierarchical_bootstrap([(x, x) for x in a]) == 0.0)  # identical runs
    assert bootstrap_interval([(x, x) for x in a]) == (0.0, 0.0)
    # b = a with the same number of wrong images turned right in every seed: every
    # resample's difference is centred on that shift, and the interval holds it
    shifted = []
    for x in a:
        y = x.copy()
        y[np.flatnonzero(~x)[:5]] = True
        shifted.append((x, y))
    dist = hierarchical_bootstrap(shifted)
    assert dist.mean() == pytest.approx(10.0, abs=0.1) and dist.min() >= 0.0
    lo, hi = bootstrap_interval(shifted)
    assert lo < 10.0 < hi
    pairs = fake_pairs(rng)
    assert np.array_equal(hierarchical_bootstrap(pairs), hierarchical_bootstrap(pairs))
    assert not np.array_equal(hierarchical_bootstrap(pairs, seed=1), hierarchical_bootstrap(pairs))
    assert len(hierarchical_bootstrap([])) == 0 and all(math.isnan(v) for v in percentile_interval(np.empty(0)))


def test_class_intervals_use_each_class_alone():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 20)
    triples = []
    for _ in range(3):
        a = rng.random(60) < 0.6
        b = np.where(labels == 1, a, rng.random(60) < 0.6)  # class 1 identical in both runs
        triples.append((a, b, labels))
    diff, lo, hi = class_intervals(triples, 4)
    for c in (0, 2):
        sub = [(a[labels == c], b[labels == c]) for a, b, _ in triples]
        assert diff[c] == pytest.approx(np.mean([100 * (b.mean() - a.mean()) for a, b in sub]))
        assert (lo[c], hi[c]) == pytest.approx(bootstrap_interval(sub))
    assert (diff[1], lo[1], hi[1]) == (0.0, 0.0, 0.0)
    assert all(math.isnan(v) for v in (diff[3], lo[3], hi[3]))  # no test image of class 3


# --------------------------------------------------------------------------- comparisons.csv
def test_comparisons_csv_columns_and_rounding():
    res = paired_comparison(seeds(3), [50.0, 51.0, 52.0], [50.5, 51.2, 53.1])
    res.boot_low, res.boot_high, res.boot_seeds, res.boot_resamples = -0.123456, 1.5, 3, 10_000
    adjust_across([res])
    text = comparisons_csv([comparison_row("method=ce", "method=center", "CE", "center", res)])
    header, row = text.splitlines()
    assert header.split(",")[:len(COMPARISON_COLUMNS)] == COMPARISON_COLUMNS
    values = dict(zip(header.split(","), row.split(",")))
    assert values["a"] == "method=ce" and values["n_pairs"] == "3" and values["boot_ci95_low"] == "-0.1235"
    assert float(values["p_ttest"]) == pytest.approx(res.p_value, rel=1e-3)
    assert values["p_holm"] == values["p_ttest"] and values["tost_margin"] == "1.0"
    assert values["seeds_for_1pt"] == str(res.seeds_for_1pt) and values["seeds"] == "0;1;2"
    empty = comparisons_csv([comparison_row("x", "y", "x", "y", paired_comparison(["0"], [1.0], [2.0]))])
    values = dict(zip(empty.splitlines()[0].split(","), empty.splitlines()[1].split(",")))
    assert values["p_ttest"] == "" and values["tost_p"] == "" and values["boot_rng_seed"] == ""


def test_brief_says_each_conclusion_in_a_few_words():
    """The one-line verdict of a summary of many comparisons: significant (and which way),
    equivalent, or neither; one seed pair falls back to the full headline."""
    a = np.array([50.0, 52.0, 54.0, 56.0, 58.0])
    better = paired_comparison(seeds(5), a, a + np.array([5.0, 5.5, 6.0, 5.0, 6.5]))
    assert brief(better).startswith("+5.60 points (95% CI +4.79 to +6.41; p = 4.33e-05)")  # sd 0.652, t 2.776
    assert brief(better).endswith("**significant, center loss better**.")
    same = paired_comparison(seeds(5), a, a + np.array([0.1, -0.1, 0.0, 0.1, -0.1]))
    assert brief(same).endswith("**not significant, equivalent within ±1 point**.")
    unsure = paired_comparison(seeds(5), a, a + np.array([4.0, -3.0, 2.0, -1.0, 3.0]))
    assert brief(unsure).endswith("**not significant, and not equivalent within ±1 point**.")
    assert brief(paired_comparison(seeds(1), a[:1], a[:1] + 1)) == headline(paired_comparison(seeds(1), a[:1],
                                                                                              a[:1] + 1))
