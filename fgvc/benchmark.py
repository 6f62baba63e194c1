"""A benchmark grid (YAML) -> runs, skipping finished ones and resuming interrupted
ones, with `runs.csv` rebuilt from the run folders after every run.

A grid can be split between N jobs (`--shard I/N`, or a Slurm job array): each runs
every N-th run of the expanded grid into the same OUT, and `fgvc report` merges them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import pandas as pd

from fgvc.config import RunConfig, expand_grid, load_grid
from fgvc.data.dataset import load_dataset_info
from fgvc.errors import FGVCError
from fgvc.runs_csv import write_runs_csv
from fgvc.engine.artifacts import ROW_COLUMNS, console, read_row
from fgvc.engine.loop import NonFiniteLossError
from fgvc.options import RunOptions
from fgvc.train import record_failure, run


def default_out(grid_name: str) -> Path:
    return Path("results") / grid_name


# --------------------------------------------------------------------------- shards
class Shard(NamedTuple):
    """Run `index`, `index + count`, `index + 2*count`, ... of the expanded grid (0-based)."""

    index: int
    count: int
    origin: str = "--shard"  # where it came from, for messages

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`--shard I/N` -> Shard(I, N); I is 0-based, so N jobs use I = 0 .. N-1."""
    i, sep, n = str(text).strip().partition("/")
    try:
        shard = Shard(int(i), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None or shard.count < 1 or not 0 <= shard.index < shard.count:
        raise FGVCError(f"invalid --shard {text!r}: expected I/N with 0 <= I < N (I is 0-based), "
                        "e.g. --shard 0/4 ... --shard 3/4 for four jobs")
    return shard


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or not str(raw).strip():
        if default is not None:
            return default
        raise FGVCError(f"{name} is not set although SLURM_ARRAY_TASK_ID is: run inside a Slurm job array "
                        "(sbatch --array=...) or pass --shard I/N")
    try:
        return int(raw)
    except ValueError:
        raise FGVCError(f"invalid {name}={raw!r}: expected an integer; pass --shard I/N instead") from None


def shard_from_env(env: Mapping[str, str]) -> Shard | None:
    """The shard of a Slurm job array task, or None outside an array.

    Task ids need not start at 0 and may be stepped (`--array=1-9:2`): the shard is the
    task's position in the array, (ID - MIN) / STEP, out of SLURM_ARRAY_TASK_COUNT.
    Arrays that are not one evenly spaced range (`--array=1,4,5`) cannot be mapped.
    """
    if env.get("SLURM_ARRAY_TASK_ID") is None:
        return None
    task = _env_int(env, "SLURM_ARRAY_TASK_ID")
    low = _env_int(env, "SLURM_ARRAY_TASK_MIN")
    step = _env_int(env, "SLURM_ARRAY_TASK_STEP", 1)
    count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
    high = _env_int(env, "SLURM_ARRAY_TASK_MAX", low + (count - 1) * step)
    origin = f"Slurm array task {task} of {low}-{high}" + (f":{step}" if step != 1 else "")
    fix = "use one evenly spaced range (sbatch --array=MIN-MAX[:STEP]) or pass --shard I/N"
    if step < 1 or count < 1:
        raise FGVCError(f"invalid Slurm array: SLURM_ARRAY_TASK_STEP={step}, SLURM_ARRAY_TASK_COUNT={count}; {fix}")
    if high != low + (count - 1) * step:
        raise FGVCError(f"Slurm array {low}-{high} with step {step} does not hold {count} tasks "
                        f"(SLURM_ARRAY_TASK_COUNT={count}): not one evenly spaced range; {fix}")
    offset = task - low
    if offset < 0 or offset % step or offset // step >= count:
        raise FGVCError(f"SLURM_ARRAY_TASK_ID={task} is not in the array {low}-{high}:{step}; {fix}")
    return Shard(offset // step, count, origin)


def select_shard(configs: Sequence[RunConfig], shard: Shard | tuple[int, int] | None) -> list[RunConfig]:
    """`configs[i::n]`: every job expands the same grid in the same order, so the
    shards are disjoint and together cover the grid (whatever is already done)."""
    if shard is None:
        return list(configs)
    i, n = shard[0], shard[1]
    if n < 1 or not 0 <= i < n:
        raise FGVCError(f"invalid shard {i}/{n}: expected I/N with 0 <= I < N (I is 0-based)")
    return list(configs[i::n])


def rebuild_runs_csv(out: Path) -> Path:
    """One row per run folder that has a row.json; written atomically, so concurrent
    jobs or shards never lose a row and Ctrl-C never leaves a half file."""
    return write_runs_csv(out, ROW_COLUMNS)


def plan(configs: list[RunConfig], out: Path) -> tuple[list[RunConfig], list[RunConfig]]:
    """(to do, already done) by the run folders' row.json status."""
    todo, done = [], []
    for cfg in configs:
        row = read_row(out / "runs" / cfg.run_id)
        (done if row and row.get("status") == "ok" else todo).append(cfg)
    return todo, done


def preflight(configs: list[RunConfig], opts: RunOptions, num_train: int) -> None:
    """Catch bad input before any training: trackers, validation splits, model names, weights, batch size."""
    from fgvc.data.dataset import check_batch_fits, stratified_val_split
    from fgvc.engine.trackers import check_available
    from fgvc.models import build_model

    check_available(opts.trackers)
    splits = sorted({(c.val_fraction, c.val_seed) for c in configs if c.val_fraction > 0})
    train_sizes = {}
    if splits:
        train = load_dataset_info(opts.data).split(True)
        for fraction, seed in splits:
            train_sizes[fraction, seed] = len(stratified_val_split(train, fraction, seed)[0])
    for model in sorted({c.model for c in configs}):
        pretrained = next(c.pretrained for c in configs if c.model == model)
        build_model(model, 2, pretrained=pretrained, pretrained_file=opts.pretrained_file)
    for cfg in configs:
        check_batch_fits(cfg.batch_size, train_sizes.get((cfg.val_fraction, cfg.val_seed), num_train), opts.data,
                         cfg.val_fraction)


_JOB_LOG = None  # in a worker process of --jobs: the queue its log lines go to (set by _init_job)


def _init_job(queue) -> None:
    global _JOB_LOG
    _JOB_LOG = queue


def _run_job(cfg: RunConfig, opts: RunOptions, threads: int, prefix: str = "") -> dict:
    """One run in a worker process of `--jobs`: its log lines go to the parent prefixed, its
    failure becomes a failed row, as in a serial grid."""
    import torch

    torch.set_num_threads(threads)
    queue = _JOB_LOG
    try:
        return run(cfg, opts, log=(lambda m: queue.put(f"{prefix} {m}")) if queue is not None else None)
    except (NonFiniteLossError, RuntimeError, FGVCError) as e:
        return record_failure(cfg, opts, e)


def _relay(lines, echo: Callable[[str], None]) -> None:
    for line in iter(lines.get, None):
        echo(line)


def run_concurrently(todo: list[RunConfig], opts: RunOptions, jobs: int, out: Path,
                     echo: Callable[[str], None]) -> None:
    """Run `jobs` runs at a time, each in its own process on the same device.

    A run does not depend on what runs beside it: its random draws are seeded by its own
    (seed, epoch, image) and nothing is shared but the (read-only) decoded-image cache. On
    CPU the cores are split between the jobs (so a job's result equals a run alone with the
    same thread count; with --deterministic, exactly). Finished rows land in runs.csv as they come.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    job_opts = RunOptions(**{**opts.__dict__, "on_epoch_end": None, "progress": False})
    ctx = multiprocessing.get_context("spawn")  # fork would copy a CUDA context
    lines = ctx.SimpleQueue()  # the workers' log lines (prefixed "[run k/N]"), echoed here as they come
    relay = threading.Thread(target=_relay, args=(lines, echo), daemon=True)
    relay.start()
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_job,
                                 initargs=(lines,)) as pool:
            futures = {pool.submit(_run_job, cfg, job_opts, threads, f"[run {k}/{len(todo)}]"): cfg
                       for k, cfg in enumerate(todo, 1)}
            for i, fut in enumerate(as_completed(futures), 1):
                cfg = futures[fut]
                row = fut.result()
                rebuild_runs_csv(out)
                result = f"top1 {row['top1']:.2f}%" if row["status"] == "ok" else f"FAILED: {row['error']}"
                echo(f"[{i}/{len(todo)}] {cfg.run_id}: {result}")
    finally:
        lines.put(None)
        relay.join(timeout=10)


def _own_rows(frame: pd.DataFrame, configs: list[RunConfig], shard: Shard | None) -> pd.DataFrame:
    """A shard answers for its own runs only (its exit status must not fail on another's)."""
    if shard is None or frame.empty:
        return frame
    return frame[frame.run_id.isin({c.run_id for c in configs})].reset_index(drop=True)


def run_benchmark(grid_path: str | Path | None, opts: RunOptions, overrides: dict | None = None,
                  echo: Callable[[str], None] = console, dry_run: bool = False, jobs: int = 1,
                  shard: Shard | tuple[int, int] | None = None) -> pd.DataFrame:
    """Expand, check and run a grid (or one shard of it), `jobs` runs at a time; returns the
    runs.csv frame (with a shard: only that shard's rows)."""
    if jobs < 1:
        raise FGVCError(f"invalid --jobs {jobs}: use 1 or more (runs trained at the same time on one device)")
    grid = load_grid(grid_path, overrides)
    if "benchmark" not in grid and grid_path is not None:
        grid["benchmark"] = [Path(grid_path).stem]
    everything = expand_grid(grid)
    if shard is not None and not isinstance(shard, Shard):
        shard = Shard(*shard)
    configs = select_shard(everything, shard)
    info = load_dataset_info(opts.data)
    out = Path(opts.out)
    todo, done = plan(configs, out)
    which = (f"shard {shard} ({shard.origin}): {len(configs)} of the {len(everything)} runs in grid"
             if shard is not None else f"{len(configs)} runs in grid")
    echo(f"benchmark {everything[0].benchmark}: {which}, {len(done)} done, {len(todo)} to do; "
         f"data {info.root} ({info.num_classes} classes, {int(info.manifest.is_train.sum())} train / "
         f"{int((info.manifest.is_train == 0).sum())} test); out {out}")
    for cfg in done:
        echo(f"  done   {cfg.run_id}")
    for cfg in todo:
        echo(f"  to do  {cfg.run_id}")
    if dry_run or not todo:
        if (out / "runs").is_dir():
            rebuild_runs_csv(out)
        frame = pd.read_csv(out / "runs.csv") if (out / "runs.csv").is_file() else pd.DataFrame(columns=ROW_COLUMNS)
        return _own_rows(frame, configs, shard)
    preflight(todo, opts, int(info.manifest.is_train.sum()))
    started = time.perf_counter()
    if jobs > 1:
        echo(f"running {len(todo)} runs, {min(jobs, len(todo))} at a time")
        run_concurrently(todo, opts, jobs, out, echo)
    else:
        run_serially(todo, opts, info, out, echo)
    echo(f"finished {len(todo)} runs in {(time.perf_counter() - started) / 60:.1f} min; "
         f"results in {out / 'runs.csv'}")
    return _own_rows(pd.read_csv(out / "runs.csv"), configs, shard)


def run_serially(todo: list[RunConfig], opts: RunOptions, info, out: Path, echo: Callable[[str], None]) -> None:
    """One run after another in this process, with an ETA from the epochs seen so far."""
    remaining_epochs = sum(c.epochs for c in todo)
    epoch_seconds: list[float] = []

    def eta() -> str:
        per_epoch = sorted(epoch_seconds)[len(epoch_seconds) // 2]  # median: robust to a slow first epoch
        return f"estimated {remaining_epochs * per_epoch / 60:.1f} min for the {remaining_epochs} epochs left"

    def on_epoch_end(epoch: int, rec: dict, user_hook=opts.on_epoch_end) -> None:
        nonlocal remaining_epochs
        remaining_epochs -= 1
        epoch_seconds.append(rec["seconds"])
        if len(epoch_seconds) == 1:
            echo(f"first epoch took {rec['seconds']:.1f}s: {eta()}")
        if user_hook is not None:
            user_hook(epoch, rec)

    run_opts = RunOptions(**{**opts.__dict__, "on_epoch_end": on_epoch_end})
    for i, cfg in enumerate(todo, 1):
        echo(f"[{i}/{len(todo)}] {cfg.run_id}")
        try:
            row = run(cfg, run_opts, info=info, log=echo)
            echo(f"[{i}/{len(todo)}] {cfg.run_id}: top1 {row['top1']:.2f}%"
                 + (f"; {eta()}" if remaining_epochs and epoch_seconds else ""))
        except (NonFiniteLossError, RuntimeError, FGVCError) as e:
            row = record_failure(cfg, run_opts, e)
            echo(f"[{i}/{len(todo)}] {cfg.run_id}: FAILED: {row['error']}")
        finally:
            rebuild_runs_csv(out)

__all__ = ["run_benchmark", "rebuild_runs_csv", "plan", "default_out", "Shard", "parse_shard", "shard_from_env",
           "select_shard"]
