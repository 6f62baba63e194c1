"""The full CUB-200 benchmarks: their YAMLs expand, and a dataset with every class can be prepared."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from data_prep.prepare import main as prepare_main
from data_prep.synthetic import CLASSES
from fgvc.config import expand_grid, load_grid
from fgvc.errors import FGVCError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, image_size, schedule", [
    ("cub200", 224, "constant"),
    ("cub200-448-cosine", 448, "cosine"),
])
def test_cub200_grids_expand(name, image_size, schedule):
    runs = expand_grid(load_grid(ROOT / "benchmarks" / f"{name}.yaml"))
    assert len(runs) == 6  # (ce, center) x seeds 0-2
    assert sorted((r.method, r.seed) for r in runs) == [(m, s) for m in ("ce", "center") for s in (0, 1, 2)]
    assert {(r.benchmark, r.model, r.image_size, r.lr_schedule) for r in runs} == {
        (name, "resnet50.tv_in1k", image_size, schedule)}
    assert {r.center_weight for r in runs if r.method == "center"} == {0.001}


def test_published_recipe_unchanged_on_cub200():
    runs = expand_grid(load_grid(ROOT / "benchmarks" / "cub200.yaml"))
    (cfg,) = [r for r in runs if r.method == "ce" and r.seed == 0]
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.momentum, cfg.weight_decay) == (0.001, 32, 30, 0.9, 1e-4)
    assert cfg.warmup_epochs == 0


def test_prepare_all_classes(cub_tree, tmp_path, capsys):
    out = tmp_path / "cub200"
    assert prepare_main(["--out", str(out), "--source", str(cub_tree), "--classes", "all"]) == 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["num_classes"] == len(CLASSES) and info["selection"] == "all"
    assert prepare_main(["--out", str(out), "--source", str(cub_tree), "--classes", "all"]) == 0
    assert "already prepared" in capsys.readouterr().out
    with pytest.raises(FGVCError, match="holds classes 'all', not 'sparrows'"):
        prepare_main(["--out", str(out), "--source", str(cub_tree)])


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_passes_classes():
    cmd = ["make", "-n", "--no-print-directory", "data", "CLASSES=all", "DATA=data/cub200", "CUB=/x"]
    text = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert '--out "data/cub200" --source "/x" --classes "all"' in text
    default = subprocess.run(cmd[:4], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert '--classes "sparrows"' in default
