"""Learning-rate schedules (`lr_schedule`, `warmup_epochs`): values, validation, run ids, training."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml
from report_fixtures import make_out
from tiny import TINY

from fgvc.grid.benchmark import run_benchmark
from fgvc.config import RunConfig, config_from_dict, expand_grid, load_grid, save_config
from fgvc.errors import FGVCError
from fgvc.report.load import group_keys, load_runs
from fgvc.engine.schedule import lr_at
from fgvc.runs.table import write_runs_csv
from fgvc.config import RunOptions


def lrs(**kw) -> list[float]:
    cfg = RunConfig(**kw).validate()
    return [lr_at(cfg, e) for e in range(cfg.epochs)]


def test_constant_is_the_default():
    assert lrs(lr=0.001, epochs=3) == [0.001] * 3


def test_cosine_from_lr_towards_zero():
    got = lrs(lr=0.1, epochs=4, lr_schedule="cosine")
    assert got == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    assert got == pytest.approx([0.1, 0.085355339, 0.05, 0.014644661])


def test_warmup_then_schedule():
    # W = 2: lr/3, 2lr/3, then cosine over the remaining 4 epochs starting at lr
    got = lrs(lr=0.03, epochs=6, warmup_epochs=2, lr_schedule="cosine")
    assert got == pytest.approx([0.01, 0.02, 0.03, 0.03 * 0.5 * (1 + math.cos(math.pi / 4)), 0.015,
                                 0.03 * 0.5 * (1 + math.cos(3 * math.pi / 4))])
    assert lrs(lr=0.02, epochs=3, warmup_epochs=1) == pytest.approx([0.01, 0.02, 0.02])


@pytest.mark.parametrize("overrides, message", [
    ({"lr_schedule": "step"}, "invalid value lr_schedule='step': choose one of constant, cosine"),
    ({"warmup_epochs": -1}, "invalid value warmup_epochs=-1: must be >= 0"),
    ({"warmup_epochs": 5, "epochs": 5}, "invalid value warmup_epochs=5: must be >= 0 and less than epochs=5"),
    ({"warmup_epochs": 1.5}, "invalid value warmup_epochs=1.5: expected int"),
    ({"lr_schedule": 1}, "invalid value lr_schedule=1: expected str"),
])
def test_bad_values(overrides, message):
    with pytest.raises(FGVCError, match=message.replace("(", r"\(")) as e:
        expand_grid(load_grid(None, overrides))
    assert "\n" not in str(e.value)


def test_run_ids_unchanged_at_the_defaults():
    base = dict(benchmark="sparrows-lite0", model="tf_efficientnet_lite0")
    # the ids pinned in tests/test_config.py (committed results)
    assert RunConfig(**base, method="ce", seed=0, lr_schedule="constant",
                     warmup_epochs=0).run_id == "tf_efficientnet_lite0-ce-lam0-s0-d025cd61"
    assert RunConfig(**base, method="center", seed=0).run_id == "tf_efficientnet_lite0-center-lam0.001-s0-1fc48789"
    cosine = RunConfig(**base, method="center", seed=0, lr_schedule="cosine")
    warm = RunConfig(**base, method="center", seed=0, warmup_epochs=2)
    assert len({cosine.run_id, warm.run_id, RunConfig(**base, method="center", seed=0).run_id}) == 3
    # a schedule changes the CE baseline too (unlike the center-loss keys)
    assert RunConfig(**base, method="ce", lr_schedule="cosine").run_id != RunConfig(**base, method="ce").run_id


@pytest.mark.slow
def test_cosine_training_run_logs_its_lr(sparrow_dataset, tmp_path):
    grid = dict(TINY, epochs=2, lr_schedule="cosine")
    frame = run_benchmark(None, RunOptions(data=sparrow_dataset, out=tmp_path, progress=False), grid,
                          echo=lambda m: None)
    assert (frame.status == "ok").all(), frame.error.tolist()
    metrics = pd.read_csv(tmp_path / "runs" / frame.run_id.iloc[0] / "metrics.csv")
    assert metrics.lr.tolist() == pytest.approx([0.01, 0.005])


@pytest.mark.slow
def test_resumed_run_keeps_the_schedule(sparrow_dataset, tmp_path):
    """The lr is set from (config, epoch), not carried in the optimizer: resuming is exact."""
    grid = dict(TINY, epochs=3, lr_schedule="cosine", warmup_epochs=1)

    class Stop(KeyboardInterrupt):
        pass

    def stop_after_first(epoch, rec):
        if epoch == 0:
            raise Stop()

    with pytest.raises(Stop):
        run_benchmark(None, RunOptions(data=sparrow_dataset, out=tmp_path, progress=False,
                                       on_epoch_end=stop_after_first), grid, echo=lambda m: None)
    frame = run_benchmark(None, RunOptions(data=sparrow_dataset, out=tmp_path, progress=False), grid,
                          echo=lambda m: None)
    run_dir = tmp_path / "runs" / frame.run_id.iloc[0]
    assert "resuming after epoch 1" in (run_dir / "train.log").read_text()
    assert pd.read_csv(run_dir / "metrics.csv").lr.tolist() == pytest.approx([0.005, 0.01, 0.005])


def test_report_keeps_schedules_apart(tmp_path):
    """Runs that differ in lr_schedule are separate groups, not extra seeds of one."""
    out = make_out(tmp_path / "o", seeds=(0, 1), failed=False)
    for run_dir in list((out / "runs").glob("*-s1-*")):
        # a seed-1 run trained with the cosine schedule: its own config, and so its own run id
        cfg = config_from_dict({**yaml.safe_load((run_dir / "config.yaml").read_text()), "lr_schedule": "cosine"})
        save_config(cfg, run_dir / "config.yaml")
        row = json.loads((run_dir / "row.json").read_text())
        (run_dir / "row.json").write_text(json.dumps({**row, "run_id": cfg.run_id}))
        run_dir.rename(run_dir.parent / cfg.run_id)
    write_runs_csv(out)
    runs = load_runs(out)
    assert (runs.status == "ok").all()
    assert "lr_schedule" in group_keys(runs)
    assert sorted(runs.lr_schedule) == ["constant", "constant", "cosine", "cosine"]
