"""`fgvc speed`: the measurements (the package docstring, fgvc/speed/__init__.py, says what is
timed and how; the command line shows it as the help text)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from fgvc.speed import reference_loops as ref
from fgvc.errors import FGVCError
from fgvc.names import slug

SPEED_COLUMNS = ["pipeline", "device", "model", "weights", "batch_size", "image_size", "workers", "train_img_s",
                 "eval_img_s", "epoch_seconds", "train_batches_timed", "epoch_extrapolated", "repeats",
                 "speedup_train", "speedup_epoch", "notes", "compile_seconds", "compile_warm_seconds"]
GRID_COLUMNS = ["who", "grid", "runs", "epochs", "jobs", "wall_seconds", "extrapolated", "speedup", "notes"]
RUN_COLUMNS = ["who", "run_seconds", "train_img_s", "epochs_timed", "extrapolated", "speedup_vs_cached",
               "speedup_vs_examples"]
NOTES = {
    "examples": "pytorch/examples-style loop: PIL decode per sample, torchvision transforms, fp32, NCHW; "
                "test evaluated every epoch",
    "cached": "decode once to memory, torchvision v2 in DataLoader workers, channels_last, fp32; "
              "test evaluated once at the end",
}


# --------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, int]:
    _sync(device)
    t0 = time.perf_counter()
    n = fn()
    _sync(device)
    return time.perf_counter() - t0, n


def measure(train_step, eval_pass, device, warmup: int, repeats: int) -> dict:
    """Warm up, then `repeats` x (timed train batches, timed evaluation); medians. cudnn
    autotuning for every loop (each runs in its own process)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    if warmup:
        train_step(warmup)
    warmup_seconds = time.perf_counter() - t0
    train, evals = [], []
    for _ in range(repeats):
        train.append(timed(lambda: train_step(None), device))
        evals.append(timed(eval_pass, device))
    return dict(train_img_s=statistics.median(n / s for s, n in train),
                eval_img_s=statistics.median(n / s for s, n in evals),
                train_images=train[0][1], eval_images=evals[0][1], warmup_seconds=warmup_seconds)


def _model(args, num_classes: int, device: torch.device, channels_last: bool, precision: str = "fp32"):
    from fgvc.engine.device import place_model
    from fgvc.models import build_model

    m = build_model(args.model, num_classes, pretrained=args.pretrained, pretrained_file=args.pretrained_file, seed=0)
    return place_model(m, device, channels_last, precision)


def _sgd(model, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)


def measure_examples(args, info, device, dcfg, train_batches: int) -> dict:
    model = _model(args, info.num_classes, device, channels_last=False)
    opt = _sgd(model, args.lr)
    train_loader, test_loader = ref.examples_loaders(info, args.image_size, args.crop_pct, dcfg["mean"], dcfg["std"],
                                                     args.batch_size, args.workers, device.type == "cuda")
    res = measure(lambda k: ref.examples_train(model, train_loader, opt, device, k or train_batches),
                  lambda: ref.examples_eval(model, test_loader, device), device, args.warmup_batches, args.repeats)
    return dict(res, workers=args.workers, setup_seconds=0.0)


def measure_cached(args, info, device, dcfg, train_batches: int) -> dict:
    model = _model(args, info.num_classes, device, channels_last=True)
    opt = _sgd(model, args.lr)
    t0 = time.perf_counter()
    train_loader, test_loader = ref.cached_loaders(info, args.image_size, args.crop_pct, dcfg["mean"], dcfg["std"],
                                                   args.batch_size, args.workers, device.type == "cuda")
    setup = time.perf_counter() - t0
    res = measure(lambda k: ref.cached_train(model, train_loader, opt, device, k or train_batches),
                  lambda: ref.cached_eval(model, test_loader, device), device, args.warmup_batches, args.repeats)
    return dict(res, workers=args.workers, setup_seconds=setup)


