"""A benchmark grid (YAML) -> runs, skipping finished ones and resuming interrupted
ones, with `runs.csv` rebuilt from the run folders after every run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from fgvc.config import RunConfig, expand_grid, load_grid
from fgvc.data import load_dataset_info
from fgvc.errors import FGVCError
from fgvc.io import atomic_path
from fgvc.train import ROW_COLUMNS, NonFiniteLossError, RunOptions, read_row, record_failure, run


def default_out(grid_name: str) -> Path:
    return Path("results") / grid_name


def rebuild_runs_csv(out: Path) -> Path:
    """One row per run folder that has a row.json; written atomically, so concurrent
    jobs or shards never lose a row and Ctrl-C never leaves a half file."""
    rows = []
    for p in sorted((out / "runs").glob("*/row.json")):
        try:
            rows.append(json.loads(p.read_text()))
        except json.JSONDecodeError:
            continue  # a row.json is itself written atomically; skip foreign junk
    frame = pd.DataFrame(rows)
    for c in ROW_COLUMNS:
        if c not in frame.columns:
            frame[c] = None
    extra = [c for c in frame.columns if c not in ROW_COLUMNS]
    frame = frame[ROW_COLUMNS + extra]
    path = out / "runs.csv"
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def plan(configs: list[RunConfig], out: Path) -> tuple[list[RunConfig], list[RunConfig]]:
    """(to do, already done) by the run folders' row.json status."""
    todo, done = [], []
    for cfg in configs:
        row = read_row(out / "runs" / cfg.run_id)
        (done if row and row.get("status") == "ok" else todo).append(cfg)
    return todo, done


def preflight(configs: list[RunConfig], opts: RunOptions, num_train: int) -> None:
    """Catch bad input before any training: validation splits, model names, weights, batch size."""
    from fgvc.data import stratified_val_split
    from fgvc.models import build_model

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
        n = train_sizes.get((cfg.val_fraction, cfg.val_seed), num_train)
        if cfg.batch_size > n:
            raise FGVCError(f"invalid value batch_size={cfg.batch_size}: larger than the training set "
                            f"({n} images in {opts.data}" + (f" after holding out val_fraction={cfg.val_fraction:g}"
                                                            if cfg.val_fraction > 0 else "") + ")")


def _run_job(cfg: RunConfig, opts: RunOptions, threads: int) -> dict:
    """One run in a worker process of `--jobs`: its failure becomes a failed row, as in a serial grid."""
    import torch

    torch.set_num_threads(threads)
    try:
        return run(cfg, opts, log=None)
    except (NonFiniteLossError, RuntimeError, FGVCError) as e:
        return record_failure(cfg, opts, e)


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
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_run_job, cfg, job_opts, threads): cfg for cfg in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            cfg = futures[fut]
            row = fut.result()
            rebuild_runs_csv(out)
            result = f"top1 {row['top1']:.2f}%" if row["status"] == "ok" else f"FAILED: {row['error']}"
            echo(f"[{i}/{len(todo)}] {cfg.run_id}: {result}")


def run_benchmark(grid_path: str | Path | None, opts: RunOptions, overrides: dict | None = None,
                  echo: Callable[[str], None] = print, dry_run: bool = False, jobs: int = 1) -> pd.DataFrame:
    """Expand, check and run a grid (`jobs` runs at a time); returns the runs.csv frame."""
    if jobs < 1:
        raise FGVCError(f"invalid --jobs {jobs}: use 1 or more (runs trained at the same time on one device)")
    grid = load_grid(grid_path, overrides)
    if "benchmark" not in grid and grid_path is not None:
        grid["benchmark"] = [Path(grid_path).stem]
    configs = expand_grid(grid)
    info = load_dataset_info(opts.data)
    out = Path(opts.out)
    todo, done = plan(configs, out)
    echo(f"benchmark {configs[0].benchmark}: {len(configs)} runs in grid, {len(done)} done, {len(todo)} to do; "
         f"data {info.root} ({info.num_classes} classes, {int(info.manifest.is_train.sum())} train / "
         f"{int((info.manifest.is_train == 0).sum())} test); out {out}")
    for cfg in done:
        echo(f"  done   {cfg.run_id}")
    for cfg in todo:
        echo(f"  to do  {cfg.run_id}")
    if dry_run or not todo:
        if (out / "runs").is_dir():
            rebuild_runs_csv(out)
        return pd.read_csv(out / "runs.csv") if (out / "runs.csv").is_file() else pd.DataFrame(columns=ROW_COLUMNS)
    preflight(todo, opts, int(info.manifest.is_train.sum()))
    if jobs > 1:
        started = time.perf_counter()
        echo(f"running {len(todo)} runs, {min(jobs, len(todo))} at a time")
        run_concurrently(todo, opts, jobs, out, echo)
        echo(f"finished {len(todo)} runs in {(time.perf_counter() - started) / 60:.1f} min; "
             f"results in {out / 'runs.csv'}")
        return pd.read_csv(out / "runs.csv")

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
    started = time.perf_counter()
    for i, cfg in enumerate(todo, 1):
        echo(f"[{i}/{len(todo)}] {cfg.run_id}")
        try:
            row = run(cfg, run_opts, info=info, log=None)
            echo(f"[{i}/{len(todo)}] {cfg.run_id}: top1 {row['top1']:.2f}%"
                 + (f"; {eta()}" if remaining_epochs and epoch_seconds else ""))
        except (NonFiniteLossError, RuntimeError, FGVCError) as e:
            row = record_failure(cfg, run_opts, e)
            echo(f"[{i}/{len(todo)}] {cfg.run_id}: FAILED: {row['error']}")
        finally:
            rebuild_runs_csv(out)
    echo(f"finished {len(todo)} runs in {(time.perf_counter() - started) / 60:.1f} min; "
         f"results in {out / 'runs.csv'}")
    return pd.read_csv(out / "runs.csv")


__all__ = ["run_benchmark", "rebuild_runs_csv", "plan", "default_out"]
