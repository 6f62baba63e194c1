"""Recover, don't crash: unreadable checkpoints, weights_only loading, temp files of killed
writes, damaged run folders (benchmark and report both say which and why)."""

from __future__ import annotations

import json
import os
import pickle
import random
import time

import numpy as np
import pandas as pd
import pytest
import torch

from fgvc.grid.benchmark import run_benchmark
from fgvc.cli import main
from fgvc.engine import checkpoint as ckpt
from fgvc.config import RunOptions
from fgvc.runs.table import RUNS_COLUMNS

TINY = {"model": "test_resnet", "pretrained": False, "epochs": 2, "batch_size": 8, "image_size": 32,
        "seeds": [0], "methods": ["ce"], "lr": 0.01, "benchmark": "recovery"}


class Stop(KeyboardInterrupt):
    pass


def _opts(data, out, **kw) -> RunOptions:
    return RunOptions(data=data, out=out, progress=False, deterministic=True, **kw)


def _grid(data, out, grid=None, **kw):
    messages = []
    frame = run_benchmark(None, _opts(data, out, **kw), dict(grid or TINY), echo=messages.append)
    return frame, messages


def _interrupted(data, out, grid=None):
    """A grid cut off after the first epoch of its first run: (run folder, checkpoint path)."""

    def stop(epoch, rec):
        raise Stop()

    with pytest.raises(Stop):
        _grid(data, out, grid, on_epoch_end=stop)
    (run_dir,) = [d for d in (out / "runs").iterdir() if (d / "checkpoint.pt").is_file()]
    return run_dir, run_dir / "checkpoint.pt"


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated"])
def test_unreadable_checkpoint_is_moved_aside_and_the_run_starts_over(sparrow_dataset, tmp_path, damage):
    grid = dict(TINY, seeds=[0, 1])
    run_dir, path = _interrupted(sparrow_dataset, tmp_path, grid)
    data = path.read_bytes()
    bad = {"empty": b"", "garbage": b"this is not a checkpoint\n" * 10, "truncated": data[: len(data) // 2]}[damage]
    path.write_bytes(bad)
    frame, messages = _grid(sparrow_dataset, tmp_path, grid)
    assert (frame.status == "ok").all() and len(frame) == 2  # the grid went on, the run trained from scratch
    (aside,) = run_dir.glob("checkpoint.pt.unreadable-*")
    assert aside.read_bytes() == bad  # moved, never deleted
    said = [m for m in messages if "cannot read its checkpoint" in m]
    assert len(said) == 1 and str(path) in said[0] and aside.name in said[0] and "starting the run over" in said[0]
    assert "resuming" not in (run_dir / "train.log").read_text().split("cannot read")[-1]
    assert ckpt.is_final(path)


def test_checkpoints_load_with_weights_only_and_legacy_rng_states_still_resume(sparrow_dataset, tmp_path):
    whole, _ = _grid(sparrow_dataset, tmp_path / "whole")
    run_dir, path = _interrupted(sparrow_dataset, tmp_path / "cut")
    ck = torch.load(path, weights_only=True)  # torch's own safe loader, no allow-list: the new format
    assert {"numpy", "python", "torch"} <= set(ck["rng"])
    # the format before: numpy's state tuple (an ndarray) and Python's tuples
    ck["rng"] = dict(ck["rng"], numpy=np.random.get_state(), python=random.getstate())
    np.random.seed(123)
    ck["rng"]["numpy"] = np.random.get_state()
    torch.save(ck, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert ckpt.read_checkpoint(path)["epoch"] == 0  # allowed: exactly the numpy globals of that state
    frame, messages = _grid(sparrow_dataset, tmp_path / "cut")
    assert not [m for m in messages if "cannot read" in m]
    assert "resuming after epoch 1" in (run_dir / "train.log").read_text()
    assert frame.status.tolist() == ["ok"]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_a_checkpoint_with_foreign_code_is_refused_not_run(sparrow_dataset, tmp_path):
    run_dir, path = _interrupted(sparrow_dataset, tmp_path)
    ck = torch.load(path, weights_only=True)
    ck["history"] = _Evil(tmp_path / "pwned")
    torch.save(ck, path)
    frame, messages = _grid(sparrow_dataset, tmp_path)
    assert not (tmp_path / "pwned").exists()
    assert frame.status.tolist() == ["ok"] and list(run_dir.glob("checkpoint.pt.unreadable-*"))


def test_temp_files_of_killed_writes_are_cleaned_on_the_next_run(sparrow_dataset, tmp_path):
    run_dir, path = _interrupted(sparrow_dataset, tmp_path)
    left = [run_dir / ".checkpoint.k1ll3d_x.tmp.pt", run_dir / ".metrics.abcdefgh.tmp.csv"]
    for p in left:
        p.write_bytes(b"half a file")
    old_csv = tmp_path / ".runs.csv.q1w2e3r4.tmp"
    young_csv = tmp_path / ".runs.csv.zzzzzzzz.tmp"  # could be another worker's write in progress
    for p in (old_csv, young_csv):
        p.write_text("run_id\n")
    t = time.time() - 3600
    os.utime(old_csv, (t, t))
    frame, messages = _grid(sparrow_dataset, tmp_path)
    assert frame.status.tolist() == ["ok"]
    assert not any(p.exists() for p in left + [old_csv]) and young_csv.exists()
    assert sum("left by an interrupted write" in m for m in messages) == 3


def _damage(runs_dir, run_ids):
    a, b, c, d, e = (runs_dir / r for r in run_ids)
    (a / "row.json").write_text("[]")
    row = json.loads((b / "row.json").read_text())
    (b / "row.json").write_text(json.dumps(dict(row, top1="abc")))
    (c / "metrics.csv").write_bytes(b"\x00\xff garbage\n\x01")
    (d / "predictions.csv").unlink()
    (e / "features.npz").unlink()  # a lean copy keeps feature_metrics.json alone; without it too, damaged
    (e / "feature_metrics.json").unlink()
    return {a.name: "not an object", b.name: "top1 is 'abc'", c.name: "metrics.csv", d.name: "predictions.csv is missing",
            e.name: "features.npz or feature_metrics.json is missing"}


def test_damaged_runs_are_reported_and_trained_again(sparrow_dataset, tmp_path, capsys):
    grid = dict(TINY, epochs=1, seeds=[0, 1, 2, 3, 4, 5])
    frame, _ = _grid(sparrow_dataset, tmp_path, grid)
    healthy = sorted(frame.run_id)[5]
    why = _damage(tmp_path / "runs", sorted(frame.run_id)[:5])
    # runs.csv: never written from a malformed row; the damaged runs say which and why
    assert main(["report", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns[: len(RUNS_COLUMNS)]) == RUNS_COLUMNS and len(runs) == 6
    by = runs.set_index("run_id")
    assert by.loc[healthy, "status"] == "ok"
    for run_id, reason in why.items():
        assert by.loc[run_id, "status"] == "damaged" and reason in by.loc[run_id, "error"], by.loc[run_id, "error"]
        assert f"damaged run {run_id}:" in err and reason in err
    assert pd.isna(by.loc[sorted(why)[0], "top1"]) or by.loc[sorted(why)[0], "top1"] != "abc"
    report = (tmp_path / "report.md").read_text()
    assert "damaged" in report and all(r in report for r in why)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary.n.tolist() == [1]  # only the healthy run counts
    # the benchmark says which and why, and trains them again (their old row.json kept aside)
    frame, messages = _grid(sparrow_dataset, tmp_path, grid)
    assert "1 done, 5 to do" in next(m for m in messages if m.startswith("benchmark "))
    for run_id, reason in why.items():
        assert any(m.startswith(f"  damaged {run_id}:") and reason in m for m in messages)
    assert (frame.status == "ok").all() and len(frame) == 6
    assert list((tmp_path / "runs" / sorted(why)[0]).glob("row.json.damaged-*"))


def test_kill_between_row_and_final_checkpoint_is_repaired(sparrow_dataset, tmp_path, monkeypatch, capsys):
    def killed(*a, **k):
        raise Stop()

    monkeypatch.setattr(ckpt, "save_final", killed)
    with pytest.raises(Stop):
        _grid(sparrow_dataset, tmp_path)
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "row.json").is_file() and ckpt.is_final(run_dir / "checkpoint.pt") is False
    assert main(["validate", str(run_dir), "--no-progress", "--device", "cpu"]) == 2
    assert "unfinished run" in capsys.readouterr().err
    frame, messages = _grid(sparrow_dataset, tmp_path, on_epoch_end=lambda *a: pytest.fail("retrained"))
    assert any("repaired" in m for m in messages) and frame.status.tolist() == ["ok"]
    assert ckpt.is_final(run_dir / "checkpoint.pt")
    assert main(["validate", str(run_dir), "--no-progress", "--device", "cpu"]) == 0


# ------------------------------------------------------------------- issue 30: leftovers, edited or foreign files
def test_a_kill_during_the_final_checkpoint_write_leaves_nothing_after_a_rerun(sparrow_dataset, tmp_path, monkeypatch):
    """Killed while writing the final checkpoint (after row.json): its temporary and the dead
    worker's claim stay behind; the rerun, which finds the run done, removes both."""
    import subprocess
    import sys

    from fgvc.grid import claims

    def killed(path, *a, **k):
        (path.parent / ".checkpoint.k1ll3d_x.tmp.pt").write_bytes(b"half a checkpoint")
        raise Stop()

    monkeypatch.setattr(ckpt, "save_final", killed)
    with pytest.raises(Stop):
        _grid(sparrow_dataset, tmp_path)
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "runs").iterdir()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # the worker that was killed: its pid is gone, its claim is left
    claim = claims.claim_path(tmp_path, run_dir.name)
    claim.write_text(json.dumps(dict(token="killed", pid=proc.pid, host="here", machine=claims.machine_id())))
    frame, messages = _grid(sparrow_dataset, tmp_path, on_epoch_end=lambda *a: pytest.fail("retrained"))
    assert frame.status.tolist() == ["ok"] and ckpt.is_final(run_dir / "checkpoint.pt")
    assert not list(run_dir.glob(".*.tmp*")) and not claim.exists()
    assert any(f"removed the claim of {run_dir.name}, left by a worker that is gone (pid {proc.pid}" in m
               for m in messages), messages
    assert any(f"{run_dir.name}: removed .checkpoint.k1ll3d_x.tmp.pt" in m for m in messages), messages


def test_an_edited_config_makes_a_finished_run_damaged_and_validate_refuses_it(sparrow_dataset, tmp_path, capsys):
    import yaml

    frame, _ = _grid(sparrow_dataset, tmp_path, dict(TINY, epochs=1))
    (run_id,) = frame.run_id
    run_dir = tmp_path / "runs" / run_id
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(cfg, lr=0.5), sort_keys=False))
    assert main(["validate", str(run_dir), "--no-progress", "--device", "cpu", "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"but {run_dir / 'checkpoint.pt'} was trained as {run_id}" in err
    assert main(["report", str(tmp_path)]) == 0
    runs = pd.read_csv(tmp_path / "runs.csv").set_index("run_id")
    assert runs.loc[run_id, "status"] == "damaged" and "config.yaml hashes to run id" in runs.loc[run_id, "error"]
    frame, messages = _grid(sparrow_dataset, tmp_path, dict(TINY, epochs=1))
    assert any(m.startswith(f"  damaged {run_id}: config.yaml hashes to run id") for m in messages), messages
    assert frame.status.tolist() == ["ok"] and yaml.safe_load((run_dir / "config.yaml").read_text())["lr"] == 0.01


def test_features_holding_an_object_array_make_the_run_damaged_not_a_traceback(sparrow_dataset, tmp_path, capsys):
    frame, _ = _grid(sparrow_dataset, tmp_path, dict(TINY, epochs=1))
    (run_id,) = frame.run_id
    path = tmp_path / "runs" / run_id / "features.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["test_labels"] = np.array([{"a": 1}] * len(arrays["test_labels"]), dtype=object)
    np.savez(path, **arrays)
    assert main(["report", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"damaged run {run_id}:" in err and "test_labels is a object array" in err
    assert main(["visualize", str(tmp_path), "--embedding", "tsne"]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["garbage", "zip"])
def test_a_finished_run_whose_checkpoint_does_not_load_is_set_aside_and_trained_again(sparrow_dataset, tmp_path,
                                                                                        damage):
    import zipfile

    frame, _ = _grid(sparrow_dataset, tmp_path, dict(TINY, epochs=1))
    (run_id,) = frame.run_id
    path = tmp_path / "runs" / run_id / "checkpoint.pt"
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint\n" * 10)
    else:  # a whole zip archive that torch cannot load: only a real load finds it
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x02garbage")
            z.writestr("archive/version", b"3\n")
    frame, messages = _grid(sparrow_dataset, tmp_path, dict(TINY, epochs=1))
    said = [m for m in messages if m.startswith(f"  damaged {run_id}:")]
    assert len(said) == 1 and "checkpoint.pt" in said[0] and "trained again" in said[0], messages
    assert frame.status.tolist() == ["ok"] and ckpt.is_final(path)
    assert list(path.parent.glob("checkpoint.pt.unreadable-*")) and list(path.parent.glob("row.json.damaged-*"))
