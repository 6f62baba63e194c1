"""Successive halving (fgvc/grid/halving.py, the grid key `halving`): the rule on hand-made scores,
its parsing, and a real grid whose survivor equals an uninterrupted run."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from fgvc.grid.benchmark import run_benchmark
from fgvc.config import HALVING, RunConfig, expand_grid, load_grid
from fgvc.errors import FGVCError
from fgvc.grid.halving import Halving, Trial, decide, parse_halving, replay
from fgvc.config import RunOptions
from tiny import TINY


def trial(run_id: str, setting: str, val: list[float], group: str = "m ce", failed: bool = False) -> Trial:
    return Trial(run_id, group, setting, val, failed, epochs=6)


def test_keeps_the_best_half_of_the_settings_by_mean_over_seeds():
    # Four settings x two seeds; means at epoch 2: a 55, b 60, c 50, d 58 -> keep b, d.
    scores = {"a": (50, 60), "b": (59, 61), "c": (50, 50), "d": (57, 59)}
    trials = [trial(f"{s}{k}", s, [0, v[k]]) for s, v in scores.items() for k in (0, 1)]
    d = decide(trials, Halving((2,), 0.5))
    assert d.next_rung is None
    assert sorted(d.alive) == ["b0", "b1", "d0", "d1"]
    assert sorted(d.pruned) == ["a0", "a1", "c0", "c1"]
    p = d.pruned["a0"]
    assert (p.rung, p.score, p.setting_mean, p.rank, p.settings, p.kept) == (2, 50, 55, 3, 4, 2)
    assert "ranked 3 of 4" in p.text() and "55.00" in p.text()


def test_waits_for_every_score_of_a_rung_and_decides_each_method_alone():
    trials = [trial("a0", "a", [1, 2]), trial("b0", "b", [1]),                      # b has not reached epoch 2
              trial("x0", "x", [1, 9], "m center"), trial("y0", "y", [1, 3], "m center")]
    d = decide(trials, Halving((2, 4), 0.5))
    assert d.next_rung == 2 and d.pruned == {} and len(d.alive) == 4
    trials[1].val.append(5)
    d = decide(trials, Halving((2, 4), 0.5))
    assert d.next_rung == 4 and sorted(d.pruned) == ["a0", "y0"] and sorted(d.alive) == ["b0", "x0"]


def test_floor_keeps_at_least_one_and_nine_settings_go_nine_four_two():
    trials = [trial(f"s{i}", f"s{i}", [i, i, i, i]) for i in range(9)]
    d = decide(trials, Halving((1, 2), 0.5))
    assert sorted(d.alive) == ["s7", "s8"]
    assert {d.pruned[f"s{i}"].rung for i in range(5)} == {1} and {d.pruned[f"s{i}"].rung for i in (5, 6)} == {2}
    one = decide([trial("s0", "s0", [1])], Halving((1,), 0.5))
    assert one.alive == ["s0"]


def test_failed_run_ranks_its_setting_last_and_ties_are_broken_by_the_setting():
    trials = [trial("a0", "a", [], failed=True), trial("b0", "b", [40]), trial("c0", "c", [40])]
    d = decide(trials, Halving((1,), 0.5))
    assert d.alive == ["b0"]  # b and c tie; "b" < "c"
    assert math.isinf(d.pruned["a0"].setting_mean) and "failed" in d.pruned["a0"].text()


def test_replay_counts_the_epochs_saved():
    trials = [trial(f"s{i}", f"s{i}", [i] * 6) for i in range(4)]
    d, full, spent = replay(trials, Halving((2,), 0.5))
    assert (full, spent) == (24, 2 * 6 + 2 * 2)
    assert sorted(d.alive) == ["s2", "s3"]


@pytest.mark.parametrize("raw, message", [
    ({"rungs": [20, 10]}, "ascending"), ({"rungs": [0]}, "ascending"), ({"keep": 0.5}, "mapping"),
    ({"rungs": [10], "keep": 1}, "in \\(0, 1\\)"), ({"rungs": [10], "every": 2}, "mapping"), ("yes", "mapping"),
])
def test_bad_halving_is_one_clear_error(raw, message):
    with pytest.raises(FGVCError, match=message) as e:
        parse_halving(raw, "grid.yaml")
    assert "\n" not in str(e.value)


def test_grid_key_and_override(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("methods: [ce]\nval_fraction: 0.25\nhalving: {rungs: [1], keep: 0.5}\n")
    grid = load_grid(path)
    assert grid[HALVING] == Halving((1,), 0.5)
    assert len(expand_grid(grid)) == 1  # not a run key
    assert HALVING not in load_grid(path, {"halving": None})
    assert load_grid(path, {"halving": {"rungs": [2, 3]}})[HALVING] == Halving((2, 3), 0.5)


def opts(data, out, **kw) -> RunOptions:
    return RunOptions(data=data, out=out, progress=False, deterministic=True, **kw)


def test_halving_needs_validation_and_rungs_before_the_end(sparrow_dataset, tmp_path):
    grid = dict(TINY, epochs=3, halving={"rungs": [1]})
    with pytest.raises(FGVCError, match="val_fraction"):
        run_benchmark(None, opts(sparrow_dataset, tmp_path), grid, echo=lambda m: None, dry_run=True)
    with pytest.raises(FGVCError, match="every rung must be < epochs"):
        run_benchmark(None, opts(sparrow_dataset, tmp_path), dict(grid, val_fraction=0.25, halving={"rungs": [3]}),
                      echo=lambda m: None, dry_run=True)
    with pytest.raises(FGVCError, match="one shard cannot see"):
        run_benchmark(None, opts(sparrow_dataset, tmp_path), dict(grid, val_fraction=0.25), echo=lambda m: None,
                      dry_run=True, shard=(0, 2))


@pytest.mark.slow
def test_a_halving_grid_prunes_and_its_survivor_equals_an_uninterrupted_run(sparrow_dataset, tmp_path):
    """Two lrs of CE, one rung at epoch 1 of 3, keep half: one setting is pruned after epoch 1
    (row.json status pruned, its epochs and validation score), the other pauses at the rung,
    resumes and finishes, with the same metrics and predictions as the same run trained in
    one go (--deterministic)."""
    grid = dict(TINY, methods=["ce"], epochs=3, lr=[0.001, 0.05], val_fraction=0.25,
                halving={"rungs": [1], "keep": 0.5})
    lines: list[str] = []
    frame = run_benchmark(None, opts(sparrow_dataset, tmp_path / "halved"), grid, echo=lines.append)
    assert sorted(frame.status) == ["ok", "pruned"], frame.error.tolist()
    pruned = frame[frame.status == "pruned"].iloc[0]
    kept = frame[frame.status == "ok"].iloc[0]
    assert pruned.epochs == 1 and "pruned at epoch 1" in pruned.error
    metrics = pd.read_csv(tmp_path / "halved" / "runs" / pruned.run_id / "metrics.csv")
    assert len(metrics) == 1 and pruned.val_top1 == pytest.approx(metrics.val_top1.iloc[0])
    assert any("paused after epoch 1" in line for line in lines)
    recorded = yaml.safe_load((tmp_path / "halved" / "grid.yaml").read_text())  # the grid, as run
    assert recorded["halving"] == {"rungs": [1], "keep": 0.5} and recorded["lr"] == [0.001, 0.05]
    assert any("halving: training 1 of 1 going-on run(s) to the end" in line for line in lines)

    whole = tmp_path / "whole"
    run_benchmark(None, opts(sparrow_dataset, whole), dict(grid, lr=[kept.lr], halving=None), echo=lambda m: None)
    a = pd.read_csv(whole / "runs" / kept.run_id / "metrics.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "halved" / "runs" / kept.run_id / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    same = "predictions.csv"
    assert (whole / "runs" / kept.run_id / same).read_text() == (tmp_path / "halved" / "runs" / kept.run_id / same).read_text()

    # A rerun trains nothing and keeps the decision; without halving the pruned run trains on.
    again: list[str] = []
    run_benchmark(None, opts(sparrow_dataset, tmp_path / "halved"), grid, echo=again.append)
    assert any("1 run(s) pruned, 1 going on; every rung decided" in line for line in again)
    row = json.loads((tmp_path / "halved" / "runs" / pruned.run_id / "row.json").read_text())
    assert row["status"] == "pruned"
    frame = run_benchmark(None, opts(sparrow_dataset, tmp_path / "halved"), dict(grid, halving=None),
                          echo=again.append)
    assert sorted(frame.status) == ["ok", "ok"]
    assert any("was pruned by successive halving; training it on" in line for line in again)
    assert len(pd.read_csv(tmp_path / "halved" / "runs" / pruned.run_id / "metrics.csv")) == 3


def test_a_worker_leaves_a_run_already_at_the_stages_rung(tmp_path):
    """With --jobs N every worker walks the stage's whole list: a run another worker has trained
    to the rung is left alone, not resumed only to pause again."""
    from fgvc.grid.halving import read_val_curve
    from fgvc.grid.worker import Worker

    cfg = RunConfig(model="test_resnet", epochs=6, val_fraction=0.2).validate()
    run = tmp_path / "runs" / cfg.run_id
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,val_top1\n1,10\n2,20\n3,30\n")
    assert len(read_val_curve(run)) == 3 and len(read_val_curve(tmp_path / "none")) == 0
    trained = []
    for rung in (3, 4):
        Worker(tmp_path, {cfg.run_id: None}, lambda c, claim: trained.append(rung) or {}, print,
               stop_after=rung).work([cfg])
    assert trained == [4]


def test_a_retrained_runs_first_scores_keep_deciding(tmp_path):
    """A run that lost its checkpoint trains again from epoch 1: its first metrics.csv is kept
    (once) as metrics.first.csv, and the rule reads it for the epochs it covers."""
    from fgvc.grid.halving import FIRST_METRICS, decision_curve, keep_first_training

    run = tmp_path / "run"
    run.mkdir()
    assert keep_first_training(run) == 0 and not (run / FIRST_METRICS).exists()  # nothing recorded yet
    (run / "metrics.csv").write_text("epoch,val_top1\n1,10\n2,20\n")
    assert keep_first_training(run) == 2 and not (run / "metrics.csv").exists()
    (run / "metrics.csv").write_text("epoch,val_top1\n1,11\n2,19\n3,33\n")  # the second training, further
    assert decision_curve(run) == [10.0, 20.0, 33.0]
    assert keep_first_training(run) == 0  # a third start keeps the first training's, not the second's
    assert (run / FIRST_METRICS).read_text() == "epoch,val_top1\n1,10\n2,20\n"


@pytest.mark.slow
def test_a_decision_stays_made_when_a_run_trains_again(sparrow_dataset, tmp_path):
    """Two settings whose folders hold a rung score but no checkpoint (a committed copy on a new
    machine): the rule decides on the recorded scores, the survivor trains again from epoch 1,
    and a rerun keeps the same decision whatever its new epoch-1 score is."""
    from fgvc.grid.halving import FIRST_METRICS

    grid = dict(TINY, methods=["ce"], epochs=2, lr=[0.001, 0.05], val_fraction=0.25,
                halving={"rungs": [1], "keep": 0.5})
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    configs = sorted(expand_grid(load_grid(tmp_path / "grid.yaml")), key=lambda c: c.lr)
    kept, pruned = configs[0].run_id, configs[1].run_id  # lr 0.001 recorded best, though it learns slower
    for run_id, val in ((kept, 99.0), (pruned, 0.0)):
        (tmp_path / "out" / "runs" / run_id).mkdir(parents=True)
        (tmp_path / "out" / "runs" / run_id / "metrics.csv").write_text(f"epoch,val_top1\n1,{val}\n")
    elsewhere = "cpu:the machine it trained on x1 threads"  # a worker's device, not the deciding process's
    (tmp_path / "out" / "runs" / pruned / "inputs.json").write_text(json.dumps({"device": elsewhere}))
    tmp_path = tmp_path / "out"
    lines: list[str] = []
    frame = run_benchmark(None, opts(sparrow_dataset, tmp_path), grid, echo=lines.append).set_index("run_id")
    assert frame.status[kept] == "ok" and frame.status[pruned] == "pruned" and frame.device[pruned] == elsewhere
    assert json.loads((tmp_path / "runs" / kept / "inputs.json").read_text())["device"] == frame.device[kept]
    assert any(f"{kept}: no checkpoint to resume its 1 recorded epoch(s) from" in line for line in lines)
    assert (tmp_path / "runs" / kept / FIRST_METRICS).read_text() == "epoch,val_top1\n1,99.0\n"
    assert len(pd.read_csv(tmp_path / "runs" / kept / "metrics.csv")) == 2
    again: list[str] = []
    run_benchmark(None, opts(sparrow_dataset, tmp_path), grid, echo=again.append)
    assert any("1 run(s) pruned, 1 going on; every rung decided" in line for line in again)


@pytest.mark.slow
def test_halving_by_method_takes_each_method_through_every_rung_with_the_same_decisions(sparrow_dataset, tmp_path):
    """--halving-order method: CE's runs reach the end (or are pruned) before center loss's first
    epoch, and every run ends as it does in rung order (the rule ranks within a method)."""
    grid = dict(TINY, methods=["ce", "center"], epochs=2, lr=[0.001, 0.05], val_fraction=0.25,
                halving={"rungs": [1], "keep": 0.5})
    by_rung = run_benchmark(None, opts(sparrow_dataset, tmp_path / "rung"), grid, echo=lambda m: None)
    lines: list[str] = []
    by_method = run_benchmark(None, opts(sparrow_dataset, tmp_path / "method"), grid, echo=lines.append,
                              halving_order="method")
    status = ["run_id", "status", "epochs"]
    pd.testing.assert_frame_equal(by_rung[status].sort_values("run_id").reset_index(drop=True),
                                  by_method[status].sort_values("run_id").reset_index(drop=True))
    assert sorted(by_method.status) == ["ok", "ok", "pruned", "pruned"]
    epochs = [line.split(":")[0] for line in lines if ": epoch " in line]
    methods = ["center" if "-center-" in run else "ce" for run in epochs]
    assert methods == sorted(methods, key=["ce", "center"].index) and len(epochs) == 6  # 2 + 1 epochs per method
    assert any("halving by method: test_resnet center, group 2 of 2 (2 runs)" in line for line in lines)
    with pytest.raises(FGVCError, match="invalid halving order 'seed'"):
        run_benchmark(None, opts(sparrow_dataset, tmp_path / "other"), grid, halving_order="seed")
    assert not (tmp_path / "other").exists()
