"""`fgvc speed` on the synthetic fixture: both loops run, the CSVs say what was measured."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from tiny import TINY

from fgvc.cli import main
from fgvc.config import RunConfig
from fgvc.speed.measure import (GRID_COLUMNS, RUN_COLUMNS, SPEED_COLUMNS, and_a_short_batch, epoch_seconds,
                                 grid_seconds, run_seconds)


def _args(data, out, grid, *extra):
    return ["speed", "--data", str(data), "--model", "test_resnet", "--no-pretrained", "--batch-size", "4",
            "--image-size", "32", "--train-batches", "2", "--warmup-batches", "1", "--repeats", "2",
            "--workers", "0", "--device", "cpu", "--grid", str(grid), "--out", str(out), *extra]


@pytest.fixture()
def tiny_grid_yaml(tmp_path):
    path = tmp_path / "grid.yaml"
    grid = dict(TINY, methods=["ce", "center"], seeds=[0, 1], epochs=3, batch_size=4)
    # a benchmark YAML names itself `name`; this one trains at the default lr
    path.write_text(yaml.safe_dump({("name" if k == "benchmark" else k): v for k, v in grid.items() if k != "lr"}))
    return path


@pytest.mark.slow
def test_speed_writes_both_pipelines_and_the_grid(sparrow_dataset, tmp_path, tiny_grid_yaml, capsys):
    """Each loop measured in its own (spawned) process, the default."""
    out = tmp_path / "speed"
    assert main(_args(sparrow_dataset, out, tiny_grid_yaml)) == 0
    speed = pd.read_csv(out / "cpu-test_resnet.csv")
    assert list(speed.columns) == SPEED_COLUMNS
    assert list(speed.pipeline) == ["examples", "cached", "fgvc-per-sample"]
    assert (speed.train_img_s > 0).all() and (speed.eval_img_s > 0).all()
    assert speed.epoch_extrapolated.all() and (speed.train_batches_timed == 2).all()
    ref = speed.iloc[0]
    assert ref.speedup_train == 1.0 and ref.speedup_epoch == 1.0
    run = pd.read_csv(out / "cpu-test_resnet-run.csv").set_index("who")
    assert list(pd.read_csv(out / "cpu-test_resnet-run.csv").columns) == RUN_COLUMNS
    assert list(run.index) == ["examples", "cached", "fgvc"] and (run.run_seconds > 0).all()
    assert run.extrapolated.all() and run.loc["cached", "speedup_vs_cached"] == 1.0
    assert run.loc["examples", "speedup_vs_examples"] == 1.0
    grid = pd.read_csv(out / "cpu-test_resnet-grid.csv")
    assert list(grid.columns) == GRID_COLUMNS and list(grid.who) == ["examples", "cached", "fgvc"]
    assert (grid.runs == 4).all() and (grid.epochs == 12).all() and grid.extrapolated.all()
    prov = json.loads((out / "cpu-test_resnet.json").read_text())
    for key in ("git_commit", "device", "torch", "weights", "weights_sha256", "dataset_content_sha256", "measured"):
        assert key in prov
    assert "extrapolated" in capsys.readouterr().out


@pytest.mark.slow
def test_speed_measures_the_grid_for_real(sparrow_dataset, tmp_path, tiny_grid_yaml):
    out = tmp_path / "speed"
    assert main(_args(sparrow_dataset, out, tiny_grid_yaml, "--same-process", "--measure-grid", "--jobs", "2",
                      "--pipeline", "batched")) == 0
    speed = pd.read_csv(out / "cpu-test_resnet.csv")
    assert speed.pipeline.iloc[2] == "fgvc-batched"
    grid = pd.read_csv(out / "cpu-test_resnet-grid.csv").set_index("who")
    assert not grid.loc["fgvc", "extrapolated"] and grid.loc["fgvc", "jobs"] == 2
    assert grid.loc["fgvc", "wall_seconds"] > 0


def test_epoch_seconds_counts_train_and_test():
    res = {"train_img_s": 10.0, "eval_img_s": 100.0}
    assert epoch_seconds(res, 629, 615, 32) == pytest.approx(62.9 + 6.15)
    assert epoch_seconds(res, 33, 0, 32) == pytest.approx(3.2)  # the last batch of one is dropped


def test_run_seconds_counts_what_each_loop_does():
    """examples tests every epoch; cached once; fgvc every eval_every epochs and after the last,
    plus its setup, the train feature pass and its files."""
    res = {"train_img_s": 10.0, "eval_img_s": 100.0, "setup_seconds": 5.0, "artifacts_seconds": 1.0}
    n = {"train": 100, "test": 50, "val": 0}
    recipe = RunConfig(epochs=10, eval_every=5)
    assert run_seconds("examples", res, recipe, n, 32) == pytest.approx(10 * (10 + 0.5))
    assert run_seconds("cached", res, recipe, n, 32) == pytest.approx(5 + 100 + 0.5)
    assert run_seconds("fgvc", res, recipe, n, 32) == pytest.approx(5 + 100 + 2 * 0.5 + 1.0 + 1)
    assert run_seconds("fgvc", res, RunConfig(epochs=10, eval_every=0), n, 32) == pytest.approx(5 + 100 + 0.5 + 2)
    # --compile: the compilation measured in the warm-up is charged to a run alone, or a grid's first;
    # a later run of the grid loads it from the on-disk cache
    compiled = dict(res, compile_seconds=60.0, compile_warm_seconds=4.0)
    assert run_seconds("fgvc", compiled, recipe, n, 32) == pytest.approx(60 + 5 + 100 + 2 * 0.5 + 1.0 + 1)
    assert run_seconds("fgvc", compiled, recipe, n, 32, first=False) == pytest.approx(4 + 5 + 100 + 2 * 0.5 + 1.0 + 1)
    assert grid_seconds("fgvc", compiled, [recipe] * 3, n, 32) == pytest.approx(60 + 2 * 4 + 3 * (5 + 100 + 2 * 0.5 + 1.0 + 1))
    assert grid_seconds("fgvc", res, [recipe] * 3, n, 32) == pytest.approx(3 * (5 + 100 + 2 * 0.5 + 1.0 + 1))


def test_the_warm_up_of_a_compiled_model_ends_with_a_short_batch():
    """A run's epoch ends with a smaller batch, which a compiled model compiles a second graph
    for: the warm-up of `fgvc speed --compile` shows it one, so that compilation is charged too."""
    import torch

    batches = [(torch.zeros(4, 3), torch.arange(4)), (torch.ones(4, 3), torch.arange(4))]
    got = list(and_a_short_batch(iter(batches), 3))
    assert [len(y) for _, y in got] == [4, 4, 3] and bool((got[2][0] == 1).all())
    assert [len(y) for _, y in and_a_short_batch(iter(batches), 0)] == [4, 4]
    assert list(and_a_short_batch(iter([]), 3)) == []


@pytest.mark.slow
def test_speed_charges_the_compilation_once_per_grid(sparrow_dataset, tmp_path, tiny_grid_yaml):
    """`--compile` (tools/speed_options.py, measured in a fresh process): compiled from an empty
    cache, then again from the cache; the grid's 4 runs pay the first once and the second 3 times."""
    import runpy
    from pathlib import Path

    tool = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "speed_options.py"))
    out = tmp_path / "speed"
    assert tool["main"](_args(sparrow_dataset, out, tiny_grid_yaml)[1:] + ["--only", "fp32-compile"]) == 0
    row = pd.read_csv(out / "cpu-test_resnet-options.csv").iloc[0]
    assert row.compile and row.compile_seconds > row.compile_warm_seconds >= 0
    assert row.grid_run_seconds == pytest.approx(row.run_seconds - 0.75 * (row.compile_seconds - row.compile_warm_seconds),
                                                 abs=0.2)