def measure_fgvc(args, info, device, train_batches: int) -> dict:
    """fgvc's own loaders, loop and predict; also its setup (decoding) and the files a run writes.
    With --compile also the compilation, cold and from the warm cache (`compile_costs`)."""
    from fgvc.config import RunConfig
    from fgvc.data.loaders import build_loaders
    from fgvc.data.sampling import drop_last_batch
    from fgvc.runs.write import write_outputs
    from fgvc.engine.device import configure_backends, resolve_precision
    from fgvc.engine.loop import predict, train_one_epoch
    from fgvc.models import WithFeatures, data_config

    cfg = RunConfig(model=args.model, pretrained=args.pretrained, batch_size=args.batch_size,
                    image_size=args.image_size, crop_pct=args.crop_pct, lr=args.lr, epochs=1).validate()
    precision = resolve_precision(args.precision, device)
    configure_backends(device, deterministic=False)  # as a run does (on CPU: keep_freed_memory)
    model = _model(args, info.num_classes, device, channels_last=True, precision=precision)
    frames = {"train": info.split(True), "test": info.split(False), "val": None}
    n_train = len(frames["train"])
    short = 0 if drop_last_batch(n_train, args.batch_size, 1) else n_train % args.batch_size
    t0 = time.perf_counter()
    data = build_loaders(cfg, info, frames, data_config(model), device, pipeline=args.pipeline,
                         workers=args.fgvc_workers)
    setup = time.perf_counter() - t0
    opt, epoch, last = _sgd(model, args.lr), itertools.count(), {}

    def train_step(k):
        data.set_epoch(next(epoch))
        batches = itertools.islice(data.train, k or train_batches)
        if k and args.compile:  # the warm-up compiles the graph of an epoch's smaller last batch too
            batches = and_a_short_batch(batches, short)
        return train_one_epoch(net, None, opt, batches, device, precision=precision, progress=False)["train_images"]

    def eval_pass():
        last["out"] = predict(model, data.test, device, precision=precision, progress=False)
        return len(last["out"]["labels"])

    with cold_compile_cache(args.compile):
        net = torch.compile(WithFeatures(model)) if args.compile else WithFeatures(model)
        res = measure(train_step, eval_pass, device, args.warmup_batches, args.repeats)
        if args.compile:
            res.update(compile_costs(res, train_step, args.warmup_batches,
                                     args.warmup_batches * args.batch_size + short))
    with tempfile.TemporaryDirectory() as tmp:
        ids = frames["test"].image_id.to_numpy()
        t0 = time.perf_counter()
        write_outputs(Path(tmp), ids, last["out"], ids, last["out"])
        artifacts = time.perf_counter() - t0
    return dict(res, workers=data.workers, pipeline=data.pipeline, precision=precision, setup_seconds=setup,
                artifacts_seconds=artifacts, compiled=args.compile)


def and_a_short_batch(batches, size: int):
    """`batches`, then the last of them again cut to `size` images (none when 0): an epoch's
    smaller last batch, which a compiled model compiles a second graph for (dynamic shapes)."""
    x = y = None
    for x, y in batches:
        yield x, y
    if x is not None and size:
        yield x[:size], y[:size]


@contextlib.contextmanager
def cold_compile_cache(cold: bool = True):
    """An empty inductor cache while measuring (a grid's first run on a new machine compiles
    everything), then the cache before; nothing when not `cold`."""
    if not cold:
        yield
        return
    old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="fgvc-inductor-") as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tmp
        try:
            torch.compiler.reset()
            yield
        finally:
            torch.compiler.reset()
            if old is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = old


def compile_costs(res: dict, train_step, warmup_batches: int, warmup_images: int) -> dict:
    """The compilation charged to runs: in the untimed warm-up with an empty cache
    (`compile_seconds`: a grid's first run), and in the same warm-up again after
    `torch.compiler.reset()`, as fgvc.engine.device.compile_model does before every run, from
    the cache the first one filled (`compile_warm_seconds`: every later run of the grid, in any
    process). Each is the warm-up's time less its images at the measured training rate."""
    training = warmup_images / res["train_img_s"]
    torch.compiler.reset()
    t0 = time.perf_counter()
    train_step(warmup_batches)
    warm = time.perf_counter() - t0
    return dict(compile_seconds=max(0.0, res["warmup_seconds"] - training),
                compile_warm_seconds=max(0.0, warm - training))


# --------------------------------------------------------------------------- report
def device_slug(device: torch.device) -> str:
    if device.type == "cuda":
        return "cuda-" + re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name(device)).strip("_")
    return "cpu"


