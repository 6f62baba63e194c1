"""One figure style (issue 28): every function that makes a figure runs under
fgvc.report.style (`@styled`), and the style's palettes are what it promises."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from fgvc.report.figures import curve_panels, forest_figure
from fgvc.report.style import BETTER, OKABE_ITO, RC, WORSE, class_style, distinct_colors, sign_color, to_lab

PACKAGE = Path(__file__).resolve().parents[1] / "fgvc"


def figure_functions() -> list[tuple[str, str, bool]]:
    """(file, function, decorated with styled) for every function that calls Figure(...)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Figure"]
            if calls:
                styled = any(getattr(d, "id", "") == "styled" for d in node.decorator_list)
                found.append((path.relative_to(PACKAGE).as_posix(), node.name, styled))
    return found


def test_every_figure_is_drawn_in_the_one_style():
    found = figure_functions()
    assert len(found) >= 7  # per-class, curves, forest, confusion x2, sensitivity, embeddings, demo
    assert not [f"{f}:{name}" for f, name, styled in found if not styled]


def test_readable_sizes_and_colour_blind_safe_colours():
    assert RC["font.size"] >= 8 and RC["xtick.labelsize"] >= 8
    assert "#2ca02c" not in OKABE_ITO and "#d62728" not in OKABE_ITO  # no red / green pair
    assert sign_color(1.0) == BETTER and sign_color(-1.0) == WORSE and BETTER != WORSE


def test_class_colours_and_markers_keep_21_classes_apart():
    for k in (21, 30):
        lab = to_lab(np.array(distinct_colors(k)))
        assert lab[:, 0].max() <= 75  # no pale colour that vanishes on white
        d = np.linalg.norm(lab[:, None] - lab[None], axis=2)
        np.fill_diagonal(d, np.inf)
        assert d.min() > 25  # CIELAB distance; tab20's light/dark pairs come to about 17
        colors, markers = class_style(k)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        assert markers[i] != markers[j]  # the closest two colours differ in shape too
        assert distinct_colors(k) == distinct_colors(k)
    assert class_style(5)[1] == ["o"] * 5


def test_no_single_dot_test_panel():
    final_only = pd.DataFrame({"epoch": [1, 2, 3], "train_ce": [2.0, 1.0, 0.5], "test_top1": [None, None, 50.0]})
    assert "test_top1" not in [c for c, _, _ in curve_panels({"CE": [final_only]})]
    tested = final_only.assign(test_top1=[30.0, 40.0, 50.0])
    assert "test_top1" in [c for c, _, _ in curve_panels({"CE": [tested]})]


def test_forest_figure_draws_rows_on_one_axis(tmp_path):
    rows = [dict(label="center − CE", diffs=[9.0, 11.0, 10.0], mean=10.0, ci95=(7.5, 12.5), ci90=(8.3, 11.7),
                 boot=(8.0, 12.0)),
            dict(label="feature_norm − CE", diffs=[0.5], mean=0.5, ci95=(np.nan, np.nan), check="")]
    png = forest_figure(rows, "title", tmp_path / "f.png", "difference (points)", margin=1.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fair_sweep_figure_measures_each_method_against_ce_at_its_best_smoothing(tmp_path):
    """A sweep where CE tunes label smoothing and two losses tune λ (benchmarks/fair-lite0.yaml's
    shape): one line per (method, lr), and per lr one CE band, at the smoothing validation prefers."""
    from fgvc.cli import main
    from fgvc.report.sweep import best_ce
    from test_protocol import fabricate

    runs = [dict(method="ce", lr=lr, label_smoothing=ls, seed=s, val=50 + 10 * ls + lr * 100)
            for lr in (0.005, 0.01) for ls in (0.0, 0.1, 0.2) for s in (0, 1, 2)]
    runs += [dict(method=m, lr=lr, center_weight=lam, seed=s, val=55 + lam * 100)
             for m in ("center", "feature_norm") for lr in (0.005, 0.01) for lam in (0.003, 0.01, 0.03)
             for s in (0, 1, 2)]
    out = fabricate(tmp_path / "fair", runs)
    assert main(["report", str(out), "--embeddings", "none"]) == 0
    assert list((out / "figures").glob("sweep_lambda_*.png"))
    table = pd.DataFrame({"method": "ce", "lr": ["0.01"] * 3, "label_smoothing": ["0", "0.1", "0.2"],
                          "val_mean": [50.0, 53.0, 51.0]})
    assert best_ce(table, ["label_smoothing"]).label_smoothing.tolist() == ["0.1"]


def test_a_negative_auxiliary_term_is_drawn_on_a_linear_axis():
    """max_entropy's term is -H(p), below zero: a log axis would leave its panel empty."""
    ce = pd.DataFrame({"epoch": [1, 2], "train_ce": [2.0, 1.0], "train_center": [0.0, 0.0]})
    center = ce.assign(train_center=[3.0, 2.0])
    entropy = ce.assign(train_center=[-2.4, -0.8])
    scale = {c: log for c, _, log in curve_panels({"CE": [ce], "center": [center]})}
    assert scale["train_center"] is True and scale["train_ce"] is False
    scale = {c: log for c, _, log in curve_panels({"CE": [ce], "max_entropy": [entropy]})}
    assert scale["train_center"] is False