@pytest.mark.slow
def test_speed_compile_measures_eager_and_compiled_side_by_side(sparrow_dataset, tmp_path, tiny_grid_yaml):
    """`fgvc speed --compile`: fgvc eager and compiled in one table; only the compiled row pays
    the compilation, and its grid charges the cold compile once and the warm one to every other run."""
    out = tmp_path / "speed"
    assert main(_args(sparrow_dataset, out, tiny_grid_yaml, "--same-process", "--compile")) == 0
    speed = pd.read_csv(out / "cpu-test_resnet.csv")
    assert list(speed.pipeline) == ["examples", "cached", "fgvc-per-sample", "fgvc-per-sample-compiled"]
    assert "torch.compile" in speed.notes.iloc[3] and "torch.compile" not in speed.notes.iloc[2]
    assert speed.compile_seconds.iloc[:3].isna().all() and speed.compile_warm_seconds.iloc[:3].isna().all()
    assert speed.compile_seconds.iloc[3] >= 0 and speed.compile_warm_seconds.iloc[3] >= 0  # what the grid charges
    run = pd.read_csv(out / "cpu-test_resnet-run.csv").set_index("who")
    assert list(run.index) == ["examples", "cached", "fgvc", "fgvc-compiled"]
    grid = pd.read_csv(out / "cpu-test_resnet-grid.csv").set_index("who")
    assert "compiled by the first run" in grid.loc["fgvc-compiled", "notes"]
    assert "compiled" not in grid.loc["fgvc", "notes"]
    assert grid.loc["fgvc-compiled", "wall_seconds"] < 4 * run.loc["fgvc-compiled", "run_seconds"]


