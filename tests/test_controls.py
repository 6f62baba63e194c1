"""A loss against its mechanism control (issue 25 (b)): center loss beside feature_norm, its
centres held at zero, paired by seed in the report, its summary and comparisons.csv."""

from __future__ import annotations

import pandas as pd
import pytest

from fgvc.losses.registry import controls
from fgvc.report.inputs import load_inputs
from fgvc.report.report import write_report
from test_protocol import fabricate

SEEDS = (5, 6, 7)


def test_feature_norm_is_the_control_of_center_loss():
    assert controls() == {"center": "feature_norm"}


def test_the_control_with_the_same_lambda_is_chosen_in_a_sweep(tmp_path):
    """Several control groups: the one equal on every setting, λ included, is the pair."""
    out = fabricate(tmp_path / "sweep", [dict(method=m, lr=0.01, center_weight=lam, seed=s)
                                         for m in ("center", "feature_norm") for lam in (0.01, 0.03) for s in (0, 1)])
    x = load_inputs(out)
    pairs = sorted((float(p.groups[1].values["center_weight"]), float(p.groups[0].values["center_weight"]))
                   for p in x.controls)
    assert pairs == [(0.01, 0.01), (0.03, 0.03)]
    assert all(p.groups[0].method == "feature_norm" and p.groups[1].method == "center" for p in x.controls)


def test_no_control_pair_where_the_match_is_ambiguous_or_absent(tmp_path):
    out = fabricate(tmp_path / "a", [dict(method="center", lr=0.01, center_weight=0.01, seed=s) for s in SEEDS]
                    + [dict(method="feature_norm", lr=lr, center_weight=0.03, seed=s) for lr in (0.005, 0.02)
                       for s in SEEDS])
    assert load_inputs(out).controls == []  # two feature_norm settings, neither equal to center's
    out = fabricate(tmp_path / "b", [dict(method=m, lr=0.01, center_weight=0.01, seed=s)
                                     for m in ("center", "supcon") for s in SEEDS])
    assert load_inputs(out).controls == []


@pytest.mark.slow
def test_a_confirmation_pairs_center_loss_with_its_control(tmp_path):
    """Each method at its own chosen setting (different λ and lr): the one feature_norm group is
    center loss's control; the report words it as 'center minus feature-norm' and Holm counts it."""
    top1 = {"ce": [50.0, 54.2, 45.8], "center": [75.0, 83.3, 70.8], "feature_norm": [54.2, 62.5, 45.8]}
    setting = {"ce": dict(lr=0.01), "center": dict(lr=0.01, center_weight=0.01),
               "feature_norm": dict(lr=0.005, center_weight=0.03)}
    out = fabricate(tmp_path / "conf", [dict(method=m, seed=s, top1=t, **setting[m]) for m, values in top1.items()
                                        for s, t in zip(SEEDS, values)], val_fraction=0.0)
    md = write_report(out).read_text()
    summary = md[md.index("## Summary"):md.index("\n## ", md.index("## Summary") + 3)]
    assert "**Mechanism control**" in summary
    assert "**center λ=0.01 (lr=0.01) vs feature_norm λ=0.03 (lr=0.005)** (3 matching seeds): center minus " \
           "feature-norm = +22.22 points" in summary
    section = md[md.index("## Mechanism controls"):]
    assert "### center λ=0.01 (lr=0.01) vs feature_norm λ=0.03 (lr=0.005)" in section
    assert "center loss beats feature-norm in 3 of 3 seed pairs" in section
    assert "Holm-adjusted across the 3 comparisons of this report" in md
    comparisons = pd.read_csv(out / "comparisons.csv")
    control = comparisons[comparisons.a.str.contains("method=feature_norm") & comparisons.b.str.contains("center")]
    assert len(comparisons) == 3 and len(control) == 1
    assert control.mean_diff.iloc[0] == pytest.approx(22.22, abs=0.01) and control.holm_family.iloc[0] == 3


def test_figure_names_give_each_method_its_own_tuned_setting(tmp_path):
    """A confirmation trains each method at its own lr: a panel's file name puts each group's lr
    after its own name where they differ (`..._vs_ce_lr-0.01` misnamed CE's 0.005), at the end where shared."""
    setting = {"ce": dict(lr=0.005), "center": dict(lr=0.005, center_weight=0.03),
               "feature_norm": dict(lr=0.01, center_weight=0.01)}
    out = fabricate(tmp_path / "conf", [dict(method=m, seed=s, **kw) for m, kw in setting.items() for s in SEEDS],
                    val_fraction=0.0)
    slugs = sorted(p.slug for p in load_inputs(out).panels)
    assert slugs == ["center-lam0.03_vs_ce_lr-0.005", "feature_norm-lam0.01_lr-0.01_vs_ce_lr-0.005"]
