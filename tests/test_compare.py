"""`fgvc compare`: matching, one-sided and malformed inputs."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fgvc.errors import FGVCError
from fgvc.report.compare import compare


def runs_csv(path, shift=None, drop=(), epochs=30):
    """A runs.csv with 2 methods x 3 seeds (+ a failed row); `shift` maps (method, seed) -> delta."""
    rows = []
    for method, lam, base in (("ce", 0.0, 70.0), ("center", 0.001, 72.0)):
        for seed in (0, 1, 2):
            if (method, seed) in drop:
                continue
            top1 = base + [0.3, -1.1, 0.8][seed] + (shift or {}).get((method, seed), 0.0)
            rows.append(dict(run_id=f"r-{method}-{seed}", benchmark="b", model="resnet50.tv_in1k", weights="timm",
                             method=method, center_weight=lam, center_update="none" if method == "ce" else "learned",
                             seed=seed, epochs=epochs, batch_size=32, lr=0.001, image_size=224, top1=top1,
                             top5=top1 + 15, mean_class_acc=top1 - 1, status="ok", error=""))
    rows.append(dict(run_id="r-bad", benchmark="b", model="resnet50.tv_in1k", weights="timm", method="center",
                     center_weight=0.001, center_update="learned", seed=9, epochs=30, batch_size=32, lr=0.001,
                     image_size=224, status="failed", error="nan"))
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def md_rows(text: str, heading: str) -> list[list[str]]:
    block = text[text.index(heading):]
    block = block[:block.find("\n\n", block.index("|"))]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|") and not line.startswith("|---")][1:]


def test_matching_runs_with_paired_test(tmp_path):
    shift = {("center", 0): 1.0, ("center", 1): 2.5, ("center", 2): 0.4}
    a = runs_csv(tmp_path / "a.csv")
    b = runs_csv(tmp_path / "b.csv", shift=shift)
    text = compare([a, b], out=tmp_path / "cmp.md")
    assert (tmp_path / "cmp.md").read_text() == text
    rows = {r[1]: r for r in md_rows(text, "## [2] vs [1]")}
    assert set(rows) == {"ce", "center"}
    assert rows["ce"][4:6] == ["3", "3"] and rows["ce"][8:10] == ["3", "+0.0"]
    assert "n=3: identical differences (+0.00)" in rows["ce"][-1]
    x = np.array([72.3, 70.9, 72.8])
    y = x + [1.0, 2.5, 0.4]
    p = stats.ttest_rel(y, x).pvalue
    assert float(rows["center"][9]) == pytest.approx(np.mean(y - x), abs=0.05)
    assert f"p={p:.3g}" in rows["center"][-1] and "not significant" in rows["center"][-1]
    assert "seed 9" not in text and "only in" not in text  # failed row ignored, nothing one-sided
    d = y - x
    p_tost = max(stats.ttest_rel(y + 1, x, alternative="greater").pvalue,
                 stats.ttest_rel(y - 1, x, alternative="less").pvalue)
    assert f"TOST ±1: p={p_tost:.3g} (not equivalent)" in rows["center"][-1]
    assert "identical differences (+0.00), no t-test; equivalent within ±1" in rows["ce"][-1]
    assert f"P(improve) {np.mean(d > 0):.2f}" in rows["center"][-1]
    assert "Holm" not in text  # one group with a t-test: no family


def test_compare_uses_the_report_statistics_with_holm_and_margin(tmp_path):
    from fgvc.report.stats import min_detectable_effect

    shift = {("ce", 0): 0.2, ("ce", 1): -0.1, ("ce", 2): 0.05, ("center", 0): 1.0, ("center", 1): 2.5,
             ("center", 2): 0.4}
    a, b = runs_csv(tmp_path / "a.csv"), runs_csv(tmp_path / "b.csv", shift=shift)
    rows = {r[1]: r for r in md_rows(compare([a, b], margin=0.5), "## [2] vs [1]")}
    ps = {}
    for method, base, deltas in (("ce", 70.0, [0.2, -0.1, 0.05]), ("center", 72.0, [1.0, 2.5, 0.4])):
        x = base + np.array([0.3, -1.1, 0.8])
        y = x + deltas
        ps[method] = stats.ttest_rel(y, x).pvalue
        mde = min_detectable_effect(3, float(np.std(deltas, ddof=1)))
        assert f"MDE80 {mde:.2f}" in rows[method][-1]
        assert "TOST ±0.5" in rows[method][-1]
    holm = {m: min(1.0, max(2 * min(ps.values()), max(ps.values()))) if ps[m] == max(ps.values())
            else min(1.0, 2 * ps[m]) for m in ps}
    for method in ps:
        assert f"Holm p={holm[method]:.3g}" in rows[method][-1]
    text = compare([a, b], margin=0.5)
    assert "Holm-adjusted across the 2 groups" in text


def test_one_sided_rows_are_listed(tmp_path):
    a = runs_csv(tmp_path / "a.csv")
    b = runs_csv(tmp_path / "b.csv", drop={("center", 0), ("center", 1), ("center", 2), ("ce", 2)})
    text = compare([a, b])
    rows = {r[1]: r for r in md_rows(text, "## [2] vs [1]")}
    assert rows["center"][4:6] == ["3", "—"] and rows["center"][8:10] == ["—", "—"]
    assert rows["ce"][4:10] == ["3", "2", "70.0", "69.6", "2", "+0.0"]  # the unpaired means differ; Δ is paired
    assert "method=center, center_weight=0.001, center_update=learned: only in [1]" in text
    assert "method=ce, center_weight=0, center_update=none: seed(s) 2 only in [1]" in text


def test_summary_vs_runs_and_three_files(tmp_path):
    a = runs_csv(tmp_path / "a.csv")
    summary = pd.DataFrame([dict(model="resnet50.tv_in1k", weights="timm", method="ce", center_weight=0,
                                 center_update="none", lr=0.001, batch_size=32, epochs=30, image_size=224, n=5,
                                 top1_mean=71.0, top1_std=1.0, top5_mean=85.0, mean_class_acc_mean=70.0),
                            dict(model="tf_efficientnet_lite0", weights="x", method="ce", center_weight=0,
                                 center_update="none", lr=0.001, batch_size=32, epochs=30, image_size=224, n=2,
                                 top1_mean=60.0, top1_std=1.0, top5_mean=80.0, mean_class_acc_mean=59.0)])
    summary.to_csv(tmp_path / "summary.csv", index=False)
    text = compare([a, tmp_path / "summary.csv", runs_csv(tmp_path / "c.csv")])
    rows = md_rows(text, "## [2] vs [1]")
    ce = next(r for r in rows if r[0] == "resnet50.tv_in1k" and r[1] == "ce")
    assert ce[8] == "—" and ce[9] == f"{71.0 - np.mean([70.3, 68.9, 70.8]):+.1f} (unpaired)"
    assert "model=tf_efficientnet_lite0, method=ce" in text and "only in [2]" in text
    assert "no per-seed test is possible" in text
    assert "## [3] vs [1]" in text


def test_malformed_inputs(tmp_path):
    good = runs_csv(tmp_path / "a.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("model,method,accuracy\nm,ce,50\n")
    with pytest.raises(FGVCError, match=r"bad\.csv: not a results CSV: missing columns seed, top1"):
        compare([good, bad])
    summ = tmp_path / "half_summary.csv"
    summ.write_text("model,top1_mean\nm,50\n")
    with pytest.raises(FGVCError, match=r"half_summary\.csv: .*missing columns method, n"):
        compare([good, summ])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FGVCError, match=r"empty\.csv: not a readable CSV"):
        compare([good, empty])
    with pytest.raises(FGVCError, match="missing.csv: file not found"):
        compare([good, tmp_path / "missing.csv"])
    with pytest.raises(FGVCError, match="two or more"):
        compare([good])


def test_compare_cli(tmp_path, capsys):
    from fgvc.cli.report import add_compare_parser

    parser = argparse.ArgumentParser(prog="fgvc")
    add_compare_parser(parser.add_subparsers(dest="command"))
    a, b = runs_csv(tmp_path / "a.csv"), runs_csv(tmp_path / "b.csv")
    args = parser.parse_args(["compare", str(a), str(b), "--out", str(tmp_path / "c.md")])
    assert args.func(args) == 0
    assert capsys.readouterr().out == (tmp_path / "c.md").read_text()
    args = parser.parse_args(["compare", str(a), str(b), "--margin", "2.5"])
    assert args.func(args) == 0 and "equivalent within ±2.5" in capsys.readouterr().out  # identical files
    with pytest.raises(SystemExit):
        parser.parse_args(["compare", str(a), str(b), "--margin", "-1"])


def test_a_subset_of_the_same_runs_pairs_seeds_and_gives_zero(tmp_path):
    """Issue 16: runs.csv against a subset of itself compared a 3-seed mean with one seed."""
    a = runs_csv(tmp_path / "a.csv")
    b = runs_csv(tmp_path / "b.csv", drop={("center", 1), ("center", 2)})
    text = compare([a, b])
    rows = {r[1]: r for r in md_rows(text, "## [2] vs [1]")}
    # n, unpaired top-1 of each side, paired seeds, Δ top-1 / top-5 / mean-class
    assert rows["center"][4:12] == ["3", "1", "72.0", "72.3", "1", "+0.0", "+0.0", "+0.0"]
    assert rows["ce"][8:12] == ["3", "+0.0", "+0.0", "+0.0"]
    assert "n=1: too few matching seeds" in rows["center"][-1]
    assert "seed(s) 1, 2 only in [1]" in text
    assert "unpaired means" in text and "a seed only one file has enters no Δ" in text


def test_on_chooses_the_alignment_keys(tmp_path):
    a = runs_csv(tmp_path / "a.csv", epochs=30)
    b = runs_csv(tmp_path / "b.csv", epochs=2, shift={("ce", 0): -20, ("ce", 1): -20, ("ce", 2): -20,
                                                       ("center", 0): -19, ("center", 1): -21, ("center", 2): -20})
    default = compare([a, b])
    assert "only in [1]" in default and "only in [2]" in default  # epochs differ: nothing aligns
    text = compare([a, b], on=["model", "method"])
    assert "Rows aligned on: model, method (chosen with --on)." in text
    rows = {r[1]: r for r in md_rows(text, "## [2] vs [1]")}
    assert list(rows) == ["ce", "center"] and all(r[6] == "3" for r in rows.values())  # paired seeds
    assert rows["ce"][7] == "-20.0" and rows["center"][7] == "-20.0"
    assert "Not aligned on, and different between the files: epochs ([1]: 30; [2]: 2)" in text
    assert "only in [" not in text
    with pytest.raises(FGVCError, match=r"--on model,colour: .*b\.csv|--on model,colour: .*a\.csv"):
        compare([a, b], on=["model", "colour"])
    with pytest.raises(FGVCError, match="--on seed"):
        compare([a, b], on=["seed"])
    with pytest.raises(FGVCError, match="cannot tell them apart .*--on"):
        compare([a, b], on=["model"])  # ce and center rows of one seed collide


def test_compare_cli_on(tmp_path, capsys):
    from fgvc.cli.report import add_compare_parser

    parser = argparse.ArgumentParser(prog="fgvc")
    add_compare_parser(parser.add_subparsers(dest="command"))
    a, b = runs_csv(tmp_path / "a.csv"), runs_csv(tmp_path / "b.csv", epochs=2)
    args = parser.parse_args(["compare", str(a), str(b), "--on", "model,method,center_weight"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "Rows aligned on: model, method, center_weight (chosen with --on)." in out and "only in [" not in out


def test_metric_val_top1_pairs_validation_not_test(tmp_path):
    """--metric val_top1: the paired statistics read validation top-1 (the test columns only
    shown), so two settings are compared as a sweep would choose between them."""
    a, b = runs_csv(tmp_path / "a.csv"), runs_csv(tmp_path / "b.csv", shift={("center", s): 5.0 for s in (0, 1, 2)})
    # validation moves the other way in b (test +5 on center; validation +5 - 8, 7, 9)
    for path, val_shift in ((a, np.zeros(7)), (b, np.r_[0, 0, 0, -8, -7, -9, 0])):
        df = pd.read_csv(path)
        df["val_top1"] = df.top1 - 10 + val_shift + np.r_[[0.1, -0.2, 0.3] * 2, 0]
        df.loc[df.status != "ok", "val_top1"] = np.nan
        df.to_csv(path, index=False)
    text = compare([a, b], metric="val_top1")
    rows = {r[1]: r for r in md_rows(text, "## [2] vs [1]")}
    header = text[text.index("## [2] vs [1]"):].split("\n")[4]
    assert "validation top-1 [1]" in header and "Δ validation top-1 | Δ test top-1 | Δ top-5" in header
    assert rows["center"][9:11] == ["-3.0", "+5.0"]  # Δ validation, then Δ test (not tested)
    x = pd.read_csv(a).query("method == 'center' and status == 'ok'").val_top1.to_numpy()
    y = pd.read_csv(b).query("method == 'center' and status == 'ok'").val_top1.to_numpy()
    assert f"p={stats.ttest_rel(y, x).pvalue:.3g}" in rows["center"][-1]
    assert "Per seed (validation top-1)" in text and "read validation top-1 (--metric val_top1)" in text
    assert compare([a, b]).count("validation") == 0  # default unchanged: test top-1
    pd.read_csv(a).drop(columns="val_top1").to_csv(tmp_path / "noval.csv", index=False)
    with pytest.raises(FGVCError, match=r"noval.csv: no val_top1 column .*val_fraction > 0"):
        compare([tmp_path / "noval.csv", b], metric="val_top1")
    with pytest.raises(FGVCError, match="unknown metric 'top5'"):
        compare([a, b], metric="top5")
