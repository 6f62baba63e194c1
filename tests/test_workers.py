"""Real processes on one results folder: uncoordinated workers train each run once, and
`--jobs N` stops when told (SIGTERM, Ctrl-C to the process group, a killed parent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GRID = {"name": "workers", "model": "test_resnet", "pretrained": False, "epochs": 2, "batch_size": 8,
        "image_size": 32, "seeds": [0, 1, 2], "methods": ["ce", "center"], "lr": 0.01}

# Imports first, then waits for the go file: start-up time must not decide who trains.
DRIVER = """
import sys, time
from pathlib import Path
import torch, fgvc.cli, fgvc.grid.benchmark, fgvc.train, fgvc.grid.pool
torch.set_num_threads(1)
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.02)
sys.exit(fgvc.cli.main(sys.argv[2:]))
"""


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "FGVC_CLAIM_POLL": "0.3",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def _grid(tmp_path, **over) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(dict(GRID, **over)))
    return path


def _start(go: Path, args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(go), *args], cwd=ROOT, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _trained(stdout: str) -> set[str]:
    """Run ids a benchmark process reports as trained by itself ("[i/n] <run_id>: top1 ...")."""
    return {line.split("] ", 1)[1].split(":", 1)[0] for line in stdout.splitlines()
            if line.startswith("[") and ": top1 " in line}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_two_uncoordinated_workers_train_each_run_once(sparrow_dataset, tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    base = ["benchmark", str(_grid(tmp_path)), "--data", str(sparrow_dataset), "--out", str(out), "--no-progress",
            "--deterministic"]
    # different pipelines: a run spliced from both would show both in its log
    procs = [_start(go, base + ["--pipeline", p]) for p in ("per-sample", "batched")]
    time.sleep(0.5)
    go.touch()
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    mine = [_trained(stdout) for stdout, _ in results]
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 and (runs.status == "ok").all()
    assert not mine[0] & mine[1] and mine[0] | mine[1] == set(runs.run_id), mine
    assert mine[0] and mine[1], "the two workers did not overlap: the test proves nothing"
    for pipeline, ids in zip(("per-sample", "batched"), mine):
        for run_id in ids:
            d = out / "runs" / run_id
            log = (d / "train.log").read_text()
            assert log.count("epoch 1/2 ") == 1 and log.count("epoch 2/2 ") == 1, log
            assert json.loads((d / "provenance.json").read_text())["pipeline"] == pipeline
    assert not list((out / "claims").glob("*.claim"))


def _start_jobs(sparrow_dataset, tmp_path, jobs: int = 2) -> tuple[subprocess.Popen, Path]:
    out, go = tmp_path / "out", tmp_path / "go"
    go.touch()
    args = ["benchmark", str(_grid(tmp_path, epochs=40, seeds=[0, 1])), "--data", str(sparrow_dataset),
            "--out", str(out), "--no-progress", "--jobs", str(jobs)]
    proc = _start(go, args, start_new_session=True)
    deadline = time.time() + 150
    while len(list(out.glob("runs/*/checkpoint.pt"))) < jobs:  # every worker has finished an epoch
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the workers did not start training"
        time.sleep(0.2)
    return proc, out


def _worker_pids(out: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in (out / "claims").glob("*.claim")]


@pytest.mark.slow
@pytest.mark.parametrize("how, jobs", [("SIGTERM to the parent", 2), ("Ctrl-C to the process group", 2),
                                       ("SIGTERM to the parent", 1)])
def test_jobs_stop_when_told(sparrow_dataset, tmp_path, how, jobs):
    proc, out = _start_jobs(sparrow_dataset, tmp_path, jobs)
    workers = _worker_pids(out)
    assert len(workers) == jobs and (proc.pid not in workers if jobs > 1 else workers == [proc.pid])
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
        code, line = 143, "stopped by SIGTERM: finished runs and the last completed epoch are kept"
    else:
        os.killpg(proc.pid, signal.SIGINT)
        code, line = 130, "interrupted: finished runs and the last completed epoch are kept"
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert [s for s in stderr.splitlines() if s.strip()] == [line + "; rerun the same command to resume"], stderr
    assert not any(_alive(pid) for pid in workers)
    assert (out / "runs.csv").is_file()
    assert not list((out / "claims").glob("*.claim"))  # released: the next start resumes at once
    run_dirs = [d for d in (out / "runs").iterdir() if (d / "checkpoint.pt").is_file()]
    assert len(run_dirs) >= jobs and not any((d / "row.json").exists() for d in run_dirs)


@pytest.mark.slow
def test_no_worker_outlives_a_killed_parent(sparrow_dataset, tmp_path):
    proc, out = _start_jobs(sparrow_dataset, tmp_path)
    workers = _worker_pids(out)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.time() + 30
    while any(_alive(pid) for pid in workers):
        assert time.time() < deadline, "a --jobs worker outlived its parent"
        time.sleep(0.2)
