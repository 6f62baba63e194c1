"""A lean results folder (issue 26): every run writes feature_metrics.json from its features;
tools/lean_results.py drops or reduces features.npz; the report's numbers stay the same; and no
tracked file under results/ is over 1 MB."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fgvc.config import RunOptions
from fgvc.engine.metrics import compactness
from fgvc.grid.benchmark import run_benchmark
from fgvc.report.report import write_report
from fgvc.runs.read import read_features
from tiny import TINY

ROOT = Path(__file__).resolve().parents[1]
MAX_RESULT_FILE = 1 << 20  # bytes: what a clone and a GPU call carry must stay small


def test_no_tracked_result_file_is_over_1_mb():
    files = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    big = [f"{f} ({(ROOT / f).stat().st_size / 2**20:.1f} MB)" for f in files
           if (ROOT / f).is_file() and (ROOT / f).stat().st_size > MAX_RESULT_FILE]
    assert not big, "tracked results over 1 MB (run tools/lean_results.py on their folder): " + "; ".join(big)


@pytest.fixture(scope="module")
def two_runs(sparrow_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("lean")
    run_benchmark(None, RunOptions(data=sparrow_dataset, out=out, progress=False),
                  dict(TINY, methods=["ce", "center"], seeds=[0, 1]), echo=lambda m: None)
    return out


@pytest.mark.slow
def test_a_run_writes_its_feature_numbers_as_the_report_computes_them(two_runs):
    for run_dir in (two_runs / "runs").iterdir():
        recorded = json.loads((run_dir / "feature_metrics.json").read_text())
        feats = read_features(run_dir)
        assert recorded | compactness(feats) == recorded  # the same numbers, from the stored features
        norm = np.linalg.norm(feats["test_features"], axis=1).mean()
        assert recorded["test_feature_norm"] == pytest.approx(norm, rel=1e-6)


@pytest.mark.slow
def test_lean_copy_reports_the_same_numbers(two_runs, tmp_path):
    full = write_report(two_runs).read_text()
    lean = tmp_path / "lean"
    shutil.copytree(two_runs, lean)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "lean_results.py"), str(lean), "--keep-seeds", "0",
                           "--dims", "4"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    runs = sorted((lean / "runs").iterdir())
    kept = [d for d in runs if (d / "features.npz").is_file()]
    assert len(kept) == 2 and all(read_features(d)["test_features"].shape[1] == 4 for d in kept)
    assert all(json.loads((d / "feature_metrics.json").read_text())["features_npz"] == "pca4-float16" for d in kept)
    md = write_report(lean).read_text()
    section = lambda text: text[text.index("## Feature compactness"):text.index("## Time")]  # noqa: E731
    assert section(md) == section(full)
    assert "2 run(s) keep no features.npz in this copy" in md and "reduced to pca4-float16" in md
    again = subprocess.run([sys.executable, str(ROOT / "tools" / "lean_results.py"), str(lean)], capture_output=True,
                           text=True)
    assert again.returncode == 0 and again.stdout.count("left as it is") == 4  # idempotent


@pytest.mark.slow
def test_lean_before_any_embedding_figure_stops_and_drops_nothing(two_runs, tmp_path):
    """Without --keep-seeds the kept seeds come from the UMAP / t-SNE figures; with none drawn yet
    it would drop every features.npz, so it stops and names the fix instead."""
    lean = tmp_path / "lean"
    shutil.copytree(two_runs, lean)
    shutil.rmtree(lean / "figures", ignore_errors=True)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "lean_results.py"), str(lean)], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "fgvc report" in proc.stderr and "--keep-seeds" in proc.stderr
    assert all((d / "features.npz").is_file() for d in (lean / "runs").iterdir())
    none = subprocess.run([sys.executable, str(ROOT / "tools" / "lean_results.py"), str(lean), "--keep-seeds", ""],
                          capture_output=True, text=True)
    assert none.returncode == 0 and none.stdout.count("features.npz dropped") == 4


def test_old_coordinate_csvs_are_rewritten_a_row_per_image(tmp_path, monkeypatch):
    """Older reports wrote an embedding's coordinates a row per run and image; the lean step
    rewrites them as current reports write them (a row per image, x/y columns per run), the same
    coordinates to three decimals, and leaves other CSVs and rewritten ones alone."""
    import pandas as pd

    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    from lean_results import compact_coordinates

    fig = tmp_path / "figures"
    fig.mkdir()
    rng = np.random.default_rng(0)
    runs = ("m-ce-lam0-s0-aaaa1111", "m-center-lam0.01-s0-bbbb2222")
    panels = [pd.DataFrame(dict(run_id=rid, image_id=[7, 3, 5], label=[0, 1, 1], x=rng.normal(size=3) * 30,
                                y=rng.normal(size=3))) for rid in runs]
    old = pd.concat(panels)
    for name in ("tsne_test_s0_center_vs_ce", "umap_test_s0", "halving_standings"):
        old.to_csv(fig / f"{name}.csv", index=False)
        (fig / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (fig / "umap_test_s0.png").unlink()  # a CSV beside no figure is not an embedding's: left alone
    assert compact_coordinates(tmp_path) == [fig / "tsne_test_s0_center_vs_ce.csv"]
    new = pd.read_csv(fig / "tsne_test_s0_center_vs_ce.csv")
    assert list(new.columns) == ["image_id", "label", "x_m-ce-lam0-s0-aaaa1111", "y_m-ce-lam0-s0-aaaa1111",
                                 "x_m-center-lam0.01-s0-bbbb2222", "y_m-center-lam0.01-s0-bbbb2222"]
    assert new.image_id.tolist() == [7, 3, 5] and new.label.tolist() == [0, 1, 1]
    for p in panels:
        rid = p.run_id.iloc[0]
        assert np.abs(new[f"x_{rid}"].to_numpy() - p.x.to_numpy()).max() <= 5e-4
        assert np.abs(new[f"y_{rid}"].to_numpy() - p.y.to_numpy()).max() <= 5e-4
    for name in ("umap_test_s0", "halving_standings"):
        assert "run_id" in pd.read_csv(fig / f"{name}.csv").columns
    assert compact_coordinates(tmp_path) == []  # idempotent