def epoch_seconds(res: dict, n_train: int, n_test: int, batch_size: int) -> float:
    """Train images (a last batch of one is dropped) at the training rate, then the test set."""
    return train_seconds(res, n_train, batch_size) + n_test / res["eval_img_s"]


def train_seconds(res: dict, n_train: int, batch_size: int) -> float:
    return (n_train - (n_train % batch_size == 1)) / res["train_img_s"]


def run_seconds(who: str, res: dict, recipe, n: dict, batch_size: int, first: bool = True) -> float:
    """One default run's wall time as `who` runs it (see the module docstring). With --compile
    the first run of a grid pays the compilation (`compile_seconds`), a later one loads the
    compiled code from the on-disk cache (`compile_warm_seconds`)."""
    from fgvc.train import tests_after

    epochs = recipe.epochs
    train = epochs * train_seconds(res, n["train"], batch_size)
    test = n["test"] / res["eval_img_s"]
    if who == "examples":
        return train + epochs * test
    if who == "cached":
        return res["setup_seconds"] + train + test
    tests = sum(tests_after(recipe, e) for e in range(epochs))
    compiling = res.get("compile_seconds", 0.0) if first else res.get("compile_warm_seconds", 0.0)
    return (res["setup_seconds"] + compiling + train + tests * test
            + epochs * n["val"] / res["eval_img_s"] + n["train"] / res["eval_img_s"] + res["artifacts_seconds"])


def run_rows(results: dict, recipe, n: dict, batch_size: int, epochs_timed: float) -> list[dict]:
    secs = {who: run_seconds(who, results[who], recipe, n, batch_size) for who in results}
    return [dict(who=who, run_seconds=round(secs[who], 1), train_img_s=round(results[who]["train_img_s"], 2),
                 epochs_timed=round(epochs_timed, 2), extrapolated=epochs_timed < recipe.epochs,
                 speedup_vs_cached=round(secs["cached"] / secs[who], 3),
                 speedup_vs_examples=round(secs["examples"] / secs[who], 3)) for who in results]


def epoch_rows(results: dict, prov: dict, args, device, n: dict, k: int, epoch_batches: int) -> list[dict]:
    per_epoch = {who: epoch_seconds(results[who], n["train"], n["test"], args.batch_size) for who in results}
    rows = []
    for who, r in results.items():
        pipeline = who if who in NOTES else f"fgvc-{r['pipeline']}" + ("-compiled" if r["compiled"] else "")
        rows.append(dict(
            pipeline=pipeline, device=device_slug(device),
            model=args.model, weights=prov["weights"], batch_size=args.batch_size, image_size=args.image_size,
            workers=r["workers"], train_img_s=round(r["train_img_s"], 2), eval_img_s=round(r["eval_img_s"], 2),
            epoch_seconds=round(per_epoch[who], 2), train_batches_timed=k, epoch_extrapolated=k < epoch_batches,
            repeats=args.repeats, speedup_train=round(r["train_img_s"] / results["examples"]["train_img_s"], 3),
            speedup_epoch=round(per_epoch["examples"] / per_epoch[who], 3), notes=NOTES.get(who) or _fgvc_note(r),
            **{c: round(r[c], 1) if c in r else None for c in ("compile_seconds", "compile_warm_seconds")}))
    return rows


def _fgvc_note(r: dict) -> str:
    return ("fgvc: decode once, " + ("batched augmentation on the device" if r["pipeline"] == "batched"
                                     else "per-sample augmentation from memory")
            + f", {r['precision']}, channels_last" + (", torch.compile" if r.get("compiled") else ""))


def grid_seconds(who: str, res: dict, configs: list, n: dict, batch_size: int) -> float:
    """The runs of a grid one after another (one worker): with --compile the compilation is paid
    once, by the first run; the others load it from the on-disk cache."""
    return sum(run_seconds(who, res, c, n, batch_size, first=i == 0) for i, c in enumerate(configs))


