"""tools/confirm_grid.py: a finished sweep's confirmation grid, written from its choice on validation."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from fgvc.config import expand_grid, load_grid

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "results" / "sweep-lambda-lite0-cpu"


@pytest.fixture()
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    return importlib.import_module("confirm_grid")


def runs_of(path: Path) -> set[str]:
    return {c.run_id for c in expand_grid(load_grid(path))}


@pytest.mark.skipif(not (SWEEP / "runs.csv").is_file(), reason="results/sweep-lambda-lite0-cpu is not here")
def test_the_committed_confirmation_is_what_the_tool_writes(tool, tmp_path):
    """benchmarks/confirm-lite0.yaml was written by hand from the λ sweep's report: same runs."""
    out = tmp_path / "confirm.yaml"
    assert tool.main([str(SWEEP), str(ROOT / "benchmarks" / "sweep-lambda.yaml"), "--name", "confirm-lite0",
                      "--seeds", "5", "6", "7", "8", "9", "--out", str(out)]) == 0
    assert runs_of(out) == runs_of(ROOT / "benchmarks" / "confirm-lite0.yaml")
    assert "selected_from: sweep-lambda-lite0-cpu" in out.read_text()


@pytest.mark.skipif(not (SWEEP / "runs.csv").is_file(), reason="results/sweep-lambda-lite0-cpu is not here")
def test_old_seeds_and_a_sweep_under_way_are_refused(tool, tmp_path):
    grid, out = ROOT / "benchmarks" / "sweep-lambda.yaml", tmp_path / "confirm.yaml"
    with pytest.raises(SystemExit, match=r"--seeds 2: used by the sweep"):
        tool.main([str(SWEEP), str(grid), "--name", "c", "--seeds", "2", "5", "--out", str(out)])
    sweep = tmp_path / "sweep"
    shutil.copytree(SWEEP, sweep, ignore=shutil.ignore_patterns("*.npz", "*.png", "predictions.csv"))
    (sweep / "runs" / "paused").mkdir()
    (sweep / "runs" / "paused" / "metrics.csv").write_text("epoch,val_top1\n1,50\n")
    with pytest.raises(SystemExit, match=r"1 run\(s\) under way: the sweep's choice is not final"):
        tool.main([str(sweep), str(grid), "--name", "c", "--seeds", "5", "--out", str(out)])
    assert not out.exists()


def test_a_halving_sweep_confirms_ce_at_the_label_smoothing_it_chose(tool, tmp_path):
    """The zoo's shape: CE tunes label smoothing, the others λ; halving leaves one setting per
    method among the ended runs. CE's choice (0.1) must reach the confirmation, though no ended
    CE run differs from it (it did confirm CE at the default 0); the methods kept are CE, the best
    three others and any other that beats CE on validation."""
    import sys
    import yaml
    sys.path.insert(0, str(ROOT / "tests"))
    from test_protocol import fabricate

    val = {"ce": (60, 61, 59), "center": (70, 72, 68), "feature_norm": (69, 70, 66), "arcface": (50, 62, 55),
           "supcon": (64, 60, 58), "triplet": (58, 57, 56), "max_entropy": (61, 62.5, 60)}
    knob = lambda m: ("label_smoothing", (0.0, 0.1, 0.2)) if m == "ce" else ("center_weight", (0.1, 0.3, 1.0))
    runs = [dict(method=m, seed=s, lr=0.005, val=v + s, status="ok" if v == max(vs) else "pruned", **{knob(m)[0]: x})
            for m, vs in val.items() for x, v in zip(knob(m)[1], vs) for s in (0, 1)]
    sweep = fabricate(tmp_path / "zoo", runs, benchmark="zoo")
    grid = tmp_path / "zoo.yaml"
    grid.write_text(yaml.safe_dump(dict(name="zoo", model="test_resnet", pretrained=False, seeds=[0, 1], epochs=10,
                                        batch_size=8, lr=0.005, val_fraction=0.2, halving={"rungs": [3], "keep": 0.67},
                                        cases=[{"methods": m, knob(m)[0]: list(knob(m)[1])} for m in val])))
    cases = yaml.safe_load(tool.confirmation_yaml(sweep, grid, "zoo-confirm", [5, 6]))["cases"]
    chosen = {c["methods"]: c.get("label_smoothing", c.get("center_weight")) for c in cases}
    assert chosen == {"ce": 0.1, "center": 0.3, "feature_norm": 0.3, "supcon": 0.1, "arcface": 0.3,
                      "max_entropy": 0.3}
