"""`fgvc benchmark` and `fgvc train`: their parsers (torch-free) and commands (which import
the trainer when they run). The options a run takes are defined once here, for both."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from fgvc.cli.defaults import DEFAULT_DATA
from fgvc.errors import FGVCError
from fgvc.grid.halving import HALVING_ORDERS


METHODS_HELP = """methods (--set method=NAME; formulas and defaults: docs/losses.md):
  ce                  cross-entropy alone (label_smoothing: its smoothing, every method's CE term)
  center              + lambda * center loss (center_weight; center_update, center_lr, center_alpha,
                      center_distance, center_normalize, center_per_class)
  contrastive_center  + lambda * contrastive-center loss (center_weight, center_lr, contrastive_delta)
  feature_norm        + lambda * mean ||x||^2: center loss with its centres at zero (a control)
  arcface, cosface    + lambda * ArcFace / CosFace (pytorch-metric-learning), own class weights
  supcon, triplet     + lambda * supervised contrastive / semi-hard triplet (pytorch-metric-learning)
  pairwise_confusion  + lambda * Pairwise Confusion on the softmax outputs
  max_entropy         - lambda * entropy of the softmax outputs
lambda is center_weight for every method."""


# The run keys most often set, as flags of their own (the same as `--set KEY=VALUE`; a value is
# read as YAML, so a grid takes a list: --seed [0,1,2]). Flag -> config key.
KEY_FLAGS = {"--model": "model", "--method": "method", "--seed": "seed", "--lr": "lr", "--epochs": "epochs",
             "--batch-size": "batch_size", "--center-weight": "center_weight",
             "--label-smoothing": "label_smoothing", "--val-fraction": "val_fraction"}


def _add_key_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run settings (any config key: --set KEY=VALUE)")
    for flag, key in KEY_FLAGS.items():
        g.add_argument(flag, dest=f"key_{key}", default=None, metavar="VALUE",
                       help=f"set {key} (as --set {key}=VALUE)")


def overrides_of(args) -> dict:
    """`--set KEY=VALUE` pairs and the key flags together, values parsed as YAML; a key given
    both ways is one clear error."""
    from fgvc.config import parse_overrides

    out = parse_overrides(args.overrides)
    flags = {key: v for flag, key in KEY_FLAGS.items() if (v := getattr(args, f"key_{key}", None)) is not None}
    for key, raw in flags.items():
        plural = {"method": "methods", "seed": "seeds"}.get(key)
        if key in out or (plural and plural in out):
            raise FGVCError(f"{key} is set twice: by --{key.replace('_', '-')} and by --set; give it once")
        out.update(parse_overrides([f"{key}={raw}"]))
    return out


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="prepared dataset folder with manifest.csv (default: %(default)s; make it with `make data`)")
    p.add_argument("--pretrained-file", type=Path, default=None, metavar="PATH",
                   help="local pretrained weights (safetensors or PyTorch state dict) instead of timm's download, "
                        "e.g. tf_efficientnet_lite0.in1k.safetensors")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, value parsed as YAML (repeatable): --set epochs=3 --set seeds=[0,1]")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers (default: 0 on CPU, where the model uses every core; up to 8 on GPU); "
                        "results do not depend on it")
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms(True): on CPU a repeated run gives identical metrics")
    p.add_argument("--pipeline", choices=("auto", "batched", "per-sample"), default="auto",
                   help="data path: 'batched' keeps the decoded images on the device and augments whole batches "
                        "there (no CPU workers), 'per-sample' augments each image in a DataLoader; same "
                        "distribution (default: auto = batched on CUDA, per-sample on CPU)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (opt-in: on a 2-core CPU it trained slower, even compiled once per "
                        "grid; compiled once, later runs load it from $FGVC_CACHE_DIR/inductor; docs/speed.md)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="bf16 autocast or fp32 for training and evaluation (default: auto = bf16 on CUDA and on a "
                        "CPU with bf16 instructions, AVX-512 BF16 / AMX; fp32 on other CPUs; docs/speed.md: 'bf16 on "
                        "CPU'). Recorded in provenance, not in the run id: pass fp32 to add runs to an fp32 grid")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (the one line per epoch is still printed)")
    p.add_argument("--log", dest="trackers", type=_trackers, default=(), metavar="TRACKERS",
                   help="also log to experiment trackers, one or several joined by commas: tensorboard (event "
                        "files in each run folder's tb/), mlflow (to --mlflow-uri), wandb (Weights & Biases; "
                        "offline into each run folder's wandb/ unless an API key is set up): per-epoch metrics, "
                        "the config as hyper-parameters, the final metrics. Optional extras: pip install "
                        "'fgvc[tensorboard,mlflow,wandb]' (make setup installs them). Not part of the run id")
    p.add_argument("--mlflow-uri", default=None, metavar="URI",
                   help="MLflow tracking URI for --log mlflow, e.g. http://localhost:5000 or sqlite:///mlflow.db "
                        "(default: a file store OUT/mlruns)")
    _add_key_flags(p)


def _trackers(text: str) -> tuple[str, ...]:
    from fgvc.engine.trackers import parse_trackers

    try:
        return parse_trackers(text)
    except FGVCError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _options(args, out: Path):
    from fgvc.config import RunOptions
    from fgvc.engine.trackers import check_available

    check_available(args.trackers)
    return RunOptions(data=args.data, out=out, pretrained_file=args.pretrained_file, device=args.device,
                      workers=args.workers, deterministic=args.deterministic, progress=args.progress,
                      pipeline=args.pipeline, compile=args.compile, precision=args.precision,
                      trackers=args.trackers, mlflow_uri=args.mlflow_uri)


def cmd_benchmark(args) -> int:
    from fgvc.grid.benchmark import default_out, run_benchmark
    from fgvc.grid.shards import parse_shard, shard_from_env
    from fgvc.config import load_grid
    from fgvc.engine.distributed import launched_by_torchrun
    from fgvc.grid.signals import stop_on_signals

    if launched_by_torchrun():
        raise FGVCError("`fgvc benchmark` runs whole grids and is not for torchrun: train one run on several "
                        "GPUs with `torchrun --nproc_per_node N -m fgvc train ...`, or use --jobs N / --shard i/n")
    overrides = overrides_of(args)
    # An explicit --shard wins over the Slurm array variables (--shard 0/1: the whole grid).
    shard = parse_shard(args.shard) if args.shard is not None else shard_from_env(os.environ)
    name = load_grid(args.grid, overrides).get("benchmark", [Path(args.grid).stem])[0]
    out = args.out or default_out(name)
    with stop_on_signals():  # Ctrl-C and SIGTERM (kill, Slurm) stop every worker: fgvc/grid/signals.py
        frame = run_benchmark(args.grid, _options(args, out), overrides, dry_run=args.dry_run, jobs=args.jobs,
                              shard=shard, force_mix=args.force_mix, halving_order=args.halving_order)
    failed = int((frame.status == "failed").sum()) if len(frame) else 0
    if failed:
        print(f"{failed} run(s) failed: see the error column of {out / 'runs.csv'}", file=sys.stderr)
    return 1 if failed else 0


def cmd_train(args) -> int:
    from fgvc.engine import distributed as dist_
    from fgvc.config import expand_grid, load_grid
    from fgvc.runs.write import console
    from fgvc.train import run

    if args.config is not None and args.config_file is not None:
        raise FGVCError("give the config once: as CONFIG or as --config, not both")
    configs = expand_grid(load_grid(args.config or args.config_file, overrides_of(args)))
    if len(configs) != 1:
        raise FGVCError(f"`fgvc train` runs one configuration, but the settings expand to {len(configs)} runs; "
                        "use single values (e.g. --seed 0 --method ce) or `fgvc benchmark`")
    cfg = configs[0]
    from fgvc.grid.benchmark import default_out

    out = args.out or default_out(cfg.benchmark)
    opts = _options(args, out)  # checks the trackers before anything is read
    # Under torchrun: join the process group (one process per GPU, or gloo on CPU).
    d, args.device = dist_.init(args.device)
    try:
        if not args.resume and d.main:
            (out / "runs" / cfg.run_id / "checkpoint.pt").unlink(missing_ok=True)
        elif args.resume:  # a checkpoint of other data or weights is not resumed (fgvc/runs/inputs.py)
            from fgvc.data.dataset import load_dataset_info
            from fgvc.runs.inputs import check_reuse
            from fgvc.models import weights_info

            check_reuse([cfg], out, load_dataset_info(args.data),
                        lambda c: weights_info(c.model, c.pretrained, args.pretrained_file))
        dist_.barrier()
        row = run(cfg, replace(opts, device=args.device), log=console)
    finally:
        dist_.shutdown()
    if d.main:
        print(f"{row['run_id']}: top1 {row['top1']:.2f}%  top5 {row['top5']:.2f}%  "
              f"mean-class {row['mean_class_acc']:.2f}%  -> {out / 'runs' / cfg.run_id}")
    return 0




def add_benchmark_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("benchmark", help="run a YAML grid of runs (skips finished runs, resumes interrupted ones)",
                       description="Expand a benchmark YAML (any key may be a list: the grid is the product) "
                                   "and run every run not yet finished. Results: OUT/runs/<run_id>/ and OUT/runs.csv.")
    p.add_argument("grid", help="benchmark YAML, e.g. benchmarks/sparrows.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: results/<benchmark name>)")
    p.add_argument("--dry-run", action="store_true", help="print the runs to do and exit")
    p.add_argument("--force-mix", action="store_true",
                   help="run the grid in an --out that belongs to another grid (OUT/grids.json): their runs.csv "
                        "and report then mix both; refused without it")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at the same time on the one device, each in its own process (a batch-32 "
                        "ResNet50 leaves a large GPU mostly idle; on CPU the cores are split between the jobs). "
                        "Results do not depend on it (default: %(default)s)")
    p.add_argument("--halving-order", choices=HALVING_ORDERS, default="rung",
                   help="for a grid with `halving`: 'rung' trains every run to a rung before the next rung (the most "
                        "runs at a time: GPUs, many --jobs); 'method' takes one method's runs through every rung "
                        "before the next method's. The same decisions (settings are ranked within a method); by "
                        "method, a session cut off loses at most one method's epochs, as paused runs whose "
                        "checkpoints stay behind train again from epoch 1 elsewhere (default: %(default)s)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only runs I, I+N, I+2N, ... of the expanded grid (I is 0-based), so N jobs with "
                        "I = 0..N-1 split the grid between them; they may share --out, and `fgvc report` merges "
                        "their rows. Default: inside a Slurm job array, the task's position in the array "
                        "(from SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT; see docs/slurm-array.sh); "
                        "otherwise the whole grid. --shard 0/1 runs the whole grid even in an array")
    _add_run_options(p)
    p.set_defaults(func=cmd_benchmark)
    return p


def add_train_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train one run (several GPUs: torchrun --nproc_per_node N -m fgvc train ...)",
                       description="Train one configuration (the defaults are the published recipe: "
                                   "resnet50.tv_in1k, SGD lr 0.001 momentum 0.9 wd 1e-4, batch 32, 30 epochs). "
                                   "Data-parallel on N GPUs: `torchrun --nproc_per_node N -m fgvc train ...`; "
                                   "batch_size is then the global batch (split over the processes, lr unchanged) "
                                   "and only rank 0 writes files.",
                       epilog=METHODS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, nargs="?", default=None, metavar="CONFIG",
                   help="a YAML with single values (benchmark YAMLs work when every key has one value, or with "
                        "flags that pick one: fgvc train benchmarks/sparrows-lite0.yaml --method ce --seed 0)")
    p.add_argument("--config", dest="config_file", type=Path, default=None, help="the same, as a flag")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: results/<benchmark>)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start from scratch even if an interrupted checkpoint exists")
    _add_run_options(p)
    p.set_defaults(func=cmd_train)
    return p



__all__ = ["add_benchmark_parser", "add_train_parser", "cmd_benchmark", "cmd_train"]
