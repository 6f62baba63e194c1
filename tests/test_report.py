"""`fgvc report`: numbers checked against independent scipy / sklearn / numpy computations
on the same fabricated run files (tests/report_fixtures.py)."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import pdist
from sklearn.metrics import silhouette_score

from fgvc.errors import FGVCError
from fgvc.report.load import GROUP_KEYS
from fgvc.report.report import write_report
from fgvc.report.stats import holm, mcnemar_exact, paired_comparison, power_paired, seeds_for_power
from report_fixtures import DATA_SHA, SPARROWS, WEIGHTS_SHA, make_out
from test_paired import scipy_power, scipy_tost, slow_bootstrap

SUMMARY_COLUMNS = GROUP_KEYS + ["n", "top1_mean", "top1_std", "top1_ci95_low", "top1_ci95_high", "top5_mean",
                                "mean_class_acc_mean"]
K = 7


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = make_out(tmp_path_factory.mktemp("bench") / "sparrows", num_classes=K)
    write_report(out)
    return out


def runs_of(out, method):
    runs = pd.read_csv(out / "runs.csv")
    runs = runs[(runs.status == "ok") & (runs.method == method)].sort_values("seed")
    return {int(r.seed): out / "runs" / r.run_id for r in runs.itertuples()}


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 3)
    return md[start:end if end > 0 else None]


def table_rows(text: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    return rows[1:]  # without the header


# --------------------------------------------------------------------------- pure statistics
def test_holm_known_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert len(holm([])) == 0


def test_mcnemar_exact_known_table():
    # b=1, c=9: two-sided exact p = 2 * (C(10,0) + C(10,1)) / 2**10
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)


def test_seeds_for_power_matches_known_values():
    # G*Power, paired t-test, two-tailed alpha 0.05, power 0.8: dz = 1 -> 10 pairs, dz = 0.5 -> 34
    assert seeds_for_power(2.0, 2.0) == 10
    assert seeds_for_power(-1.0, 2.0) == 34
    n = seeds_for_power(1.3, 2.1)
    assert power_paired(n, 1.3 / 2.1) >= 0.8 > power_paired(n - 1, 1.3 / 2.1)
    assert seeds_for_power(0.0, 1.0) is None and seeds_for_power(1.0, 0.0) is None


def test_paired_comparison_degenerate_cases_do_not_crash():
    one = paired_comparison(["0"], [70.0], [72.0])
    assert one.n == 1 and one.mean_diff == pytest.approx(2.0) and math.isnan(one.p_value)
    assert "only 1 seed pair" in one.note
    flat = paired_comparison(["0", "1", "2"], [50.0, 60.0, 70.0], [52.5, 62.5, 72.5])
    assert math.isnan(flat.p_value) and flat.seeds_needed is None and "identical" in flat.note
    none = paired_comparison([], [], [])
    assert none.n == 0 and "nothing to compare" in none.note


# --------------------------------------------------------------------------- report numbers
def test_summary_csv_columns_and_numbers(out):
    assert (out / "group_summary.csv").read_bytes() == (out / "summary.csv").read_bytes()  # new name, old kept
    summary = pd.read_csv(out / "group_summary.csv")
    assert list(summary.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert len(summary) == 2
    for method in ("ce", "center"):
        top1, top5, mca = [], [], []
        for d in runs_of(out, method).values():
            p = pd.read_csv(d / "predictions.csv")
            correct = p.pred == p.label
            top1.append(100 * correct.mean())
            top5.append(100 * np.mean([str(lab) in t.split(";") for lab, t in zip(p.label, p.top5)]))
            mca.append(100 * correct.groupby(p.label).mean().mean())
        row = summary[summary.method == method].iloc[0]
        lo, hi = stats.t.interval(0.95, len(top1) - 1, loc=np.mean(top1), scale=stats.sem(top1))
        assert row.n == 3  # the failed seed-99 run is not counted
        assert row.top1_mean == pytest.approx(np.mean(top1), abs=1e-3)
        assert row.top1_std == pytest.approx(np.std(top1, ddof=1), abs=1e-3)
        assert (row.top1_ci95_low, row.top1_ci95_high) == pytest.approx((lo, hi), abs=1e-3)
        assert row.top5_mean == pytest.approx(np.mean(top5), abs=1e-3)
        assert row.mean_class_acc_mean == pytest.approx(np.mean(mca), abs=1e-3)
        assert (row.top1_min, row.top1_max) == pytest.approx((min(top1), max(top1)), abs=1e-3)
    assert summary.set_index("method").center_weight.to_dict() == {"ce": 0, "center": 0.001}


def test_paired_test_and_mcnemar_in_report(out):
    md = (out / "report.md").read_text()
    ce, ct = runs_of(out, "ce"), runs_of(out, "center")
    a, b, ps, tables = [], [], [], {}
    for s in sorted(ce):
        pa = pd.read_csv(ce[s] / "predictions.csv").set_index("image_id")
        pb = pd.read_csv(ct[s] / "predictions.csv").set_index("image_id").loc[pa.index]
        ra, rb = (pa.pred == pa.label).to_numpy(), (pb.pred == pb.label).to_numpy()
        a.append(100 * ra.mean())
        b.append(100 * rb.mean())
        n01, n10 = int((ra & ~rb).sum()), int((~ra & rb).sum())
        ps.append(stats.binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)
        tables[s] = (n01, n10)
    # Holm by hand, independently of fgvc's implementation
    order = np.argsort(ps)
    adj, running = np.empty(3), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * ps[i]))
        adj[i] = running
    sec = section(md, "Center loss vs CE")
    rows = {int(r[0]): r for r in table_rows(sec)}
    assert sorted(rows) == [0, 1, 2]
    for i, s in enumerate(sorted(ce)):
        r = rows[s]
        assert float(r[1]) == pytest.approx(a[i], abs=0.05) and float(r[2]) == pytest.approx(b[i], abs=0.05)
        assert (int(r[4]), int(r[5])) == tables[s]
        assert float(r[6]) == pytest.approx(ps[i], rel=1e-2) and float(r[7]) == pytest.approx(adj[i], rel=1e-2)
    t = stats.ttest_rel(b, a)
    d = np.array(b) - np.array(a)
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert f"{d.mean():+.2f} points on average" in sec
    assert f"95% CI {lo:+.2f} to {hi:+.2f}" in sec
    assert f"p = {t.pvalue:.3g}" in sec
    verdict = "is statistically significant" if t.pvalue < 0.05 else "is not statistically significant"
    assert verdict in sec
    assert f"would need about {seeds_for_power(d.mean(), d.std(ddof=1))} seeds" in sec
    assert f"{sum(x < 0.05 for x in adj)} of 3 seed pairs" in sec


def per_seed_correctness(out):
    """Per seed: (CE right, center right, label) aligned on image_id, read by hand."""
    ce, ct = runs_of(out, "ce"), runs_of(out, "center")
    triples = []
    for s in sorted(ce):
        pa = pd.read_csv(ce[s] / "predictions.csv").set_index("image_id")
        pb = pd.read_csv(ct[s] / "predictions.csv").set_index("image_id").loc[pa.index]
        triples.append(((pa.pred == pa.label).to_numpy(), (pb.pred == pb.label).to_numpy(), pa.label.to_numpy()))
    return triples


def test_comparisons_csv_matches_independent_computations(out):
    cmp = pd.read_csv(out / "comparisons.csv")
    assert list(cmp.columns[:15]) == ["a", "b", "n_pairs", "mean_diff", "sd_diff", "ci95_low", "ci95_high", "p_ttest",
                                      "p_holm", "boot_ci95_low", "boot_ci95_high", "tost_margin", "tost_p", "mde80",
                                      "p_improve"]
    assert len(cmp) == 1
    row = cmp.iloc[0]
    summary = pd.read_csv(out / "summary.csv", dtype=str, keep_default_na=False)
    names = [";".join(f"{k}={r[k]}" for k in GROUP_KEYS) for _, r in summary.iterrows()]
    assert (row.a, row.b) == (names[0], names[1]) and (row.a_label, row.b_label) == ("CE", "center λ=0.001")
    triples = per_seed_correctness(out)
    a = np.array([100 * x.mean() for x, _, _ in triples])
    b = np.array([100 * y.mean() for _, y, _ in triples])
    d = b - a
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert row.n_pairs == 3 and row.mean_diff == pytest.approx(d.mean(), abs=1e-4)
    assert row.sd_diff == pytest.approx(d.std(ddof=1), abs=1e-4)
    assert (row.ci95_low, row.ci95_high) == pytest.approx((lo, hi), abs=1e-4)
    assert row.p_ttest == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-3) and row.p_holm == row.p_ttest
    assert row.tost_margin == 1.0 and row.tost_p == pytest.approx(scipy_tost(a, b, 1.0)[0], rel=1e-3)
    dz = row.mde80 / d.std(ddof=1)
    assert scipy_power(3, dz) == pytest.approx(0.8, abs=1e-3)
    assert row.p_improve == pytest.approx(np.mean(np.where(d == 0, 0.5, d > 0)))
    assert row.p_improve_all == pytest.approx(np.mean([1.0 if y > x else 0.5 if y == x else 0.0 for x in a for y in b]))
    slow = slow_bootstrap([(x, y) for x, y, _ in triples], 10_000, np.random.default_rng(1))
    sd = slow.std()
    assert row.boot_ci95_low == pytest.approx(np.percentile(slow, 2.5), abs=0.15 * sd)
    assert row.boot_ci95_high == pytest.approx(np.percentile(slow, 97.5), abs=0.15 * sd)
    assert row.boot_seeds == 3 and row.boot_resamples == 10_000 and row.holm_family == 1
    sec = section((out / "report.md").read_text(), "Center loss vs CE")
    assert f"95% interval {row.boot_ci95_low:+.2f} to {row.boot_ci95_high:+.2f} points" in sec
    assert f"against ±1 point): p = {row.tost_p:.3g}" in sec
    assert f"{row.mde80:.2f} points; detecting 1 point would need {int(row.seeds_for_1pt)} seeds" in sec


def test_per_class_intervals(out):
    md = (out / "report.md").read_text()
    rows = table_rows(section(md, "Per-class accuracy"))
    triples = per_seed_correctness(out)
    names = dict(zip(SPARROWS[:K], range(K)))
    for r in rows:
        c = names[r[0]]
        diff = np.mean([100 * (y[lab == c].mean() - x[lab == c].mean()) for x, y, lab in triples])
        assert float(r[4]) == pytest.approx(diff, abs=0.051)
        lo, hi = (float(v) for v in r[5].strip("[]").split(","))
        slow = slow_bootstrap([(x[lab == c], y[lab == c]) for x, y, lab in triples], 2000, np.random.default_rng(c))
        sd = slow.std()
        assert lo == pytest.approx(np.percentile(slow, 2.5), abs=0.3 * sd + 0.05)
        assert hi == pytest.approx(np.percentile(slow, 97.5), abs=0.3 * sd + 0.05)
        assert r[6].startswith("**yes**") == (lo > 0 or hi < 0)
    assert "class intervals exclude zero" in md


def test_compactness_matches_independent_computation(out):
    md = (out / "report.md").read_text()
    rows = {r[0]: r for r in table_rows(section(md, "Feature compactness"))}
    for method, label in (("ce", "CE"), ("center", "center λ=0.001")):
        vals = []
        for d in runs_of(out, method).values():
            z = np.load(d / "features.npz")
            x, y = z["test_features"].astype(np.float32), z["test_labels"]
            tx, ty = z["train_features"].astype(np.float32), z["train_labels"]
            centres = pd.DataFrame(x).groupby(y).mean()
            intra = np.mean([np.linalg.norm(x[i] - centres.loc[y[i]].to_numpy()) for i in range(len(y))])
            ratio = intra / pdist(centres.to_numpy()).mean()
            # cosine k-NN by hand: nearest train features by cosine similarity, majority vote (ties: nearest)
            sim = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (tx / np.linalg.norm(tx, axis=1, keepdims=True)).T
            nn = np.argsort(-sim, axis=1, kind="stable")
            knn1 = 100 * np.mean(ty[nn[:, 0]] == y)
            knn5 = 100 * np.mean([np.bincount(ty[r[:5]], minlength=K).argmax() == lab for r, lab in zip(nn, y)])
            vals.append([ratio, silhouette_score(x, y), silhouette_score(x, y, metric="cosine"), knn1, knn5])
        vals = np.array(vals)
        row = rows[label]
        assert row[1] == "3"
        for j, nd in enumerate((3, 3, 3, 1, 1)):
            mean, sd = (float(v) for v in row[2 + j].split("±"))
            assert mean == pytest.approx(vals[:, j].mean(), abs=0.6 * 10 ** -nd), (label, j)
            assert sd == pytest.approx(vals[:, j].std(ddof=1), abs=0.6 * 10 ** -nd), (label, j)
    ce_ratio, ct_ratio = (float(rows[k][2].split("±")[0]) for k in ("CE", "center λ=0.001"))
    assert ct_ratio < ce_ratio  # the fixture's center runs are more compact


def test_report_content(out):
    md = (out / "report.md").read_text()
    prov = section(md, "Provenance")
    for text in ("resnet50.tv_in1k", WEIGHTS_SHA, DATA_SHA, "torch 2.14.1", "0123abcd" * 5, "cub_sparrows"):
        assert text in prov
    acc = section(md, "Accuracy")
    # the published reference is on 21 sparrow classes; these runs have 7: no reference rows
    assert not [r for r in table_rows(acc) if "published reference" in r[0]]
    assert "No published reference is shown" in acc and "these runs on 7" in acc
    ours = [r for r in table_rows(acc) if r[0] == "this benchmark"]
    assert [r[2] for r in ours] == ["CE", "center λ=0.001"] and all(r[3] == "3" for r in ours)
    assert "73.6" not in (out / "summary.csv").read_text()
    # provenance said once: the hashes and the backbone sentence appear in Provenance only
    assert md.count(WEIGHTS_SHA) == 1 and md.count(DATA_SHA) == 1 and md.count("sha256") == 2
    captions = [line for line in md.splitlines() if line.startswith("*Table") or line.startswith("*Figure")]
    assert len(captions) >= 8
    assert not [c for c in captions if "Backbone" in c or "sha256" in c]
    # class names from classes.json, all classes in the per-class table
    per_class = table_rows(section(md, "Per-class accuracy"))
    assert sorted(r[0] for r in per_class) == sorted(SPARROWS[:K])
    diffs = [float(r[4]) for r in per_class]  # class, images, CE, center, difference, interval, excludes 0
    assert diffs == sorted(diffs, reverse=True)
    # failed runs listed with their error, outside the statistics
    failed = section(md, "Failed or unfinished runs")
    assert "s99" in failed and "non-finite loss (nan) at epoch 2" in failed
    # time table: one row per ok run
    assert len(table_rows(section(md, "Time"))) == 6
    assert "different git commits" not in md
    assert "check" not in section(md, "Summary").lower().replace("checks", "")


def test_summary_block_leads_with_the_answer_and_the_recipe(out):
    md = (out / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Provenance") < md.index("## Accuracy")
    summ = section(md, "Summary")
    assert "**Question:** does adding center loss" in summ
    assert f"on `cub_sparrows` ({K} classes, 40 test images) with `resnet50.tv_in1k`" in summ
    row = pd.read_csv(out / "comparisons.csv").iloc[0]
    answer = next(line for line in summ.splitlines() if line.startswith("- **center λ=0.001 vs CE**"))
    assert "(3 matching seeds)" in answer
    assert f"center minus CE = {row.mean_diff:+.2f} points" in answer
    assert f"95% CI {row.ci95_low:+.2f} to {row.ci95_high:+.2f}" in answer
    assert f"90% interval {row.ci90_low:+.2f} to {row.ci90_high:+.2f} against the ±1 point" in answer
    # the same bold conclusion as the verdict paragraph (fgvc.report.verdicts.conclusion)
    bold = answer[answer.index("**The difference"):].split("**")[1]
    assert bold in section(md, "Center loss vs CE")
    comp = {r[0]: r for r in table_rows(section(md, "Feature compactness"))}
    ratio = [comp[g][2].split(" ±")[0] for g in ("center λ=0.001", "CE")]
    assert (f"- Features, center λ=0.001 vs CE (mean over 3 seeds): centre-distance ratio {ratio[0]} vs {ratio[1]}"
            in summ)
    recipe = {r[0]: r for r in table_rows(summ) if r[0] in ("CE", "center λ=0.001")}
    assert recipe["CE"][1:] == ["result", "3 (0, 1, 2)", "3", "0.001", "SGD, constant lr", "8", "224", "—", "—",
                                "fp32 (not recorded)"]
    assert recipe["center λ=0.001"][8:10] == ["0.001", "learned"]
    assert "Every run: momentum 0.9, weight decay 0.0001" in summ
    assert "predate the `precision` key" in summ
    assert "![Paired differences in test top-1, one row per comparison](figures/paired_seeds_top1.png)" in summ
    assert (out / "figures" / "paired_seeds_top1.png").stat().st_size > 0


def _set_precision(run_dirs, value):
    for d in run_dirs:
        prov = json.loads((d / "provenance.json").read_text())
        if value is None:
            prov.pop("precision", None)
        else:
            prov["precision"] = value
        (d / "provenance.json").write_text(json.dumps(prov))


def test_precision_recorded_mixed_and_different(tmp_path):
    out = make_out(tmp_path / "o", failed=False)
    ce, ct = runs_of(out, "ce"), runs_of(out, "center")
    _set_precision(ce.values(), "bf16")
    _set_precision([ct[0]], "bf16")
    summ = section(write_report(out).read_text(), "Summary")
    recipe = {r[0]: r for r in table_rows(summ) if r[0] in ("CE", "center λ=0.001")}
    assert recipe["CE"][-1] == "bf16" and recipe["center λ=0.001"][-1] == "1 bf16, 2 fp32 (not recorded)"
    assert "**Group center λ=0.001 mixes precisions** (1 bf16, 2 fp32 (not recorded) runs)" in summ
    assert "ran at different precisions" not in summ  # a mixed group is already flagged
    _set_precision(ct.values(), "fp32")
    summ = section(write_report(out).read_text(), "Summary")
    assert "mixes precisions" not in summ
    assert "**center λ=0.001 (fp32) and CE (bf16) ran at different precisions**" in summ
    _set_precision(ce.values(), None)  # unrecorded = fp32: the same precision as recorded fp32
    summ = section(write_report(out).read_text(), "Summary")
    assert "different precisions" not in summ and "mixes precisions" not in summ


def test_check_reason_rules():
    from fgvc.report.summary import check_reason

    assert check_reason(["smoke"], 2, 2, False) == "benchmark `smoke` is a smoke run"
    assert check_reason(["my-check-grid"], 30, 30, True) == "benchmark `my-check-grid` is a check run"
    assert check_reason(["smokey"], 30, 30, False) == ""  # a word of the name, not a substring
    assert check_reason(["sparrows"], 2, 2, True) == "2 epochs, shorter than the published recipe's 30"
    assert check_reason(["sparrows"], 2, 2, False) == ""  # no reference on these classes: a short grid is its own
    assert check_reason(["cub200"], 10, 50, False) == "10 epochs, shorter than this benchmark's 50-epoch runs"
    assert check_reason(["sparrows"], 30, 30, True) == ""


def test_reference_rows_beside_results_on_the_same_classes_only(tmp_path):
    full = make_out(tmp_path / "full", num_classes=21, n_test=42, n_train=42, epochs=30, failed=False)
    acc = section(write_report(full).read_text(), "Accuracy")
    ref = [r for r in table_rows(acc) if "published reference" in r[0]]
    assert [(r[2], r[4]) for r in ref] == [("CE", "73.6"), ("CE + 0.001 × center loss", "75.7")]
    assert "Checks, not results" not in acc
    # a smoke benchmark on the same classes: checks, kept apart from the reference
    smoke = make_out(tmp_path / "smoke", num_classes=21, n_test=42, n_train=42, epochs=2, benchmark="smoke",
                     failed=False)
    md = write_report(smoke).read_text()
    acc = section(md, "Accuracy")
    assert not [r for r in table_rows(acc) if "published reference" in r[0] or r[0] == "this benchmark"]
    checks = table_rows(acc[acc.index("### Checks, not results"):])
    assert [r[0] for r in checks] == ["check: benchmark `smoke` is a smoke run"] * 2
    assert "from the published reference (CE 73.6%, CE + 0.001 × center loss 75.7% after 30 epochs)" in acc
    summ = section(md, "Summary")
    assert "*check, not a result (benchmark `smoke` is a smoke run)*" in summ
    assert "**Every comparison here is a check**" in summ
    assert [r[1] for r in table_rows(summ) if r[0] in ("CE", "center λ=0.001")] == [
        "**check**: benchmark `smoke` is a smoke run"] * 2
    assert "### center λ=0.001 vs CE (check, not a result)" in section(md, "Center loss vs CE")


def test_short_runs_beside_full_ones_are_checks(tmp_path):
    out = make_out(tmp_path / "o", epochs=30, failed=False)
    make_out(out, epochs=2, failed=False)  # the same benchmark, 2 epochs: run folders beside the 30-epoch ones
    md = write_report(out).read_text()
    acc = section(md, "Accuracy")
    ours = [r for r in table_rows(acc) if r[0] == "this benchmark"]
    checks = table_rows(acc[acc.index("### Checks, not results"):])
    assert len(ours) == 2 and len(checks) == 2
    assert all(r[0] == "check: 2 epochs, shorter than this benchmark's 30-epoch runs" for r in checks)
    assert all("epochs=30" in r[2] for r in ours) and all("epochs=2" in r[2] for r in checks)
    answers = [line for line in section(md, "Summary").splitlines() if line.startswith("- **center")]
    assert len(answers) == 2 and sum("*check, not a result" in a for a in answers) == 1
    assert "Every comparison here is a check" not in md


def test_figures_exist_small_and_linked(out):
    md = (out / "report.md").read_text()
    links = [line[line.index("](") + 2:-1] for line in md.splitlines() if line.startswith("![")]
    assert sorted(links) == ["figures/confusion_center-lam0.001_vs_ce.png",
                             "figures/confusion_diff_center-lam0.001_vs_ce.png",
                             "figures/curves_center-lam0.001_vs_ce.png", "figures/paired_seeds_top1.png",
                             "figures/per_class_center-lam0.001_vs_ce.png"]
    for link in links:
        assert not link.startswith("/")
        p = out / link
        assert p.is_file() and 0 < p.stat().st_size < 1_000_000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == sorted(Path(link).name for link in links)


def test_figure_stems_are_readable_with_a_hash_only_for_ties():
    from fgvc.report.markdown import MAX_STEM, key_tag, unique_stems

    assert unique_stems(["center-lam0.001_vs_ce", "center-lam0.01_vs_ce"], [(1,), (2,)]) == [
        "center-lam0.001_vs_ce", "center-lam0.01_vs_ce"]
    tied = unique_stems(["ce", "ce", "center λ"], [("a",), ("b",), ("c",)])
    assert tied == [f"ce-{key_tag(('a',))}", f"ce-{key_tag(('b',))}", "center"]
    long = unique_stems(["x" * (MAX_STEM + 5)], [("k",)])[0]
    assert long == "x" * MAX_STEM + f"-{key_tag(('k',))}"


def test_confusion_difference_matches_counts_by_hand(out):
    from fgvc.report.confusion import top_changes

    triples = []
    for s in sorted(runs_of(out, "ce")):
        a = pd.read_csv(runs_of(out, "ce")[s] / "predictions.csv")
        b = pd.read_csv(runs_of(out, "center")[s] / "predictions.csv")
        triples.append((a, b))
    diff = np.zeros((K, K))
    for a, b in triples:
        for frame, sign in ((a, -1), (b, 1)):
            for lab, pred in zip(frame.label, frame.pred):
                diff[lab, pred] += sign / len(triples)
    top = top_changes(diff, n=5)
    assert top and all(i != j for i, j, _ in top)
    assert [round(abs(v), 9) for _, _, v in top] == sorted((round(abs(v), 9) for _, _, v in top), reverse=True)
    off = np.abs(diff[~np.eye(K, dtype=bool)])
    assert abs(top[0][2]) == pytest.approx(off.max())
    md = (out / "report.md").read_text()
    i, j, v = top[0]
    assert f"Largest changes (images per seed, center λ=0.001 minus CE): {SPARROWS[i]} taken for {SPARROWS[j]} " \
           f"{v:+.1f}" in md


def test_curve_panels_split_ce_and_the_auxiliary_term(out):
    from fgvc.report.figures import curve_panels

    center = [pd.read_csv(d / "metrics.csv") for d in runs_of(out, "center").values()]
    ce = [pd.read_csv(d / "metrics.csv") for d in runs_of(out, "ce").values()]
    assert [c for c, _, _ in curve_panels({"CE": ce, "center": center})] == ["train_ce", "train_center", "test_top1"]
    assert [c for c, _, _ in curve_panels({"CE": ce})] == ["train_ce", "test_top1"]  # no auxiliary term: no panel
    old = [f.drop(columns=["train_ce"]) for f in center]
    assert [c for c, _, _ in curve_panels({"center": old})] == ["train_loss", "train_center", "test_top1"]
    held = [f.assign(val_top1=f.test_top1 - 3) for f in ce]  # a validation split: its own panel
    assert [c for c, _, _ in curve_panels({"CE": held})] == ["train_ce", "val_top1", "test_top1"]
    empty = [f.assign(val_top1=np.nan) for f in ce]  # the column, but no split: no panel
    assert [c for c, _, _ in curve_panels({"CE": empty})] == ["train_ce", "test_top1"]


def test_rerun_is_byte_identical(out):
    before = {n: (out / n).read_bytes() for n in ("report.md", "summary.csv", "comparisons.csv")}
    write_report(out)
    assert {n: (out / n).read_bytes() for n in before} == before
    assert not list(out.glob(".*tmp*")) and not list((out / "figures").glob(".*tmp*"))


def test_figures_the_report_no_longer_links_are_removed(tmp_path, out):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    figs = copy / "figures"
    png = (figs / "paired_seeds_top1.png").read_bytes()
    stale = ["curves_center-lam0.1_vs_ce.png", "sweep_lr.png", "per_class_gone_vs_ce.png"]
    others = ["leaderboard_forest.png", "notes.png"]  # another maker's, and a user's own
    for name in stale + others:
        (figs / name).write_bytes(png)
    (figs / "sweep_lr.csv").write_text("x\n1\n")
    linked_before = sorted((out / "figures").glob("*.png"))
    write_report(copy)
    left = sorted(p.name for p in figs.glob("*.png"))
    assert left == sorted([p.name for p in linked_before] + others)
    assert not (figs / "sweep_lr.csv").exists()
    assert (copy / "report.md").read_text() == (out / "report.md").read_text()


@pytest.mark.slow
def test_report_cli(out):
    from fgvc.cli.report import add_report_parser

    parser = argparse.ArgumentParser(prog="fgvc")
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(out)])
    assert args.func(args) == 0
    for bad in ("0", "-1", "inf", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["report", str(out), "--margin", bad])


def test_margin_option(tmp_path, out):
    from fgvc.cli.report import add_report_parser

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    base = pd.read_csv(out / "comparisons.csv").iloc[0]
    triples = per_seed_correctness(out)
    a = np.array([100 * x.mean() for x, _, _ in triples])
    b = np.array([100 * y.mean() for _, y, _ in triples])
    parser = argparse.ArgumentParser(prog="fgvc")
    add_report_parser(parser.add_subparsers(dest="command"))
    wide = math.ceil(base.equivalence_bound) + 1  # beyond the 90% interval: equivalent
    for margin, equivalent in ((wide, True), (base.equivalence_bound / 2, False)):
        args = parser.parse_args(["report", str(copy), "--margin", str(margin)])
        assert args.func(args) == 0
        row = pd.read_csv(copy / "comparisons.csv").iloc[0]
        assert row.tost_margin == pytest.approx(margin, abs=1e-4)
        assert row.tost_p == pytest.approx(scipy_tost(a, b, margin)[0], rel=1e-3)
        assert (row.tost_p < 0.05) == equivalent
        md = (copy / "report.md").read_text()
        if equivalent:
            assert f"equivalent to zero within ±{wide} points" in md
        else:
            assert f"equivalence only for a margin wider than ±{base.equivalence_bound:.2f} points" in md
    with pytest.raises(FGVCError, match="margin"):
        write_report(copy, margin=0)


def test_identical_runs_give_zero_and_equivalence(tmp_path):
    """Center runs that are copies of the CE runs: difference 0, equivalent at any margin,
    bootstrap interval [0, 0], no class interval excluding zero."""
    out = make_out(tmp_path / "o", failed=False)
    ce, ct = runs_of(out, "ce"), runs_of(out, "center")
    for s in ce:
        shutil.copy(ce[s] / "predictions.csv", ct[s] / "predictions.csv")
        row = json.loads((ct[s] / "row.json").read_text())
        ce_row = json.loads((ce[s] / "row.json").read_text())
        row.update(top1=ce_row["top1"], top5=ce_row["top5"], mean_class_acc=ce_row["mean_class_acc"])
        (ct[s] / "row.json").write_text(json.dumps(row))
    for margin in (0.01, 1.0):
        md = write_report(out, margin=margin).read_text()
        row = pd.read_csv(out / "comparisons.csv").iloc[0]
        assert row.mean_diff == 0 and row.sd_diff == 0 and row.tost_p == 0 and row.p_improve == 0.5
        assert (row.boot_ci95_low, row.boot_ci95_high) == (0, 0)
        assert np.isnan(row.p_ttest) and np.isnan(row.mde80)
        assert "identical" in md and "equivalent to zero within" in md
        assert "0 of 7" not in md and "0 of 5 class intervals exclude zero" in md


# --------------------------------------------------------------------------- other folders
def test_mixed_commits_and_missing_class_names(tmp_path):
    out = make_out(tmp_path / "o", commits=("a" * 40, "b" * 40), classes=False, failed=False)
    md = write_report(out).read_text()
    assert "these runs come from 2 different git commits" in md
    assert "| class 0 |" in md and "Baird_Sparrow" not in md
    assert "## Failed" not in md


def test_the_kinds_of_cpu_the_runs_trained_on_are_named_and_several_warned(tmp_path):
    """provenance.json's cpu_id / cpu_capability (recorded since the commit check found the same
    code and config training differently on two kinds of CPU): one kind is named, two are a warning."""
    out = make_out(tmp_path / "o", classes=False, failed=False)
    provs = sorted((out / "runs").glob("*/provenance.json"))
    for i, path in enumerate(provs):
        prov = json.loads(path.read_text())
        prov.update(cpu_id="AuthenticAMD family 25 model 17 stepping 1", cpu_capability="AVX512" if i else "AVX2")
        path.write_text(json.dumps(prov))
    device = section(write_report(out).read_text(), "Provenance").split("- Device:", 1)[1].split("\n", 1)[0]
    assert "torch kernels AVX2" in device and "torch kernels AVX512" in device and "**2 kinds of CPU**" in device
    for path in provs[:1]:
        path.write_text(path.read_text().replace('"AVX2"', '"AVX512"'))
    device = section(write_report(out).read_text(), "Provenance").split("- Device:", 1)[1].split("\n", 1)[0]
    assert "; CPU AuthenticAMD family 25 model 17 stepping 1, torch kernels AVX512" in device
    assert "kinds of CPU" not in device


@pytest.mark.slow
def test_single_seed_and_lambda_grid(tmp_path):
    out = make_out(tmp_path / "o", seeds=(0,), lambdas=(0.001, 0.01), failed=False)
    md = write_report(out).read_text()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.method) == ["ce", "center", "center"] and list(summary.n) == [1, 1, 1]
    assert summary.top1_std.isna().all() and summary.top1_ci95_low.isna().all()
    assert "— (n < 2)" in section(md, "Accuracy")
    sec = section(md, "Center loss vs CE")
    assert sec.count("### center λ=") == 2 and sec.count("only 1 seed pair") == 2
    assert len(list((out / "figures").glob("per_class_*.png"))) == 2
    cmp = pd.read_csv(out / "comparisons.csv")
    assert len(cmp) == 2 and cmp.p_ttest.isna().all() and cmp.tost_p.isna().all() and (cmp.n_pairs == 1).all()
    assert cmp.boot_ci95_low.notna().all()  # one seed: the bootstrap still resamples its images


def test_lambda_grid_is_holm_adjusted_across_comparisons(tmp_path):
    out = make_out(tmp_path / "o", seeds=(0, 1, 2), lambdas=(0.001, 0.01, 0.1), failed=False)
    md = write_report(out).read_text()
    cmp = pd.read_csv(out / "comparisons.csv")
    assert len(cmp) == 3 and (cmp.holm_family == 3).all()
    assert sorted(p.name for p in (out / "figures").glob("per_class_*.png")) == [
        f"per_class_center-lam{lam}_vs_ce.png" for lam in ("0.001", "0.01", "0.1")]
    assert list(cmp.p_holm) == pytest.approx(list(holm(cmp.p_ttest)), rel=1e-3)
    p = cmp.p_ttest.to_numpy()
    by_hand = [min(1.0, max((3 - r) * p[np.argsort(p)][r] for r in range(rank + 1)))
               for rank in range(3)]
    assert sorted(cmp.p_holm) == pytest.approx(by_hand, rel=1e-3)
    assert "Holm-adjusted across the 3 comparisons" in md and "are Holm-adjusted across them" in md


def test_bad_folders(tmp_path):
    with pytest.raises(FGVCError, match="runs.csv: not found"):
        write_report(tmp_path)
    (tmp_path / "runs.csv").write_text("run_id,model,top1\nx,m,50\n")
    with pytest.raises(FGVCError, match="missing columns method, seed, status"):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_no_ok_runs_still_writes_report(tmp_path):
    out = make_out(tmp_path / "o", seeds=(), failed=True)
    md = write_report(out).read_text()
    assert "No successful runs yet" in md and "non-finite loss" in md
    assert pd.read_csv(out / "summary.csv").empty


def test_missing_artifacts_are_noted(tmp_path):
    """A finished run whose features were deleted is damaged (fgvc/runs/health.py): left out of
    the statistics and listed with the reason; its row.json is not rewritten."""
    out = make_out(tmp_path / "o", seeds=(0, 1), failed=False)
    run = next(iter(runs_of(out, "center").values()))
    (run / "features.npz").unlink()
    shutil.rmtree(out / "figures", ignore_errors=True)
    md = write_report(out).read_text()
    assert f"| {run.name} | center | " in md and "| damaged | features.npz or feature_metrics.json is missing |" in md
    assert pd.read_csv(out / "summary.csv").set_index("method").loc["center", "n"] == 1
    assert json.loads((run / "row.json").read_text())["status"] == "ok"