def grid_rows(grid: Path, results: dict, n: dict, batch_size: int, jobs: int, measured: float | None) -> list[dict]:
    """The grid's wall time: each loop's runs one after another (extrapolated); fgvc's (the
    compiled one where it was measured: `--measure-grid` runs the grid as `--compile` says) measured if asked."""
    from fgvc.config import expand_grid, load_grid

    measured_who = "fgvc-compiled" if "fgvc-compiled" in results else "fgvc"
    configs = expand_grid(load_grid(grid))
    epochs = sum(c.epochs for c in configs)
    wall = {who: grid_seconds(who, results[who], configs, n, batch_size) for who in results}
    base = dict(grid=grid.name, runs=len(configs), epochs=epochs)
    compiled = "; compiled by the first run, the others load it from the on-disk cache"
    rows = [dict(base, who=who, jobs=1, wall_seconds=round(wall[who], 1), extrapolated=True,
                 speedup=round(wall["examples"] / wall[who], 2),
                 notes="runs one after another; measured rates x each run's work (see -run.csv)"
                       + (compiled if "compile_seconds" in results[who] else ""))
            for who in results if who != measured_who or measured is None]
    if measured is not None:
        rows.append(dict(base, who=measured_who, jobs=jobs, wall_seconds=round(measured, 1), extrapolated=False,
                         speedup=round(wall["examples"] / measured, 2),
                         notes="fgvc benchmark run for real (training, evaluation and feature export)"))
    return rows


def measure_grid(args, device) -> float:
    from fgvc.grid.benchmark import run_benchmark
    from fgvc.config import RunOptions

    with tempfile.TemporaryDirectory() as tmp, cold_compile_cache(args.compile):  # the grid compiles from nothing
        opts = RunOptions(data=args.data, out=Path(tmp), pretrained_file=args.pretrained_file, device=str(device),
                          progress=False, pipeline=args.pipeline, compile=args.compile, precision=args.precision)
        t0 = time.perf_counter()
        run_benchmark(args.grid, opts, {"model": args.model, "pretrained": args.pretrained}, echo=lambda m: None,
                      jobs=args.jobs)
        return time.perf_counter() - t0


def speed_provenance(args, info, device) -> dict:
    """A measurement's provenance (fgvc.engine.provenance.measurement_provenance) for these arguments."""
    from fgvc.engine.provenance import measurement_provenance
    from fgvc.models import weights_info

    winfo = weights_info(args.model, args.pretrained, args.pretrained_file)
    return measurement_provenance(args.model, winfo, info, device, vars(args) | {"func": None})


def check_args(args) -> None:
    for key in ("batch_size", "repeats", "image_size"):
        if getattr(args, key) < 1:
            raise FGVCError(f"invalid --{key.replace('_', '-')} {getattr(args, key)}: must be >= 1")
    if args.warmup_batches < 0 or args.workers < 0 or (args.fgvc_workers or 0) < 0 or args.jobs < 1:
        raise FGVCError("invalid --warmup-batches/--workers/--fgvc-workers/--jobs: need >= 0, >= 0, >= 0 and >= 1")
    if args.compile and args.warmup_batches < 1:
        raise FGVCError("--compile needs --warmup-batches >= 1: the compilation is measured in the warm-up")


def in_fresh_process(fn, *args):
    """fn(*args) in a new (spawned) Python process: every loop is measured from the same clean
    start. Measured in one process after the two references (their DataLoader worker processes,
    heap and threads), fgvc's training ran 16-23% slower on 2 CPU cores than alone."""
    import concurrent.futures
    import multiprocessing

    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def measure_all(args, info, device, k: int, echo) -> dict:
    from fgvc.models import data_config

    dcfg = data_config(_model(args, info.num_classes, torch.device("cpu"), channels_last=False))
    loops = {"examples": (measure_examples, (args, info, device, dcfg, k)),
             "cached": (measure_cached, (args, info, device, dcfg, k)),
             "fgvc": (measure_fgvc, (argparse.Namespace(**vars(args) | {"compile": False}), info, device, k))}
    if args.compile:  # eager and compiled side by side
        loops["fgvc-compiled"] = (measure_fgvc, (args, info, device, k))
    results = {}
    for who, (fn, fn_args) in loops.items():
        echo(f"measuring {who}: {NOTES.get(who, 'fgvc: its own loaders, loop and predict')}"
             + (", torch.compile" if who == "fgvc-compiled" else "") + " ...")
        results[who] = fn(*fn_args) if args.same_process else in_fresh_process(fn, *fn_args)
        echo(f"  {who}: {results[who]['train_img_s']:.1f} train img/s, {results[who]['eval_img_s']:.1f} eval img/s, "
             f"setup {results[who]['setup_seconds']:.1f}s")
    return results


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    from fgvc.io import atomic_path

    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False)


