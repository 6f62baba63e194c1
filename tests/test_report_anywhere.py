"""Regenerate anything, anywhere (issue 28): `fgvc report` (and `make report`) draws every
figure it links, UMAP / t-SNE included, on any results folder, choosing the runs itself
(fgvc/report/embedding_pick.py) and saying which."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fgvc.cli import main
from fgvc.report.embedding_pick import pick_embeddings
from fgvc.report.load import load_runs
from fgvc.report.visualize import visualize
from report_fixtures import make_out

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent for p in (ROOT / "results").glob("*/runs.csv"))


def _drop_features(out: Path, method: str, seed: int) -> None:
    runs = pd.read_csv(out / "runs.csv")
    for rid in runs[(runs.method == method) & (runs.seed == seed)].run_id:
        (out / "runs" / rid / "features.npz").unlink(missing_ok=True)


def test_the_first_seed_with_features_in_every_run_is_drawn(tmp_path):
    out = make_out(tmp_path / "o", seeds=(0, 1, 2), failed=False)
    picks, missing = pick_embeddings(load_runs(out))
    assert [p.seed for p in picks] == ["0"] and not missing and picks[0].suffix == ""
    assert [r.method for r in picks[0].runs] == ["ce", "center"]
    _drop_features(out, "ce", 0)  # a lean copy keeps features for some seeds only
    picks, _ = pick_embeddings(load_runs(out))
    assert picks[0].seed == "1" and "seed 1, the first seed with saved features in every run" in picks[0].why
    for seed in (1, 2):
        _drop_features(out, "center", seed)
    picks, missing = pick_embeddings(load_runs(out))
    assert not picks and "no seed with features.npz in every run" in missing[0]


def test_one_figure_per_compared_pair(tmp_path):
    out = make_out(tmp_path / "o", seeds=(0,), lambdas=(0.001, 0.01), failed=False)
    pngs = visualize(out, embeddings=["tsne"])  # no --seed, no --where: picked, not ambiguous
    assert sorted(p.name for p in pngs) == ["tsne_test_s0_center-lam0.001_vs_ce.png",
                                           "tsne_test_s0_center-lam0.01_vs_ce.png"]


def test_a_sweep_draws_each_method_at_its_chosen_setting(tmp_path):
    out = make_out(tmp_path / "o", seeds=(0, 1), lambdas=(0.001, 0.01), failed=False)
    for row_file in (out / "runs").glob("*/row.json"):
        row = json.loads(row_file.read_text())
        row["val_top1"] = {"ce": 55.0, 0.001: 60.0, 0.01: 70.0}[row["method"] if row["method"] == "ce"
                                                               else float(row["center_weight"])]
        row_file.write_text(json.dumps(row))
    (out / "runs.csv").unlink()  # rebuilt from the row.json files
    picks, _ = pick_embeddings(load_runs(out))
    assert len(picks) == 1 and "chosen on validation" in picks[0].why
    assert [str(r.center_weight) for r in picks[0].runs if r.method == "center"] == ["0.01"]


def test_report_draws_and_explains_its_embeddings(tmp_path, capsys):
    out = make_out(tmp_path / "o", seeds=(0, 1), failed=False)
    assert main(["report", str(out), "--embeddings", "tsne"]) == 0
    md = (out / "report.md").read_text()
    assert "![tsne_test_s0](figures/tsne_test_s0.png)" in md and "- CE vs center" in md
    assert not list((out / "figures").glob("umap_*"))
    assert main(["report", str(out), "--embeddings", "pca"]) == 2
    assert "unknown embedding pca" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("folder", COMMITTED, ids=[p.name for p in COMMITTED])
def test_make_report_on_a_copy_of_every_committed_folder(folder, tmp_path):
    """Every committed folder regenerates: the report, and every figure it links exists."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    for f in list(copy.glob("report.md")) + list(copy.glob("figures/*.png")):
        f.unlink()
    assert main(["report", str(copy), "--embeddings", "tsne"]) == 0  # UMAP's JIT: test_visualize
    md = (copy / "report.md").read_text()
    linked = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert all((copy / f).is_file() for f in linked)
    assert linked or "No successful runs yet" in md  # a sweep still at its first rung has none
    assert (copy / "group_summary.csv").read_bytes() == (copy / "summary.csv").read_bytes()
