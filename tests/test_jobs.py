"""`fgvc benchmark --jobs N`: concurrent runs give the results of runs alone."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from tiny import TINY

from fgvc.grid.benchmark import run_benchmark
from fgvc.errors import FGVCError
from fgvc.config import RunOptions

GRID = dict(TINY, epochs=2, methods=["ce", "center"], benchmark="jobs")
TIMINGS = {"seconds", "train_seconds", "images_per_second"}


def _grid(data, out, jobs: int, echo=lambda m: None) -> pd.DataFrame:
    opts = RunOptions(data=data, out=out, progress=False, deterministic=True)
    return run_benchmark(None, opts, dict(GRID), echo=echo, jobs=jobs)


@pytest.mark.slow
def test_concurrent_runs_equal_runs_alone(sparrow_dataset, tmp_path):
    alone = _grid(sparrow_dataset, tmp_path / "alone", jobs=1)
    lines = []
    together = _grid(sparrow_dataset, tmp_path / "together", jobs=2, echo=lines.append)
    assert (together.status == "ok").all(), together.error.tolist()
    # every worker's per-epoch lines reach the console, each naming the run it comes from
    todo = [line.split()[-1] for line in lines if line.startswith("  to do  ")]
    for run_id in todo:
        for epoch in (1, 2):
            assert any(line.startswith(f"{run_id}: epoch {epoch}/2 loss ") for line in lines), lines
    assert sorted(together.run_id) == sorted(alone.run_id)
    assert not [line for line in lines if line.startswith("worker ")]  # a finished worker is not "stopped"
    for run_id in alone.run_id:
        a, b = tmp_path / "alone" / "runs" / run_id, tmp_path / "together" / "runs" / run_id
        ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
        cols = [c for c in ma.columns if c not in TIMINGS]
        pd.testing.assert_frame_equal(ma[cols], mb[cols])  # identical on CPU with --deterministic
        assert (a / "predictions.csv").read_text() == (b / "predictions.csv").read_text()
        ra, rb = (json.loads((d / "row.json").read_text()) for d in (a, b))
        assert {k: v for k, v in ra.items() if k not in TIMINGS} == {k: v for k, v in rb.items() if k not in TIMINGS}


def test_jobs_must_be_positive(sparrow_dataset, tmp_path):
    with pytest.raises(FGVCError, match="invalid --jobs 0"):
        _grid(sparrow_dataset, tmp_path, jobs=0)
