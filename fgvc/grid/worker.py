"""One worker of a grid: claim each run (fgvc.grid.claims), train it only while holding the claim,
skip runs other workers hold, then wait for those and take over the claims of workers
that died, until every run of its list is finished (or failed) by someone.

The benchmark runs one such worker in its own process (`--jobs 1`) or N in child
processes (`--jobs N`, fgvc.grid.pool); uncoordinated benchmark processes on one OUT are just
more workers. A run whose row.json changed after this worker planned the grid was
finished (or failed) by another worker meanwhile and is not trained again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from fgvc.grid.claims import Claim, Holder, try_claim
from fgvc.grid.halving import read_val_curve
from fgvc.config import RunConfig
from fgvc.errors import FGVCError
from fgvc.io import clean_temps, is_no_space, no_space_error, set_aside
from fgvc.config import RunOptions
from fgvc.runs.table import read_run_row, rebuilt_after, space_needed_mb

POLL_S = float(os.environ.get("FGVC_CLAIM_POLL", 5))


class ClaimLost(Exception):
    """Another worker took over this run's claim (we stalled past the timeout): stop it."""


def row_state(run_dir: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the run's row.json, None without one: what `plan` saw."""
    try:
        st = (run_dir / "row.json").stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def snapshot(todo: list[RunConfig], out: Path) -> dict[str, tuple[int, int] | None]:
    return {c.run_id: row_state(Path(out) / "runs" / c.run_id) for c in todo}


def finished(run_dir: Path) -> bool:
    """Does the run folder hold a whole finished run (row.json ok, files sound, a kept
    checkpoint that loads: what `plan` counts as done)?"""
    from fgvc.engine.checkpoint import CHECKPOINT, is_final

    if not (run_dir / "row.json").is_file():
        return False
    row, problems = read_run_row(run_dir / "row.json")
    if row is None or row["status"] != "ok" or problems:
        return False
    return not ((run_dir / CHECKPOINT).is_file() and is_final(run_dir / CHECKPOINT) is None)


def prepare_run_dir(run_dir: Path, echo: Callable[[str], None]) -> None:
    """Under the run's claim: remove temporaries of killed writes, move an unreadable
    checkpoint aside (the run then starts over), and set aside a row.json
    that is not a failure (the plan found the run damaged, so it is trained again)."""
    from fgvc.engine.checkpoint import CHECKPOINT, set_aside_unreadable

    for p in clean_temps(run_dir):
        echo(f"  {run_dir.name}: removed {p.name}, left by an interrupted write")
    problem = set_aside_unreadable(run_dir / CHECKPOINT, run_dir.name)
    if problem:
        echo(f"  {problem}")
    row = run_dir / "row.json"
    if row.is_file():
        try:
            status = json.loads(row.read_text()).get("status")
        except (ValueError, AttributeError, OSError):
            status = None
        if status == "pruned":  # by successive halving (fgvc.grid.halving); this grid trains it on
            row.unlink()
            echo(f"  {run_dir.name}: was pruned by successive halving; training it on from its checkpoint")
        elif status != "failed":
            moved = set_aside(row, "damaged")
            echo(f"  {run_dir.name}: moved its damaged row.json to {moved.name}; training it again")


@dataclass
class Worker:
    """Where a worker works and how it trains one run: `train(cfg, claim)` returns its row."""

    out: Path
    snapshot: dict
    train: Callable[[RunConfig, Claim], dict]
    echo: Callable[[str], None]
    poll_s: float = POLL_S
    stop_after: int | None = None  # a halving stage's rung (RunOptions.stop_after): a run there is done for now

    def attempt(self, cfg: RunConfig) -> Holder | None:
        """Train `cfg` if we get its claim; the live Holder when another worker has it."""
        got = try_claim(self.out, cfg.run_id)
        if isinstance(got, Holder):
            return got
        with got:
            run_dir = self.out / "runs" / cfg.run_id
            if got.took_over is not None:
                self.echo(f"  {cfg.run_id}: took over the claim of a worker that is gone or stalled "
                          f"({got.took_over.describe()})")
            if row_state(run_dir) != self.snapshot.get(cfg.run_id) or finished(run_dir):
                self.echo(f"  {cfg.run_id}: finished by another worker meanwhile")
                return None
            if self.stop_after is not None and len(read_val_curve(run_dir)) >= self.stop_after:
                return None  # trained to this stage's rung by another worker: resuming would only pause it again
            run_dir.mkdir(parents=True, exist_ok=True)
            prepare_run_dir(run_dir, self.echo)
            try:
                self.train(cfg, got)
            except ClaimLost:
                self.echo(f"  {cfg.run_id}: stopped: its claim was taken over ({got.lost.describe()}); "
                          "that worker finishes it")
            self.snapshot[cfg.run_id] = row_state(run_dir)
        return None

    def work(self, todo: list[RunConfig]) -> None:
        pending = list(todo)
        told: set[str] = set()
        while pending:
            held = [(cfg, h) for cfg in pending if (h := self.attempt(cfg)) is not None]
            if not held:
                return
            new = [f"{cfg.run_id} ({h.describe()})" for cfg, h in held if cfg.run_id not in told]
            if new:
                self.echo(f"waiting for {len(held)} run(s) held by other workers: " + "; ".join(new))
                told.update(cfg.run_id for cfg, _ in held)
            time.sleep(self.poll_s)
            pending = [cfg for cfg, _ in held]


def guard(claim: Claim, hook: Callable[[int, dict], None] | None) -> Callable[[int, dict], None]:
    """An on_epoch_end hook that stops the run (ClaimLost) once its claim is lost, then calls `hook`."""

    def on_epoch_end(epoch: int, rec: dict) -> None:
        if claim.lost is not None or not claim.check():
            raise ClaimLost(claim.path.name)
        if hook is not None:
            hook(epoch, rec)

    return on_epoch_end


def train_claimed(cfg: RunConfig, opts: RunOptions, claim: Claim, info=None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Train (or resume) one claimed run, its log lines (one per epoch) to `log`; a failure
    becomes a failed row, as in any grid. runs.csv is rebuilt afterwards, whatever happened.
    A full disk stops the grid (the next runs would meet it too) with one line
    (fgvc.io.no_space_error), the run recorded as failed where there is room for it."""
    from fgvc.train import record_failure

    out = Path(opts.out)
    run_opts = replace(opts, on_epoch_end=guard(claim, opts.on_epoch_end))
    with rebuilt_after(out):
        try:
            return _run_or_record(cfg, run_opts, info, log)
        except BaseException as e:
            if not is_no_space(e):
                raise
            stop = no_space_error(out, space_needed_mb(out))
            with contextlib.suppress(Exception):  # the failed-run record, when it fits
                record_failure(cfg, run_opts, stop)
            raise stop from None


def _run_or_record(cfg: RunConfig, run_opts: RunOptions, info, log) -> dict:
    """The run's row, or its failed row (a full disk is not recorded here: it stops the grid)."""
    from fgvc.train import NonFiniteLossError, record_failure, run

    try:
        return run(cfg, run_opts, info=info, log=log)
    except (NonFiniteLossError, RuntimeError, FGVCError) as e:
        if is_no_space(e):
            raise
        return record_failure(cfg, run_opts, e)


def result_text(row: dict) -> str:
    if row["status"] == "paused":
        val = row.get("val_top1")
        return f"paused after epoch {row['epochs']}" + (f" (val top1 {val:.1f})" if val is not None else "")
    return f"top1 {row['top1']:.2f}%" if row["status"] == "ok" else f"FAILED: {row['error']}"


__all__ = ["Worker", "train_claimed", "result_text", "ClaimLost", "POLL_S", "snapshot", "row_state", "finished",
           "prepare_run_dir", "guard"]
