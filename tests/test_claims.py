"""Work-queue claims (fgvc/grid/claims.py): atomic, exclusive, dead holders taken over."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from fgvc.grid import claims
from fgvc.grid.claims import Claim, Holder, claim_path, read_holder, try_claim
from fgvc.io import clean_temps


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_claim(out, run_id, age_s=0.0, **record):
    path = claim_path(out, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(token="theirs", **record)))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_claim_is_exclusive_and_released(tmp_path):
    mine = try_claim(tmp_path, "run-a")
    assert isinstance(mine, Claim) and mine.took_over is None
    record = json.loads(claim_path(tmp_path, "run-a").read_text())
    assert record["pid"] == os.getpid() and record["host"] and record["token"] == mine.token
    other = try_claim(tmp_path, "run-a")  # a second worker (same process here: still a live holder)
    assert isinstance(other, Holder) and other.token == mine.token
    assert f"pid {os.getpid()}" in other.describe()
    mine.release()
    assert not claim_path(tmp_path, "run-a").exists()
    again = try_claim(tmp_path, "run-a")
    assert isinstance(again, Claim)
    again.release()
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "claims").iterdir())


def test_claim_of_a_dead_process_on_this_machine_is_taken_over(tmp_path):
    pid = _dead_pid()
    _write_claim(tmp_path, "run-a", pid=pid, machine=claims.machine_id(), host="here")  # fresh heartbeat
    got = try_claim(tmp_path, "run-a")
    assert isinstance(got, Claim) and got.took_over.record["pid"] == pid
    assert json.loads(claim_path(tmp_path, "run-a").read_text())["token"] == got.token
    got.release()


def test_claim_of_another_host_dies_by_heartbeat_age(tmp_path):
    _write_claim(tmp_path, "fresh", pid=1, machine="elsewhere", host="node7", age_s=5)
    held = try_claim(tmp_path, "fresh")
    assert isinstance(held, Holder) and "node7" in held.describe()
    _write_claim(tmp_path, "stale", pid=1, machine="elsewhere", host="node7", age_s=claims.STALE_S + 10)
    got = try_claim(tmp_path, "stale")
    assert isinstance(got, Claim) and got.took_over.record["host"] == "node7"
    got.release()


def test_unreadable_claim_is_held_while_fresh(tmp_path):
    path = claim_path(tmp_path, "run-a")
    path.parent.mkdir(parents=True)
    path.write_text("")  # e.g. an exclusive create caught before its record was written
    assert isinstance(try_claim(tmp_path, "run-a"), Holder)
    old = time.time() - claims.STALE_S - 1
    os.utime(path, (old, old))
    got = try_claim(tmp_path, "run-a")
    assert isinstance(got, Claim)
    got.release()


def test_heartbeat_touches_and_notices_a_takeover(tmp_path):
    got = try_claim(tmp_path, "run-a")
    path = claim_path(tmp_path, "run-a")
    old = time.time() - 100
    os.utime(path, (old, old))
    assert got.check() and time.time() - path.stat().st_mtime < 50
    path.write_text(json.dumps({"token": "someone-else", "pid": 1, "host": "node7"}))
    assert not got.check() and "node7" in got.lost.describe()
    got.release()
    assert path.exists()  # not ours any more: left alone


def _race(out, run_ids, queue):
    won = []
    for run_id in run_ids:
        got = try_claim(out, run_id)
        if isinstance(got, Claim):
            won.append(run_id)  # held until this process ends: the others must see it held
    queue.put(won)
    time.sleep(1.0)


def test_racing_processes_claim_each_run_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    run_ids = [f"run-{i}" for i in range(30)]
    procs = [ctx.Process(target=_race, args=(tmp_path, run_ids, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    won = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    flat = [r for w in won for r in w]
    assert sorted(flat) == sorted(run_ids), won  # each run claimed by exactly one process


def test_stale_takeover_lock_is_cleared(tmp_path):
    pid = _dead_pid()
    path = _write_claim(tmp_path, "run-a", pid=pid, machine=claims.machine_id())
    lock = path.with_suffix(".takeover")
    lock.mkdir()
    assert isinstance(try_claim(tmp_path, "run-a", attempts=1), (Holder, type(None)))  # busy: someone is taking over
    old = time.time() - claims.TAKEOVER_LOCK_STALE_S - 1
    os.utime(lock, (old, old))
    got = try_claim(tmp_path, "run-a")
    assert isinstance(got, Claim)
    got.release()


def test_clean_temps_removes_only_our_temporaries(tmp_path):
    keep = [tmp_path / n for n in ("row.json", ".hidden", "checkpoint.pt")]
    junk = [tmp_path / n for n in (".checkpoint.ab12_x9z.tmp.pt", ".runs.csv.k2j3h4g5.tmp")]
    for p in keep + junk:
        p.write_text("x")
    (tmp_path / ".features.q1w2e3r4.tmp").mkdir()
    removed = clean_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted([p.name for p in junk] + [".features.q1w2e3r4.tmp"])
    assert all(p.exists() for p in keep)
    young = tmp_path / ".runs.csv.aaaaaaaa.tmp"
    young.write_text("being written")
    assert clean_temps(tmp_path, older_than_s=60) == [] and young.exists()


def test_a_run_whose_claim_was_taken_over_stops_at_its_next_epoch(sparrow_dataset, tmp_path):
    from fgvc.grid.benchmark import run_benchmark
    from fgvc.config import expand_grid, load_grid
    from fgvc.config import RunOptions

    grid = {"model": "test_resnet", "pretrained": False, "epochs": 3, "batch_size": 8, "image_size": 32,
            "seeds": [0], "methods": ["ce"], "lr": 0.01, "benchmark": "lost"}
    (cfg,) = expand_grid(load_grid(None, dict(grid)))

    def taken_over(epoch, rec):
        if epoch == 0:  # another host decided we were dead (we stalled past the timeout)
            _write_claim(tmp_path, cfg.run_id, pid=1, machine="elsewhere", host="node7")

    messages = []
    run_benchmark(None, RunOptions(data=sparrow_dataset, out=tmp_path, progress=False, on_epoch_end=taken_over),
                  dict(grid), echo=messages.append)
    assert any("its claim was taken over (pid 1 on node7" in m for m in messages), messages
    run_dir = tmp_path / "runs" / cfg.run_id
    assert not (run_dir / "row.json").exists() and "epoch 3/3" not in (run_dir / "train.log").read_text()
    assert json.loads(claim_path(tmp_path, cfg.run_id).read_text())["host"] == "node7"  # theirs, left alone


HOLD = """
import sys, time
from pathlib import Path
from fgvc.grid.claims import try_claim
claim = try_claim(Path(sys.argv[1]), "run-a")
Path(sys.argv[2]).write_text(claim.token)
while claim.check() or claim.lost is None:
    time.sleep(0.1)
