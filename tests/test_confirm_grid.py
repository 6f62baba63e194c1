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