def image_counts(info, recipe) -> dict:
    """The train and test images, and the validation images the recipe holds out of the
    training ones: what `run_seconds` charges a run for."""
    train = int(info.manifest.is_train.sum())
    return dict(train=train, test=int((info.manifest.is_train == 0).sum()),
                val=round(recipe.val_fraction * train) if recipe.val_fraction else 0)


def recipe_record(recipe) -> dict:
    """The recipe a speed provenance JSON records (its identity and how often it tests)."""
    return recipe.identity() | {"eval_every": recipe.eval_every}


def run_speed(args, echo=print) -> tuple[Path, Path]:
    from fgvc.config import expand_grid, load_grid
    from fgvc.data.dataset import load_dataset_info
    from fgvc.engine.device import resolve_device
    from fgvc.io import atomic_write_json

    check_args(args)
    device = resolve_device(args.device)
    info = load_dataset_info(args.data)
    recipe = expand_grid(load_grid(args.grid))[0]  # the grid's first run stands for "one default run"
    n = image_counts(info, recipe)
    epoch_batches = n["train"] // args.batch_size
    if epoch_batches < 1:
        raise FGVCError(f"invalid --batch-size {args.batch_size}: larger than the {n['train']} training images")
    k = epoch_batches if args.train_batches is None else min(args.train_batches, epoch_batches)
    if k < 1:
        raise FGVCError(f"invalid --train-batches {args.train_batches}: must be >= 1")
    echo(f"speed on {device} ({torch.get_num_threads()} threads): {args.model}, batch {args.batch_size}, "
         f"{k} of {epoch_batches} training batches timed, {args.repeats} repeats after {args.warmup_batches} warm-up")
    results = measure_all(args, info, device, k, echo)
    prov = speed_provenance(args, info, device)  # once: it hashes the weights file and asks git
    out = Path(args.out)
    stem = f"{device_slug(device)}-{slug(args.model)}"
    measured = None
    if args.measure_grid:
        echo(f"running the grid {args.grid} with fgvc for real (--jobs {args.jobs}) ...")
        measured = measure_grid(args, device)
    out.mkdir(parents=True, exist_ok=True)
    rows = epoch_rows(results, prov, args, device, n, k, epoch_batches)
    runs = run_rows(results, recipe, n, args.batch_size, args.repeats * k / epoch_batches)
    grid = grid_rows(Path(args.grid), results, n, args.batch_size, args.jobs, measured)
    write_csv(out / f"{stem}.csv", rows, SPEED_COLUMNS)
    write_csv(out / f"{stem}-run.csv", runs, RUN_COLUMNS)
    write_csv(out / f"{stem}-grid.csv", grid, GRID_COLUMNS)
    atomic_write_json(out / f"{stem}.json", dict(prov, recipe=recipe_record(recipe)))
    _echo_summary(echo, rows, runs, grid, recipe)
    echo(f"wrote {stem}.csv, {stem}-run.csv, {stem}-grid.csv and {stem}.json in {out}")
    return out / f"{stem}.csv", out / f"{stem}-grid.csv"


def _echo_summary(echo, rows, runs, grid, recipe) -> None:
    for row in rows:
        echo(f"{row['pipeline']:>18}: {row['train_img_s']:8.1f} train img/s  {row['eval_img_s']:8.1f} eval img/s  "
             f"{row['epoch_seconds']:8.1f} s/epoch{' (extrapolated)' if row['epoch_extrapolated'] else ''}")
    for row in runs:
        echo(f"one {recipe.epochs}-epoch run, {row['who']:>8}: {row['run_seconds'] / 60:6.1f} min"
             f"{' (extrapolated)' if row['extrapolated'] else ''}  x{row['speedup_vs_cached']:.2f} vs cached, "
             f"x{row['speedup_vs_examples']:.2f} vs examples")
    for row in grid:
        echo(f"grid {row['grid']} ({row['runs']} runs, {row['epochs']} epochs), {row['who']}: "
             f"{row['wall_seconds'] / 60:.1f} min{' (extrapolated)' if row['extrapolated'] else ' (measured)'}")
