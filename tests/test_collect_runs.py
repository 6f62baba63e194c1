"""tools/collect_runs.py: finished, whole runs copied (without checkpoints) into another folder."""

from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd
import pytest
from tiny import TINY

from fgvc.grid.benchmark import run_benchmark
from fgvc.config import RunOptions

TOOL = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "collect_runs.py"))


@pytest.mark.slow
def test_finished_runs_are_collected_and_the_rest_left_out(sparrow_dataset, tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    runs = run_benchmark(None, RunOptions(data=sparrow_dataset, out=src, progress=False),
                         dict(TINY, methods=["ce", "center"]), echo=lambda m: None)
    assert (runs.status == "ok").all()
    first, second = sorted((src / "runs").iterdir())
    assert (first / "checkpoint.pt").is_file()              # its final checkpoint (a garbage one would be damage)
    (src / "runs" / "unfinished-run").mkdir()               # a run still training
    assert TOOL["main"]([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "unfinished-run: not finished" in out and "2 copied or updated" in out
    assert sorted(p.name for p in (dst / "runs").iterdir()) == [first.name, second.name]
    assert not (dst / "runs" / first.name / "checkpoint.pt").exists()
    assert (dst / "runs" / first.name / "predictions.csv").read_bytes() == (first / "predictions.csv").read_bytes()
    table = pd.read_csv(dst / "runs.csv")
    assert sorted(table.run_id) == sorted(runs.run_id) and (table.status == "ok").all()
    # again: nothing to copy; a run damaged at the source is left out and its copy kept
    (second / "predictions.csv").unlink()
    assert TOOL["main"]([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "0 copied or updated" in out and f"{second.name}: damaged" in out
    assert (dst / "runs" / second.name / "predictions.csv").is_file()
    # --partial: a run paused at a halving rung brings its metrics (never a checkpoint)
    paused = src / "runs" / "paused-run"
    paused.mkdir()
    (paused / "metrics.csv").write_text("epoch,val_top1\n1,50\n")
    (paused / "checkpoint.pt").write_bytes(b"weights")
    assert TOOL["main"]([str(src), str(dst), "--partial"]) == 0
    assert "and 1 under way" in capsys.readouterr().out
    assert sorted(p.name for p in (dst / "runs" / "paused-run").iterdir()) == ["metrics.csv"]


def test_bad_folders_are_refused(tmp_path, capsys):
    assert TOOL["main"]([str(tmp_path / "nothing"), str(tmp_path / "dst")]) == 2
    assert "has no runs/ folder" in capsys.readouterr().err
    (tmp_path / "src" / "runs").mkdir(parents=True)
    assert TOOL["main"]([str(tmp_path / "src"), str(tmp_path / "src")]) == 2
