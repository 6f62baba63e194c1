"""A benchmark grid (YAML) -> runs, skipping finished ones and resuming interrupted
ones, with `runs.csv` rebuilt from the run folders after every run.

A grid can be split between N jobs (`--shard I/N`, or a Slurm job array): each runs
every N-th run of the expanded grid into the same OUT, and `fgvc report` merges them.
Whoever runs (a process, a `--jobs` slot, a shard) trains a run only while holding its
claim (fgvc/grid/claims.py, fgvc/grid/worker.py), so any number of them can share one OUT. Before
any training: the run folders' inputs (fgvc/runs/inputs.py), damaged runs (fgvc/runs/health.py) and
a preflight of everything a run reads.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pandas as pd

from fgvc.config import HALVING, SELECTED_FROM, RunConfig, expand_grid, load_grid
from fgvc.grid.shards import Shard, select_shard
from fgvc.data.dataset import load_dataset_info
from fgvc.errors import FGVCError
from fgvc.grid.halving import (HALVING_ORDERS, PRUNED, Halving, check_halving, decide, group_of, read_val_curve,
                               row_status, trials_of)
from fgvc.runs.inputs import check_reuse
from fgvc.io import clean_temps, is_no_space, no_space_error, outside
from fgvc.runs.table import read_run_row, rebuilt_after, space_needed_mb, write_runs_csv
from fgvc.runs.write import ROW_COLUMNS, console
from fgvc.config import RunOptions
from fgvc.grid.claims import claim_path, read_holder, remove_dead_claims
from fgvc.grid.owner import claim_folder, own_benchmark, record_grid
from fgvc.grid.worker import Worker, result_text, snapshot, train_claimed


RESULTS = Path("results")  # where a grid's output folder goes by default: results/<grid name>


def default_out(grid_name: str) -> Path:
    """results/<grid name>, refused (before anything runs) when the name would lead out of results/."""
    why = outside(RESULTS, str(grid_name))
    if why or str(grid_name).strip() in ("", "."):
        raise FGVCError(f"grid name {grid_name!r}: {why or 'is empty'}, so the default output folder "
                        f"{RESULTS}/<name> would not be a folder inside {RESULTS}/; give the grid a plain name "
                        "(name: in its YAML, or --set name=...) or choose the folder with --out")
    return RESULTS / grid_name


# Temporaries in folders others may be writing to at this moment are removed only when
# they have not changed for this long (runs.csv is written in milliseconds; a decoded
# split of the full CUB in about a minute).
SHARED_TEMP_AGE_S = 60.0
CACHE_TEMP_AGE_S = 600.0


def clean_shared_temps(out: Path) -> list[str]:
    """Remove what killed writes left in OUT, OUT/claims and the decoded-image cache, and the
    claims of workers that are gone; the lines that say so (run folders are cleaned by the
    worker that claims them, finished ones by `clean_done`)."""
    from fgvc.data.cache import default_cache_dir

    removed = (clean_temps(out, SHARED_TEMP_AGE_S) + clean_temps(out / "claims", SHARED_TEMP_AGE_S)
               + clean_temps(default_cache_dir(), CACHE_TEMP_AGE_S))
    return ([f"  removed {p}, left by an interrupted write" for p in removed]
            + [f"  removed the claim of {h.path.stem}, left by a worker that is gone ({h.describe()})"
               for h in remove_dead_claims(out)])


def clean_done(done: list[RunConfig], out: Path) -> list[str]:
    """Remove the temporaries a killed write left in finished run folders (the final checkpoint's,
    written after row.json) whose run no live worker holds; the lines that say so."""
    notes = []
    for cfg in done:
        holder = read_holder(claim_path(out, cfg.run_id))
        if holder is not None and not holder.dead():
            continue  # its worker may still be writing the final checkpoint
        notes += [f"  {cfg.run_id}: removed {p.name}, left by an interrupted write"
                  for p in clean_temps(out / "runs" / cfg.run_id)]
    return notes


def _repair_final_checkpoint(run_dir: Path, cfg: RunConfig, echo: Callable[[str], None]) -> str | None:
    """A finished run cut off between row.json and its final checkpoint still holds the last
    epoch's checkpoint (the same weights): make the final one from it. Returns why the run is
    damaged instead: a kept checkpoint that does not load (a finished run keeps its model)."""
    from fgvc.engine.checkpoint import CHECKPOINT, finalize, is_final

    path = run_dir / CHECKPOINT
    final = is_final(path)
    if final is None and path.is_file():
        return f"its {CHECKPOINT} does not load (it is set aside)"
    if final is not False:
        return None  # final, or absent (committed results keep none)
    if finalize(path, cfg.epochs - 1):
        echo(f"  repaired {cfg.run_id}: its final checkpoint was not written; made it from the last epoch's")
    else:
        echo(f"  warning: {cfg.run_id}: its results are whole but {path} holds an earlier epoch, not the final "
             "model (fgvc validate of this run will refuse it)")


def plan(configs: list[RunConfig], out: Path,
         echo: Callable[[str], None] = lambda m: None) -> tuple[list[RunConfig], list[RunConfig]]:
    """(to do, already done) by the run folders' row.json status. A run whose row.json says
    ok but is malformed or whose files are broken (fgvc.runs.health) is damaged: it is to do,
    and `echo` says which and why."""
    todo, done = [], []
    for cfg in configs:
        run_dir = out / "runs" / cfg.run_id
        if not (run_dir / "row.json").is_file():
            todo.append(cfg)
            continue
        row, problems = read_run_row(run_dir / "row.json")
        if row is not None and row["status"] == "ok" and not problems:
            problem = _repair_final_checkpoint(run_dir, cfg, echo)
            if problem is None:
                done.append(cfg)
                continue
            problems = [problem]
        if problems:
            echo(f"  damaged {cfg.run_id}: {'; '.join(problems)}; it is trained again")
        todo.append(cfg)
    return todo, done


def check_writable(out: Path) -> None:
    """OUT (and OUT/runs where it exists; else the folder OUT will be made in) can be
    written, or one error before any training. Leaves nothing behind."""
    import tempfile

    folders = [f for f in (out, out / "runs") if f.is_dir()]
    if not folders:
        parent = out.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        folders = [parent]
    try:
        for folder in folders:
            if not folder.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(folder))
            with tempfile.NamedTemporaryFile(prefix=".write-test.", dir=folder):
                pass
    except OSError as e:
        raise FGVCError(f"output folder {out} is not writable ({type(e).__name__}: {e.strerror or e}); "
                        "choose another --out or fix its permissions") from None


def preflight(configs: list[RunConfig], opts: RunOptions, info) -> None:
    """Catch bad input before any training: trackers, the output folder, every image, validation
    splits, model names, weights, batch size. (manifest.csv itself is checked on loading.)"""
    from fgvc.data.check import image_problems, one_line
    from fgvc.data.dataset import check_batch_fits, stratified_val_split
    from fgvc.engine.trackers import check_available
    from fgvc.models import build_model

    check_available(opts.trackers)
    check_writable(Path(opts.out))
    problems = image_problems(info.root, info.manifest.path, info.content_sha256)
    if problems:
        raise FGVCError(f"dataset {info.root}: {len(problems)} image(s) cannot be used: {one_line(problems)}; "
                        f"run python -m data_prep.verify {info.root}")
    num_train = int(info.manifest.is_train.sum())
    splits = sorted({(c.val_fraction, c.val_seed) for c in configs if c.val_fraction > 0})
    train_sizes = {}
    for fraction, seed in splits:
        train_sizes[fraction, seed] = len(stratified_val_split(info.split(True), fraction, seed)[0])
    for model in sorted({c.model for c in configs}):
        pretrained = next(c.pretrained for c in configs if c.model == model)
        build_model(model, 2, pretrained=pretrained, pretrained_file=opts.pretrained_file)
    for cfg in configs:
        check_batch_fits(cfg.batch_size, train_sizes.get((cfg.val_fraction, cfg.val_seed), num_train), opts.data,
                         cfg.val_fraction)


def _own_rows(frame: pd.DataFrame, configs: list[RunConfig], shard: Shard | None) -> pd.DataFrame:
    """A shard answers for its own runs only (its exit status must not fail on another's)."""
    if shard is None or frame.empty:
        return frame
    return frame[frame.run_id.isin({c.run_id for c in configs})].reset_index(drop=True)


def _expand(grid_path, overrides, shard) -> tuple[list[RunConfig], list[RunConfig], Shard | None, Halving | None,
                                                  str | None]:
    """(the whole grid, this shard's runs, the shard, the grid's halving rule, the sweep a
    confirmation grid names in `selected_from`)."""
    grid = load_grid(grid_path, overrides)
    if "benchmark" not in grid and grid_path is not None:
        grid["benchmark"] = [Path(grid_path).stem]
    everything = expand_grid(grid)
    if shard is not None and not isinstance(shard, Shard):
        shard = Shard(*shard)
    halving = grid.get(HALVING)
    if halving is not None:
        check_halving(halving, everything)
        if shard is not None:
            raise FGVCError(f"shard {shard}: a grid with halving ranks every run's validation score at each rung, "
                            "which one shard cannot see: run it whole (--jobs N for several runs at a time)")
    return everything, select_shard(everything, shard), shard, halving, grid.get(SELECTED_FROM)


def check_confirmation(everything: list[RunConfig], out: Path, selected: str, echo: Callable[[str], None]) -> None:
    """A confirmation grid against the sweep it names (a results folder beside OUT): refused
    with its errors (old seeds, settings the sweep did not choose, a sweep still under way);
    warnings are printed (fgvc.report.protocol.planned_checks)."""
    from fgvc.report.protocol import planned_checks, sweep_dir_of

    sweep = sweep_dir_of(out, selected)
    checks = planned_checks(everything, sweep)
    errors = [c.text for c in checks if c.level == "error"]
    if errors:
        raise FGVCError(f"{SELECTED_FROM}: {sweep.name}: {' '.join(errors)}")
    for c in checks:
        echo(f"confirmation check, {c.name}: {c.level}: {c.text}")


def _weights_of(opts: RunOptions) -> Callable[[RunConfig], dict]:
    """cfg -> the weights it would load now (hashed once per model and pretrained setting)."""
    from functools import lru_cache

    from fgvc.models import weights_info

    @lru_cache(maxsize=None)
    def of(model: str, pretrained) -> dict:
        return weights_info(model, pretrained, opts.pretrained_file)

    return lambda cfg: of(cfg.model, cfg.pretrained)


def _frame(out: Path, configs: list[RunConfig], shard: Shard | None) -> pd.DataFrame:
    if (out / "runs").is_dir():
        try:
            write_runs_csv(out)
        except OSError:
            pass  # a read-only results folder with nothing to do: its runs.csv is read as it is
    frame = pd.read_csv(out / "runs.csv") if (out / "runs.csv").is_file() else pd.DataFrame(columns=ROW_COLUMNS)
    return _own_rows(frame, configs, shard)


def run_benchmark(grid_path: str | Path | None, opts: RunOptions, overrides: dict | None = None,
                  echo: Callable[[str], None] = console, dry_run: bool = False, jobs: int = 1,
                  shard: Shard | tuple[int, int] | None = None, force_mix: bool = False,
                  halving_order: str = "rung") -> pd.DataFrame:
    """Expand, check and run a grid (or one shard of it), `jobs` runs at a time; returns the
    runs.csv frame (with a shard: only that shard's rows). `force_mix`: run it in an OUT that
    belongs to another grid (fgvc.grid.owner); `halving_order`: see `run_halving`."""
    if jobs < 1:
        raise FGVCError(f"invalid --jobs {jobs}: use 1 or more (runs trained at the same time on one device)")
    if halving_order not in HALVING_ORDERS:
        raise FGVCError(f"invalid halving order {halving_order!r}: use one of {', '.join(HALVING_ORDERS)}")
    everything, configs, shard, halving, selected = _expand(grid_path, overrides, shard)
    out = Path(opts.out)
    names = sorted({c.benchmark for c in everything})
    claim_folder(out, names, force_mix, dry_run=True)  # refused before anything is read; recorded before training
    if selected:
        check_confirmation(everything, out, selected, echo)
    info = load_dataset_info(opts.data)
    check_reuse(configs, out, info, _weights_of(opts))  # before anything is skipped, resumed or trained
    notes: list[str] = [] if dry_run else clean_shared_temps(out)
    todo, done = plan(configs, out, notes.append)
    notes += [] if dry_run else clean_done(done, out)
    snap = snapshot(todo, out)  # what this worker saw: a row written after it was written by another worker
    which = (f"shard {shard} ({shard.origin}): {len(configs)} of the {len(everything)} runs in grid"
             if shard is not None else f"{len(configs)} runs in grid")
    echo(f"benchmark {everything[0].benchmark}: {which}, {len(done)} done, {len(todo)} to do; "
         f"data {info.root} ({info.num_classes} classes, {int(info.manifest.is_train.sum())} train / "
         f"{int((info.manifest.is_train == 0).sum())} test); out {out}")
    if info.stale:
        echo(f"warning: {info.root}: {info.stale}; runs record the files' checksum "
             f"(python -m data_prep.verify {info.root} lists what changed)")
    for line in notes + [f"  done   {c.run_id}" for c in done] + [f"  to do  {c.run_id}" for c in todo]:
        echo(line)
    if halving is not None:
        echo(halving_status(configs, halving, out))
    if dry_run or not todo:
        return _frame(out, configs, shard)
    preflight(todo, opts, info)
    claim_folder(out, names, force_mix)  # OUT/grids.json: a grid started meanwhile on this OUT is refused here
    record_grid(out, grid_path, overrides)  # after every check: a refused grid writes nothing
    started = time.perf_counter()
    with rebuilt_after(out):
        try:
            if halving is not None:
                run_halving(configs, halving, opts, info, out, echo, jobs, halving_order)
            else:
                train_runs(todo, opts, info, out, echo, jobs, snap)
        except OSError as e:  # a full disk met outside a run (runs.csv, a pruned row): one line too
            if not is_no_space(e):
                raise
            raise no_space_error(out, space_needed_mb(out)) from None
    echo(f"finished {len(todo)} runs in {(time.perf_counter() - started) / 60:.1f} min; "
         f"results in {out / 'runs.csv'}")
    return _own_rows(pd.read_csv(out / "runs.csv"), configs, shard)


def train_runs(todo: list[RunConfig], opts: RunOptions, info, out: Path, echo: Callable[[str], None], jobs: int,
               snap: dict | None = None) -> None:
    """Train `todo` (each to the end, or to `opts.stop_after`), `jobs` at a time."""
    if jobs > 1:
        from fgvc.grid.pool import run_concurrently

        echo(f"running {len(todo)} runs, {min(jobs, len(todo))} at a time")
        run_concurrently(todo, opts, jobs, out, echo, snap, info)
    else:
        run_serially(todo, opts, info, out, echo, snap)


# --------------------------------------------------------------------------- successive halving
def _reached(out: Path, cfg: RunConfig, rung: int | None) -> bool:
    """Has the run trained to `rung` (None: to the end), or ended (finished or failed)?"""
    run_dir = out / "runs" / cfg.run_id
    if row_status(run_dir) in ("ok", "failed"):
        return True
    return rung is not None and len(read_val_curve(run_dir)) >= rung


def halving_status(configs: list[RunConfig], halving: Halving, out: Path) -> str:
    d = decide(trials_of(configs, out), halving)
    where = f"next rung epoch {d.next_rung}" if d.next_rung is not None else "every rung decided"
    return f"halving ({halving}): {len(d.pruned)} run(s) pruned, {len(d.alive)} going on; {where}"


def _mark_pruned(configs: list[RunConfig], pruned: dict, opts: RunOptions, out: Path,
                 echo: Callable[[str], None]) -> None:
    """Write the row.json of each newly pruned run (status pruned, its epochs, its last
    validation top-1, why, the device it trained on); finished and failed runs keep theirs."""
    from fgvc.runs.inputs import started_inputs
    from fgvc.runs.write import make_row
    from fgvc.engine.device import describe_device, resolve_device
    from fgvc.engine.provenance import git_state
    from fgvc.io import atomic_write_json

    weights = _weights_of(opts)
    commit, _ = git_state()
    here = describe_device(resolve_device(opts.device))  # for runs that recorded none (older folders)
    for cfg in configs:
        p = pruned.get(cfg.run_id)
        run_dir = out / "runs" / cfg.run_id
        if p is None or row_status(run_dir) in ("ok", "failed"):
            continue
        device = started_inputs(run_dir).get("device") or here
        row = make_row(own_benchmark(cfg, run_dir), weights(cfg), device, commit, status=PRUNED, error=p.text(),
                       epochs=p.rung, val_top1=p.score)
        old = read_run_row(run_dir / "row.json")[0] if (run_dir / "row.json").is_file() else None
        if old is None or old.get("error") != row["error"]:
            atomic_write_json(run_dir / "row.json", row)
            echo(f"  pruned {cfg.run_id}: {p.text()}")


def _revive(alive: list[RunConfig], out: Path, echo: Callable[[str], None]) -> None:
    """A pruned run whose setting ranks among the kept now (the grid gained settings) goes on."""
    for cfg in alive:
        run_dir = out / "runs" / cfg.run_id
        if row_status(run_dir) == PRUNED:
            (run_dir / "row.json").unlink()
            echo(f"  {cfg.run_id}: its setting ranks among the kept now; it resumes where it was pruned")


def run_halving(configs: list[RunConfig], halving: Halving, opts: RunOptions, info, out: Path,
                echo: Callable[[str], None], jobs: int, order: str = "rung") -> None:
    """Successive halving (fgvc.grid.halving), by `order`: "rung", every run to a rung before the
    next (the most runs at a time); "method", one (model, method) group through every rung before
    the next. The same decisions (the rule ranks within a group); by method, a session cut off
    loses at most one group's epochs (checkpoints never leave the machine)."""
    if order != "method":
        return _halve(configs, halving, opts, info, out, echo, jobs)
    groups = {g: [c for c in configs if group_of(c) == g] for g in dict.fromkeys(map(group_of, configs))}
    for i, (name, part) in enumerate(groups.items(), 1):
        echo(f"halving by method: {name}, group {i} of {len(groups)} ({len(part)} runs)")
        _halve(part, halving, opts, info, out, echo, jobs)


def _halve(configs: list[RunConfig], halving: Halving, opts: RunOptions, info, out: Path,
           echo: Callable[[str], None], jobs: int) -> None:
    """Train the going-on runs to the next rung, decide, repeat; the last survivors to the end."""
    while True:
        d = decide(trials_of(configs, out), halving)
        _mark_pruned(configs, d.pruned, opts, out, echo)
        alive = [c for c in configs if c.run_id in set(d.alive)]
        _revive(alive, out, echo)
        todo = [c for c in alive if not _reached(out, c, d.next_rung)]
        if not todo:
            if d.next_rung is None:
                return
            raise FGVCError(f"halving: every going-on run has reached epoch {d.next_rung} but their validation "
                            "scores cannot be read from metrics.csv; check the runs' val_top1")
        stage = f"to epoch {d.next_rung}" if d.next_rung is not None else "to the end"
        echo(f"halving: training {len(todo)} of {len(alive)} going-on run(s) {stage}")
        train_runs(todo, replace(opts, stop_after=d.next_rung), info, out, echo, jobs, snapshot(todo, out))
        write_runs_csv(out)
        stuck = [c.run_id for c in todo if not _reached(out, c, d.next_rung)]
        if stuck:
            raise FGVCError(f"halving: {len(stuck)} run(s) did not reach epoch {d.next_rung or 'the end'} "
                            f"({', '.join(stuck[:3])}{', ...' if len(stuck) > 3 else ''}); rerun to continue")


def run_serially(todo: list[RunConfig], opts: RunOptions, info, out: Path, echo: Callable[[str], None],
                 snap: dict | None = None) -> None:
    """One run after another in this process (one worker of the work queue), with an ETA
    from the epochs seen so far."""
    remaining_epochs = sum(min(c.epochs, opts.stop_after or c.epochs) for c in todo)
    epoch_seconds: list[float] = []
    count = 0

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

    run_opts = replace(opts, on_epoch_end=on_epoch_end)

    def train(cfg: RunConfig, claim) -> dict:
        nonlocal count
        count += 1
        echo(f"[{count}/{len(todo)}] {cfg.run_id}")
        row = train_claimed(cfg, run_opts, claim, info, log=echo)
        echo(f"[{count}/{len(todo)}] {cfg.run_id}: {result_text(row)}"
             + (f"; {eta()}" if row["status"] == "ok" and remaining_epochs and epoch_seconds else ""))
        return row

    Worker(out, snapshot(todo, out) if snap is None else snap, train, echo, stop_after=opts.stop_after).work(todo)

__all__ = ["run_benchmark", "plan", "default_out", "train_runs", "run_halving", "halving_status"]