def test_speed_bad_input(sparrow_dataset, tmp_path, tiny_grid_yaml, capsys):
    assert main(_args(sparrow_dataset, tmp_path, tiny_grid_yaml)[:-2] + ["--out", str(tmp_path), "--repeats", "0"]) == 2
    assert "--repeats 0" in capsys.readouterr().err
    assert main(_args(sparrow_dataset, tmp_path, tiny_grid_yaml, "--compile", "--warmup-batches", "0")) == 2
    assert "--compile needs --warmup-batches >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_speed_options_tool_measures_each_option(sparrow_dataset, tmp_path, tiny_grid_yaml):
    import runpy
    from pathlib import Path

    tool = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "speed_options.py"))
    out = tmp_path / "speed"
    argv = _args(sparrow_dataset, out, tiny_grid_yaml, "--same-process")[1:] + ["--only", "fp32,fp32-1-worker"]
    argv[argv.index("test_resnet")] = "test_efficientnet"
    assert tool["main"](argv) == 0
    table = pd.read_csv(out / "cpu-test_efficientnet-options.csv")
    assert list(table.columns) == tool["COLUMNS"] and list(table.option) == ["fp32", "fp32-1-worker"]
    assert list(table.workers) == [0, 1] and (table.train_img_s > 0).all() and (table.run_seconds > 0).all()
    assert table.speedup_vs_fp32.iloc[0] == 1.0
    assert json.loads((out / "cpu-test_efficientnet-options.json").read_text())["options"]["fp32"] == ["--precision",
                                                                                                        "fp32"]
    with pytest.raises(SystemExit):
        tool["main"](["--only", "fp64"])


@pytest.mark.slow
def test_memory_options_tool_measures_each_candidate(sparrow_dataset, tmp_path, tiny_grid_yaml, monkeypatch):
    """tools/memory_options.py: each candidate's mallopt settings in a fresh process, interleaved."""
    import importlib
    from pathlib import Path

    # imported by name, not run_path: the spawned measuring process imports its function from it
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    tool = vars(importlib.import_module("memory_options"))
    out = tmp_path / "memory"
    names = ["fgvc", "glibc-defaults", "mmap-above-128MB-trim-eval"]
    argv = _args(sparrow_dataset, out, tiny_grid_yaml)[1:] + ["--only", ",".join(names), "--rounds", "2",
                                                              "--repeats", "1", "--precision", "fp32"]
    assert tool["main"](argv) == 0
    table = pd.read_csv(out / "cpu-test_resnet-memory.csv")
    assert list(table.columns) == tool["COLUMNS"]
    assert list(table.candidate) == names * 2 and list(table["round"]) == [1, 1, 1, 2, 2, 2]
    assert (table.peak_rss_gb > 0.1).all() and (table.seconds_per_step > 0).all()
    assert table.settings.iloc[1] == "glibc defaults" and "M_TRIM_THRESHOLD" in table.settings.iloc[0]
    assert table.settings.iloc[2].endswith("malloc_trim(0) around evaluation")
    prov = json.loads((out / "cpu-test_resnet-memory.json").read_text())
    assert prov["rounds"] == 2 and set(prov["candidates"]) == set(names)
    with pytest.raises(SystemExit):
        tool["main"](["--only", "jemalloc"])
