"""Grid sharding (`fgvc benchmark --shard I/N`, Slurm job arrays)."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
import yaml
from report_fixtures import make_out
from tiny import TINY

from fgvc.grid.benchmark import run_benchmark
from fgvc.grid.shards import Shard, parse_shard, select_shard, shard_from_env
from fgvc.runs.table import write_runs_csv
from fgvc.cli import main
from fgvc.config import expand_grid, load_grid
from fgvc.errors import FGVCError
from fgvc.report.load import RUNS_COLUMNS, load_runs, sync_runs_csv
from fgvc.report.report import write_report
from fgvc.runs.write import ROW_COLUMNS
from fgvc.config import RunOptions

GRID = dict(TINY, methods=["ce", "center"], seeds=[0, 1, 2], center_weight=[0.001, 0.01], benchmark="shards")


def slurm(task, low, count, step=None, high=None) -> dict[str, str]:
    env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_COUNT": str(count)}
    if step is not None:
        env["SLURM_ARRAY_TASK_STEP"] = str(step)
    if high is not None:
        env["SLURM_ARRAY_TASK_MAX"] = str(high)
    return env


def test_shards_partition_the_grid_in_a_fixed_order():
    configs = expand_grid(load_grid(None, GRID))
    assert len(configs) == 9  # 3 seeds x (1 CE + 2 center)
    parts = [select_shard(configs, (i, 4)) for i in range(4)]
    assert [len(p) for p in parts] == [3, 2, 2, 2]
    assert sorted(c.run_id for p in parts for c in p) == sorted(c.run_id for c in configs)
    assert parts[1] == configs[1::4]
    # another process expands the same grid in the same order
    assert [c.run_id for c in expand_grid(load_grid(None, dict(GRID)))] == [c.run_id for c in configs]
    assert select_shard(configs, None) == configs
    assert select_shard(configs, (0, 1)) == configs
    assert select_shard(configs, (9, 10)) == []  # more shards than runs: nothing to do


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "1", "a/b", "1/2/3", ""])
def test_bad_shard_values(text):
    with pytest.raises(FGVCError, match="invalid --shard") as e:
        parse_shard(text)
    assert "\n" not in str(e.value) and "0 <= I < N" in str(e.value)


def test_parse_shard():
    assert parse_shard("2/5")[:2] == (2, 5) and str(parse_shard(" 0/1 ")) == "0/1"


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    (slurm(0, 0, 4), (0, 4)),
    (slurm(3, 0, 4, step=1, high=3), (3, 4)),
    (slurm(1, 1, 9), (0, 9)),              # --array=1-9
    (slurm(9, 1, 9, high=9), (8, 9)),
    (slurm(5, 1, 5, step=2, high=9), (2, 5)),  # --array=1-9:2 -> tasks 1,3,5,7,9
    (slurm(7, 7, 1), (0, 1)),              # --array=7
])
def test_shard_from_slurm_env(env, expected):
    shard = shard_from_env(env)
    assert (shard[:2] if shard else None) == expected
    if shard:
        assert "Slurm array task" in shard.origin


@pytest.mark.parametrize("env, message", [
    (slurm(4, 1, 5, step=2, high=9), "SLURM_ARRAY_TASK_ID=4 is not in the array 1-9:2"),
    (slurm(0, 1, 9), "SLURM_ARRAY_TASK_ID=0 is not in the array"),
    (slurm(10, 1, 9), "SLURM_ARRAY_TASK_ID=10 is not in the array"),
    (slurm(4, 1, 3, high=5), "not one evenly spaced range"),  # --array=1,4,5
    ({"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_MIN is not set"),
    (slurm("x", 0, 4), "invalid SLURM_ARRAY_TASK_ID='x'"),
    (slurm(0, 0, 4, step=0), "SLURM_ARRAY_TASK_STEP=0"),
])
def test_bad_slurm_env(env, message):
    with pytest.raises(FGVCError, match=message) as e:
        shard_from_env(env)
    assert "\n" not in str(e.value) and "--shard" in str(e.value)


def _yaml(tmp_path, grid: dict) -> str:
    path = tmp_path / "shards.yaml"
    path.write_text(yaml.safe_dump({("name" if k == "benchmark" else k): v for k, v in grid.items()}))
    return str(path)


def test_dry_run_lists_only_the_shard(tmp_path, sparrow_dataset, capsys, monkeypatch):
    grid = _yaml(tmp_path, GRID)
    everything = expand_grid(load_grid(grid))
    base = ["benchmark", grid, "--data", str(sparrow_dataset), "--out", str(tmp_path / "out"), "--dry-run"]
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert main(base + ["--shard", "1/4"]) == 0
    text = capsys.readouterr().out
    assert "shard 1/4 (--shard): 2 of the 9 runs in grid, 0 done, 2 to do" in text
    listed = [line.split()[-1] for line in text.splitlines() if line.startswith("  to do")]
    assert listed == [c.run_id for c in everything[1::4]]
    # the Slurm array default: --array=1-9:2 (5 tasks), task 3 is shard 1/5
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MAX", "9")
    monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "5")
    assert main(base) == 0
    assert "shard 1/5 (Slurm array task 3 of 1-9:2): 2 of the 9 runs" in capsys.readouterr().out
    assert main(base + ["--shard", "0/1"]) == 0  # explicit wins over the array
    assert "shard 0/1 (--shard): 9 of the 9 runs" in capsys.readouterr().out
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: SLURM_ARRAY_TASK_ID=4") and err.count("\n") == 1
    assert main(base + ["--shard", "4/4"]) == 2
    assert "invalid --shard '4/4'" in capsys.readouterr().err


@pytest.mark.slow
def test_two_shards_fill_one_out(tmp_path, sparrow_dataset):
    """Each shard trains only its runs into the shared OUT; runs.csv ends up with both."""
    grid = {**GRID, "seeds": [0], "center_weight": [0.001]}  # 2 runs: ce, center
    out = tmp_path / "out"
    trained: list[str] = []

    def opts() -> RunOptions:
        return RunOptions(data=sparrow_dataset, out=out, progress=False,
                          on_epoch_end=lambda epoch, rec: trained.append(epoch))

    first = run_benchmark(None, opts(), dict(grid), echo=lambda m: None, shard=Shard(0, 2))
    assert list(first.method) == ["ce"] and len(trained) == 1
    second = run_benchmark(None, opts(), dict(grid), echo=lambda m: None, shard=(1, 2))
    assert list(second.method) == ["center"] and len(trained) == 2
    whole = run_benchmark(None, opts(), dict(grid), echo=lambda m: None)  # nothing left to do
    assert sorted(whole.method) == ["ce", "center"] and len(trained) == 2


# --------------------------------------------------------------------------- merging in report
def test_report_merges_rows_a_racing_shard_lost(tmp_path):
    """Two shards rebuilding runs.csv at once can leave it without one's row; the report
    rebuilds it from the row.json files first."""
    out = make_out(tmp_path / "o", seeds=(0, 1), failed=False)
    full = (out / "runs.csv").read_text()
    lines = full.splitlines(keepends=True)
    (out / "runs.csv").write_text("".join(lines[:-1]))  # the last rename lacked a row
    write_report(out)
    merged = pd.read_csv(out / "runs.csv")
    assert len(merged) == len(lines) - 1 and pd.read_csv(out / "summary.csv").n.tolist() == [2, 2]


def test_report_reads_runs_csv_alone(tmp_path):
    """A results folder without runs/ (or without row.json files) is read as it is."""
    out = make_out(tmp_path / "o", seeds=(0, 1), failed=False)
    before = (out / "runs.csv").read_text()
    for p in (out / "runs").glob("*/row.json"):
        p.unlink()
    assert len(load_runs(out)) == 4 and (out / "runs.csv").read_text() == before
    shutil.rmtree(out / "runs")
    assert len(load_runs(out)) == 4 and (out / "runs.csv").read_text() == before


def test_unchanged_runs_csv_is_not_rewritten(tmp_path):
    assert RUNS_COLUMNS == ROW_COLUMNS  # the report rebuilds runs.csv exactly as the runner does
    out = make_out(tmp_path / "o", seeds=(0,), failed=True)
    write_runs_csv(out)
    text = (out / "runs.csv").read_text()
    os.utime(out / "runs.csv", ns=(1, 1))
    sync_runs_csv(out)
    write_runs_csv(out)
    assert (out / "runs.csv").stat().st_mtime_ns == 1 and (out / "runs.csv").read_text() == text
