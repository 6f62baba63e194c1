"""`fgvc visualize`: both embeddings written, same coordinates on rerun, run selection."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from fgvc.errors import FGVCError
from fgvc.report.visualize import visualize
from report_fixtures import make_out


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return make_out(tmp_path_factory.mktemp("vis") / "o", seeds=(0, 1), num_classes=6, failed=False)


@pytest.mark.slow
def test_umap_and_tsne_written_and_reproducible(out):
    # One test for UMAP: its numba JIT compile is the slow part of this file.
    pngs = visualize(out)
    assert [p.name for p in pngs] == ["umap_test_s0.png", "tsne_test_s0.png"]
    runs = pd.read_csv(out / "runs.csv")
    expected_runs = set(runs[(runs.seed == 0) & (runs.status == "ok")].run_id)
    first = {}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 1_000_000
        coords = pd.read_csv(p.with_suffix(".csv"))
        # one row per test image, an x and a y column per run (panel), in the panels' order
        assert list(coords.columns[:2]) == ["image_id", "label"] and len(coords) == 40
        assert {c.split("_", 1)[1] for c in coords.columns[2:]} == expected_runs
        assert [c.split("_", 1)[0] for c in coords.columns[2:]] == ["x", "y"] * len(expected_runs)
        assert np.isfinite(coords.iloc[:, 2:].to_numpy()).all()
        # ids and labels are those saved in features.npz, in order
        for rid in expected_runs:
            z = np.load(out / "runs" / rid / "features.npz")
            assert (coords.image_id.to_numpy() == z["test_ids"]).all()
            assert (coords.label.to_numpy() == z["test_labels"]).all()
        first[p.name] = p.with_suffix(".csv").read_bytes()
    again = visualize(out)
    assert {p.name: p.with_suffix(".csv").read_bytes() for p in again} == first


def test_train_split_tsne_and_cli(out):
    from fgvc.cli.report import add_visualize_parser

    parser = argparse.ArgumentParser(prog="fgvc")
    add_visualize_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["visualize", str(out), "--seed", "1", "--split", "train", "--embedding", "tsne"])
    assert args.func(args) == 0
    coords = pd.read_csv(out / "figures" / "tsne_train_s1.csv")
    assert len(coords) == 40 and coords.shape[1] == 2 + 2 * 2 and coords.image_id.min() >= 10_000  # train ids


def test_bad_arguments(out):
    with pytest.raises(FGVCError, match="unknown split 'val'"):
        visualize(out, split="val")
    with pytest.raises(FGVCError, match="unknown embedding pca"):
        visualize(out, embeddings=["pca"])
    with pytest.raises(FGVCError, match="no successful run with seed=7.*seeds with ok runs: 0, 1"):
        visualize(out, seed=7, embeddings=["tsne"])
    with pytest.raises(FGVCError, match="has no column 'colour'"):
        visualize(out, embeddings=["tsne"], where={"colour": "red"})


def test_ambiguous_selection_needs_where(tmp_path):
    out = make_out(tmp_path / "o", seeds=(0,), lambdas=(0.001, 0.01), failed=False)
    with pytest.raises(FGVCError, match=r"2 center runs match seed=0.*--where center_weight="):
        visualize(out, seed=0, embeddings=["tsne"])
    # center_weight filters the center run only: the CE baseline (lambda 0) stays in
    pngs = visualize(out, embeddings=["tsne"], where={"center_weight": "1e-2"})
    assert pngs[0].name == "tsne_test_s0_center_weight-1e-2.png"
    coords = pd.read_csv(pngs[0].with_suffix(".csv"))
    runs = [c[2:] for c in coords.columns if c.startswith("x_")]
    assert len(runs) == 2 and any("-center-lam0.01-" in r for r in runs)


def test_report_links_embeddings(out):
    from fgvc.report.report import write_report

    visualize(out, embeddings=["tsne"])
    md = write_report(out).read_text()
    assert "![tsne_test_s0](figures/tsne_test_s0.png)" in md
    assert "coordinates in `figures/tsne_test_s0.csv`" in md


def test_panel_numbers_match_the_compactness_table(out):
    from fgvc.engine.metrics import compactness
    from fgvc.runs.read import read_features
    from fgvc.report.visualize import panel_numbers

    runs = pd.read_csv(out / "runs.csv")
    rid = runs[(runs.seed == 0) & (runs.method == "center")].run_id.iloc[0]
    feats = read_features(out / "runs" / rid)
    nums, ref = panel_numbers(feats, "test"), compactness(feats)
    assert nums["knn5_acc"] == pytest.approx(ref["knn5_acc"])
    assert nums["silhouette_cosine"] == pytest.approx(ref["silhouette_cosine"])
    assert set(panel_numbers(feats, "train")) == {"silhouette_cosine"}  # no train-vs-train k-NN
