"""What each CPU speed option gives fgvc's own training step and evaluation (issue 13, item 4).

    python tools/speed_options.py --pretrained-file ../shared/weights/tf_efficientnet_lite0.in1k.safetensors

Runs `fgvc.speed.measure.measure_fgvc` (fgvc's loaders, `train_one_epoch` and `predict` on the real
data, timed as `fgvc speed` times them) once per option below, each in a fresh process, and writes
OUT/<device>-<model>-options.csv with one default run's wall time built from each option's
rates (`fgvc.speed.measure.run_seconds`, the recipe of --grid; `grid_run_seconds`: a run's share
of the whole --grid run one after another, where `--compile` compiles once, with the first run,
and the others load it from the on-disk cache), plus a provenance JSON beside it.
Each option is one `fgvc speed` command line; `bf16-plain` is the one thing the CLI cannot
ask for: bf16 autocast without fgvc keeping the depthwise convolutions in fp32
(fgvc.engine.device.keep_depthwise_fp32), to show what that costs; `*-glibc-malloc` set
FGVC_KEEP_MALLOC=1 (glibc's allocator defaults, fgvc.engine.device.keep_freed_memory) in the
measured process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

OPTIONS = {  # name: extra `fgvc speed` arguments
    "fp32": ["--precision", "fp32"],
    "bf16": ["--precision", "bf16"],
    "fp32-glibc-malloc": ["--precision", "fp32"],
    "bf16-glibc-malloc": ["--precision", "bf16"],
    "bf16-plain": ["--precision", "bf16"],
    "fp32-1-worker": ["--precision", "fp32", "--fgvc-workers", "1"],
    "bf16-1-worker": ["--precision", "bf16", "--fgvc-workers", "1"],
    "fp32-compile": ["--precision", "fp32", "--compile"],
    "bf16-compile": ["--precision", "bf16", "--compile"],
}
ENV = {  # options that differ from their twin by an environment variable of the measured process
    "fp32-glibc-malloc": {"FGVC_KEEP_MALLOC": "1"},
    "bf16-glibc-malloc": {"FGVC_KEEP_MALLOC": "1"},
}
NOTES = {
    "bf16-plain": "bf16 autocast on every convolution",
    "fp32-glibc-malloc": "glibc's malloc defaults (FGVC_KEEP_MALLOC=1)",
    "bf16-glibc-malloc": "glibc's malloc defaults (FGVC_KEEP_MALLOC=1)",
    "fp32-compile": "run_seconds includes the compilation (an empty cache); grid_run_seconds compiles once per grid",
    "bf16-compile": "run_seconds includes the compilation (an empty cache); grid_run_seconds compiles once per grid",
}
COLUMNS = ["option", "precision", "compile", "workers", "train_img_s", "eval_img_s", "setup_seconds",
           "compile_seconds", "compile_warm_seconds", "run_seconds", "grid_run_seconds",
           "speedup_vs_fp32", "train_batches_timed", "repeats", "notes"]


def measure_plain_bf16(*args) -> dict:
    """`measure_fgvc` with bf16 autocast on every convolution, depthwise ones included (what
    fgvc did before keeping those in fp32)."""
    from fgvc.engine import device
    from fgvc.speed.measure import measure_fgvc

    keep = device.keep_depthwise_fp32
    device.keep_depthwise_fp32 = lambda model: 0
    try:
        return measure_fgvc(*args)
    finally:
        device.keep_depthwise_fp32 = keep


@contextlib.contextmanager
def environment(env: dict):
    """`env` set in os.environ (inherited by the spawned measuring process), then restored."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from fgvc.cli.tools import add_speed_parser

    tool = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tool.add_argument("--only", default=",".join(OPTIONS), help="comma-separated options to measure")
    own, rest = tool.parse_known_args(argv)
    names = [o for o in own.only.split(",") if o]
    unknown = [o for o in names if o not in OPTIONS]
    if unknown:
        tool.error(f"unknown option(s) {', '.join(unknown)}: choose from {', '.join(OPTIONS)}")
    parser = argparse.ArgumentParser(prog="fgvc")
    add_speed_parser(parser.add_subparsers(dest="command", required=True))
    defaults = ["speed", "--model", "tf_efficientnet_lite0", "--grid", "benchmarks/sparrows-lite0.yaml",
                "--train-batches", "6", "--device", "cpu"]
    return parser.parse_args(defaults + rest), names


def main(argv: list[str]) -> int:
    import pandas as pd
    import torch

    from fgvc.config import expand_grid, load_grid
    from fgvc.data.dataset import load_dataset_info
    from fgvc.io import atomic_path, atomic_write_json
    from fgvc.names import slug
    from fgvc.speed.measure import (device_slug, grid_seconds, image_counts, in_fresh_process, measure_fgvc,
                                    recipe_record, run_seconds, speed_provenance)

    base, names = parse(argv)
    device = torch.device(base.device)
    info = load_dataset_info(base.data)
    configs = expand_grid(load_grid(base.grid))
    recipe = configs[0]
    n = image_counts(info, recipe)
    prov = speed_provenance(base, info, device)  # at the start: a commit made meanwhile did not measure
    rows = []
    for name in names:
        args, _ = parse(argv + OPTIONS[name])
        print(f"measuring {name} ...", flush=True)
        fn = measure_plain_bf16 if name == "bf16-plain" else measure_fgvc
        with environment(ENV.get(name, {})):
            res = fn(args, info, device, args.train_batches) if args.same_process else \
                in_fresh_process(fn, args, info, device, args.train_batches)
        rows.append(dict(option=name, precision=res["precision"], compile=args.compile, workers=res["workers"],
                         train_img_s=round(res["train_img_s"], 2), eval_img_s=round(res["eval_img_s"], 2),
                         setup_seconds=round(res["setup_seconds"], 1),
                         compile_seconds=round(res.get("compile_seconds", 0.0), 1),
                         compile_warm_seconds=round(res.get("compile_warm_seconds", 0.0), 1),
                         run_seconds=round(run_seconds("fgvc", res, recipe, n, args.batch_size), 1),
                         grid_run_seconds=round(grid_seconds("fgvc", res, configs, n, args.batch_size)
                                                / len(configs), 1),
                         train_batches_timed=args.train_batches, repeats=args.repeats,
                         notes=NOTES.get(name, "")))
        print(f"  {name}: {rows[-1]['train_img_s']} train img/s, {rows[-1]['eval_img_s']} eval img/s, "
              f"one run {rows[-1]['run_seconds'] / 60:.1f} min", flush=True)
    table = pd.DataFrame(rows, columns=COLUMNS)
    if "fp32" in names:
        table["speedup_vs_fp32"] = (table.run_seconds[table.option == "fp32"].iloc[0] / table.run_seconds).round(3)
    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{device_slug(device)}-{slug(base.model)}-options"
    with atomic_path(out / f"{stem}.csv") as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_json(out / f"{stem}.json", dict(prov, options=OPTIONS,
                                                 recipe=recipe_record(recipe)))
    print(table.to_string(index=False))
    print(f"wrote {stem}.csv and {stem}.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
