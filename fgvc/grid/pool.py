"""`fgvc benchmark --jobs N`: N worker processes on one device, each a fgvc.grid.worker.Worker
over the same run list (claims keep them from training a run twice), reporting to the
parent through a pipe.

Stopping: Ctrl-C (SIGINT to the whole terminal process group) or SIGTERM to the parent
(`kill`, Slurm) stops every worker where it is (each keeps its last completed epoch and
releases its claim); the parent waits for them, rebuilds runs.csv and raises
fgvc.grid.signals.Stopped, which the CLI turns into one line and exit status 130 / 143. A
worker whose parent dies, however it died, stops too (fgvc.grid.signals.die_with_parent), so
no worker outlives the benchmark process.
"""

from __future__ import annotations

import os
from dataclasses import replace
import signal
import sys
from pathlib import Path
from typing import Callable

from fgvc.config import RunConfig
from fgvc.config import RunOptions
from fgvc.errors import FGVCError
from fgvc.runs.table import rebuilt_after
from fgvc.grid.signals import Stopped, die_with_parent, stop_on_signals
from fgvc.grid.worker import Worker, result_text, snapshot, train_claimed

STOP_GRACE_S = 60.0  # how long a stopped worker may take to leave before it is killed


def worker_main(todo: list[RunConfig], opts: RunOptions, info, threads: int, snap: dict, conn, parent: int) -> None:
    """A --jobs worker process: work through `todo` (on the dataset `info` the parent loaded,
    so no worker reads and fingerprints it again), sending ("line", text) and
    ("result", run_id, text) messages to the parent; exit 128 + signal when stopped."""
    die_with_parent(parent)
    code = 0

    def send(*msg) -> None:
        try:
            conn.send(msg)
        except OSError:
            pass  # the parent is gone: die_with_parent stops us

    with stop_on_signals():
        try:
            import torch

            torch.set_num_threads(threads)

            def train(cfg: RunConfig, claim) -> dict:
                row = train_claimed(cfg, opts, claim, info, log=lambda text: send("line", text))
                send("result", cfg.run_id, result_text(row))
                return row

            Worker(Path(opts.out), snap, train, lambda text: send("line", text), stop_after=opts.stop_after).work(todo)
        except Stopped as e:
            code = e.exit_code
        except FGVCError as e:  # a full disk, say: the parent stops the others and says it in one line
            send("error", str(e))
            code = 2
    conn.close()
    sys.exit(code)


def _relay(conns: list, echo: Callable[[str], None], total: int) -> str | None:
    """Print the workers' messages until every worker has closed its pipe (exited), or one
    reports an error that stops the grid; returns that error (None when none came)."""
    from multiprocessing.connection import wait

    done = 0
    while conns:
        for conn in wait(conns):
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                conns.remove(conn)
                continue
            if msg[0] == "error":
                return msg[1]
            if msg[0] == "result":
                done += 1
                echo(f"[{done}/{total}] {msg[1]}: {msg[2]}")
            else:
                echo(msg[1])
    return None


def _stop(procs: list, wait_first: bool = False) -> list[int | None]:
    """SIGTERM every live worker, wait for it (killing it after STOP_GRACE_S); their exit codes.
    `wait_first`: the workers closed their pipes because their work is done, so let them exit
    on their own first (a SIGTERM then would only report a finished worker as stopped)."""
    if wait_first:
        for p in procs:
            p.join(STOP_GRACE_S)
    for p in procs:
        if p.is_alive():
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        p.join(STOP_GRACE_S)
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


def run_concurrently(todo: list[RunConfig], opts: RunOptions, jobs: int, out: Path,
                     echo: Callable[[str], None], snap: dict | None = None, info=None) -> None:
    """Run `jobs` runs at a time, each worker in its own process on the same device.

    A run does not depend on what runs beside it: its random draws are seeded by its own
    (seed, epoch, image) and nothing is shared but the (read-only) decoded-image cache. On
    CPU the cores are split between the jobs (so a job's result equals a run alone with the
    same thread count; with --deterministic, exactly). Finished rows land in runs.csv as they come.
    """
    import multiprocessing

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    job_opts = replace(opts, on_epoch_end=None, progress=False)
    ctx = multiprocessing.get_context("spawn")  # fork would copy a CUDA context
    snap = snapshot(todo, out) if snap is None else snap
    procs, conns, codes, done = [], [], [], False
    with rebuilt_after(out):
        try:
            for k in range(min(jobs, len(todo))):
                recv, send = ctx.Pipe(duplex=False)
                p = ctx.Process(target=worker_main, args=(todo, job_opts, info, threads, snap, send, os.getpid()),
                                name=f"fgvc-job-{k}")
                procs.append(p)
                p.start()
                send.close()
                conns.append(recv)
            error = _relay(conns, echo, len(todo))
            done = error is None
        finally:
            codes = _stop(procs, wait_first=done)
        if error is not None:
            raise FGVCError(error)
    for k, code in enumerate(codes):
        if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            echo(f"worker {k} was stopped by {signal.Signals(code - 128).name}; its run resumes at the next start")
        elif code not in (0, None):
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"ended with exit status {code}"
            echo(f"worker {k} {how}; a run it held resumes at the next start")

__all__ = ["run_concurrently", "worker_main", "STOP_GRACE_S"]