Path(sys.argv[3]).write_text(claim.lost.describe())
"""


def test_a_stopped_worker_on_this_host_loses_its_claim_by_heartbeat_age(tmp_path, monkeypatch):
    """A holder that is alive but stopped (SIGSTOP: a stuck file system, a deadlock) beats no
    more; after the timeout its claim is dead on its own host too, and once it runs again it
    sees that it lost the claim."""
    import signal
    from pathlib import Path

    timeout = 1.5
    monkeypatch.setattr(claims, "STALE_S", timeout)
    ready, lost = tmp_path / "ready", tmp_path / "lost"
    env = {**os.environ, "FGVC_CLAIM_TIMEOUT": str(timeout), "FGVC_CLAIM_HEARTBEAT": "0.1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(ready), str(lost)], env=env)
    try:
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the holder never claimed the run"
        os.kill(proc.pid, signal.SIGSTOP)
        held = try_claim(tmp_path, "run-a")
        assert isinstance(held, Holder) and held.record["pid"] == proc.pid  # alive, heartbeat fresh: held
        time.sleep(timeout + 0.5)
        got = try_claim(tmp_path, "run-a")
        assert isinstance(got, Claim), f"a stopped holder kept its claim: {got.describe()}"
        assert got.took_over.record["pid"] == proc.pid
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=30) == 0 and f"pid {os.getpid()}" in lost.read_text()  # it knows it lost it
        assert json.loads(claim_path(tmp_path, "run-a").read_text())["token"] == got.token
        got.release()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()


def test_remove_dead_claims_leaves_live_and_fresh_ones(tmp_path):
    pid = _dead_pid()
    dead = _write_claim(tmp_path, "dead", pid=pid, machine=claims.machine_id(), host="here")
    stale = _write_claim(tmp_path, "stale", pid=1, machine="elsewhere", host="node7", age_s=claims.STALE_S + 10)
    fresh = _write_claim(tmp_path, "fresh", pid=1, machine="elsewhere", host="node7", age_s=5)
    mine = try_claim(tmp_path, "mine")
    removed = claims.remove_dead_claims(tmp_path)
    assert sorted(h.path.stem for h in removed) == ["dead", "stale"]
    assert not dead.exists() and not stale.exists() and fresh.exists() and mine.path.exists()
    mine.release()
