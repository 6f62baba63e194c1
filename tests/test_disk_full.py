"""A full disk (issue 30, item 5): wherever a run meets ENOSPC, `fgvc benchmark` and `fgvc
train` stop with one line ("no space left on <folder>: free N MB and rerun; finished runs
are kept"), exit 2, leave no half-written file, and record the failed run where there is
still room for it; the rerun resumes."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fgvc.cli import main
from tiny import TINY, tiny_config

GRID = dict(TINY, seeds=[0, 1], epochs=1)


def _fill_disk_while_writing_features(monkeypatch, run_tag: str, stays_full: bool) -> None:
    """The disk fills while `features.npz` of the run whose id holds `run_tag` is written (half
    of it is on disk); with `stays_full`, every later fsync'd write (row.json, runs.csv,
    claims) meets ENOSPC too."""
    real_savez, real_fsync = np.savez_compressed, os.fsync
    full = []

    def savez(file, *args, **arrays):
        if run_tag in Path(file).parent.name:
            Path(file).write_bytes(b"half an npz")
            full.append(stays_full)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_savez(file, *args, **arrays)

    def fsync(fd):
        if any(full):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(np, "savez_compressed", savez)
    monkeypatch.setattr(os, "fsync", fsync)


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


@pytest.mark.parametrize("stays_full", [False, True])
def test_a_full_disk_stops_the_benchmark_in_one_line(sparrow_dataset, tmp_path, monkeypatch, capsys, stays_full):
    grid, out = tmp_path / "grid.yaml", tmp_path / "out"
    grid.write_text(yaml.safe_dump(GRID))
    argv = ["benchmark", str(grid), "--data", str(sparrow_dataset), "--out", str(out), "--no-progress"]
    _fill_disk_while_writing_features(monkeypatch, "-s1-", stays_full)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: no space left on {out}: free ") and err.count("\n") == 1, err
    assert err.rstrip().endswith(" MB and rerun; finished runs are kept") and "Traceback" not in err
    assert not _temps(out), _temps(out)  # nothing half-written
    runs = pd.read_csv(out / "runs.csv")
    s1 = next((out / "runs").glob("*-s1-*"))
    if stays_full:  # no room for the record: runs.csv keeps what it had, the run resumes next time
        assert runs.status.tolist() == ["ok"] and not (s1 / "row.json").exists()
    else:  # the record, where there was room for it
        row = json.loads((s1 / "row.json").read_text())
        assert row["status"] == "failed" and row["error"].startswith(f"FGVCError: no space left on {out}")
        assert sorted(runs.status) == ["failed", "ok"]
    monkeypatch.undo()
    assert main(argv) == 0  # space freed: the rerun finishes the run, the finished one is kept
    assert (pd.read_csv(out / "runs.csv").status == "ok").all() and "resuming after epoch 1" in (
        s1 / "train.log").read_text()


def test_a_full_disk_stops_train_in_one_line(sparrow_dataset, tmp_path, monkeypatch, capsys):
    config, out = tmp_path / "one.yaml", tmp_path / "out"
    config.write_text(yaml.safe_dump(tiny_config()))
    _fill_disk_while_writing_features(monkeypatch, "-s0-", True)
    assert main(["train", "--config", str(config), "--data", str(sparrow_dataset), "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: no space left on " in err and "finished runs are kept" in err
    assert not _temps(out)


def test_a_checkpoint_write_torch_cannot_finish_on_a_full_disk_is_enospc(tmp_path, monkeypatch):
    """torch.save says only RuntimeError ("file write failed"); with less room than the tensors
    need it is a full disk, otherwise the RuntimeError it was."""
    import torch

    from fgvc.engine import checkpoint as ckpt

    def fails(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", fails)
    model = torch.nn.Linear(100, 10)
    monkeypatch.setattr(ckpt, "free_mb", lambda folder: 0)
    with pytest.raises(OSError) as e:
        ckpt.save_final(tmp_path / "checkpoint.pt", "run", 0, model, None)
    assert e.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())
    monkeypatch.setattr(ckpt, "free_mb", lambda folder: 10_000)
    with pytest.raises(RuntimeError, match="file write failed"):
        ckpt.save_final(tmp_path / "checkpoint.pt", "run", 0, model, None)


def test_a_jobs_worker_that_meets_a_full_disk_stops_the_grid_with_its_line():
    """A --jobs worker sends its one-line error; the parent stops relaying and raises it (the
    workers themselves run in spawned processes, beyond monkeypatch)."""
    import multiprocessing

    from fgvc.grid.pool import _relay

    recv, send = multiprocessing.Pipe(duplex=False)
    for msg in (("line", "epoch 1"), ("error", "no space left on out: free 3 MB and rerun; finished runs are kept"),
                ("line", "never shown")):
        send.send(msg)
    send.close()  # the worker has exited
    shown = []
    assert _relay([recv], shown.append, 2) == "no space left on out: free 3 MB and rerun; finished runs are kept"
    assert shown == ["epoch 1"]
