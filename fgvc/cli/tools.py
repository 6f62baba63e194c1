"""Subcommands `fgvc validate`, `fgvc demo`, `fgvc speed`.

Each `add_*_parser(subparsers)` adds one subcommand and sets `func(args) -> int`, as
fgvc/cli/report.py does for report, visualize and compare. This module imports no torch:
the implementation (fgvc.validate, fgvc.demo, fgvc.speed.measure, all of which import torch)
is imported only when the command runs, so `fgvc --help` and `fgvc <command> --help` start
fast. The defaults come from fgvc.cli.defaults and speed's description from the docstring of
the import-free package fgvc.speed, which the implementations read too.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import fgvc.speed
from fgvc.cli.defaults import (DEFAULT_DATA, DEMO_CENTER_WEIGHT, DEMO_DATASETS, DEMO_EPOCHS, DEMO_OUT,
                               VALIDATE_BARE_OUT)

# --------------------------------------------------------------------------- validate
def _run_validate(args: argparse.Namespace) -> int:
    import json

    from fgvc.validate import validate

    out = validate(Path(args.source), args.data, Path(args.out) if args.out else None, model=args.model,
                   device=args.device, image_size=args.image_size, crop_pct=args.crop_pct, workers=args.workers,
                   progress=args.progress)
    m = json.loads((out / "metrics.json").read_text())
    print(f"top1 {m['top1']:.2f}%  top5 {m['top5']:.2f}%  mean-class {m['mean_class_acc']:.2f}%  "
          f"({m['num_test']} test images) -> {out}")
    return 0


def add_validate_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "validate", help="evaluate a saved checkpoint or run folder on a dataset folder",
        description="Evaluate a checkpoint on a dataset folder's test split (and the train images without "
                    "augmentation, for features) and write what a run writes: predictions.csv, features.npz "
                    "(float16), metrics.json, row.json, provenance.json, config.yaml, classes.json. SOURCE is a "
                    "finished run folder (config.yaml + checkpoint.pt) or a bare checkpoint file (PyTorch state "
                    "dict, possibly under 'state_dict' or 'model', or safetensors) with --model NAME. The run "
                    "folder itself is never overwritten. To put the result into a benchmark's report, pass "
                    "--out RESULTS/runs/NAME: RESULTS/runs.csv is then rebuilt.")
    p.add_argument("source", metavar="SOURCE", help="run folder (results/<bench>/runs/<run_id>) or checkpoint file")
    p.add_argument("--data", type=Path, default=None,
                   help="prepared dataset folder with manifest.csv (default for a run folder: the dataset it "
                        "was trained on, from its provenance.json; required for a checkpoint file)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: SOURCE/validate/ for a run folder, "
                        f"{VALIDATE_BARE_OUT}/<checkpoint stem>/ for a checkpoint file)")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="timm model name of a bare checkpoint, e.g. resnet50.tv_in1k (the tag picks the "
                        "normalisation); the class count comes from the dataset")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size (default: the run's; for a checkpoint file the model's pretrained input size)")
    p.add_argument("--crop-pct", type=float, default=None, help="center-crop fraction (default: the run's, or 0.875)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 0 on CPU)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=_run_validate)
    return p


# --------------------------------------------------------------------------- demo
def _run_demo(args: argparse.Namespace) -> int:
    from fgvc.demo import demo

    res = demo(Path(args.out), dataset=args.dataset, epochs=args.epochs, seed=args.seed,
               center_weight=args.center_weight, data_root=Path(args.data_root))
    for r in res["rows"]:
        print(f"{r['method']:>6}  lambda {r['lambda']:<6g} train {r['train_acc']:6.2f}%  test {r['test_acc']:6.2f}%  "
              f"compactness {r['compactness']:.4f}")
    print(f"wrote {res['png']} and {res['csv']}")
    return 0


def add_demo_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="the classic 2-D center-loss picture on 8x8 digits (about a minute on CPU)",
        description="Train a small CNN with a 2-unit feature layer (LeNet++ for 8x8 inputs) with cross-entropy "
                    "and with cross-entropy + center loss (learned centers, center lr 0.5) from the same init, "
                    "and plot both runs' 2-D train and test features per class side by side (Wen et al. 2016, "
                    "Fig. 3). Data: scikit-learn's bundled 8x8 digits (no download; stratified 80/20 split, "
                    "seed 0) or MNIST via torchvision (downloaded to --data-root). Writes OUT/demo_features.png "
                    "and OUT/demo_accuracy.csv (method, lambda, epochs, seed, train_acc, test_acc in percent, "
                    "dataset, compactness: test intra/inter-class squared-distance ratio).")
    p.add_argument("--out", type=Path, default=DEMO_OUT, help="output folder (default: %(default)s)")
    p.add_argument("--dataset", choices=DEMO_DATASETS, default="digits",
                   help="digits (bundled 8x8, default) or mnist (torchvision download; several minutes on CPU)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs per method (default: {DEMO_EPOCHS['digits']} for digits, "
                        f"{DEMO_EPOCHS['mnist']} for mnist)")
    p.add_argument("--seed", type=int, default=0, help="init and batch-order seed (default: 0)")
    p.add_argument("--center-weight", type=float, default=DEMO_CENTER_WEIGHT, metavar="LAMBDA",
                   help="center loss weight lambda (default: %(default)s = the paper's 0.003 at batch 64; "
                        "for runs under ~30 epochs 0.01 is safer)")
    p.add_argument("--data-root", type=Path, default=Path("data") / "mnist",
                   help="where MNIST is downloaded (default: %(default)s)")
    p.set_defaults(func=_run_demo)
    return p


# --------------------------------------------------------------------------- speed
def _run_speed(args: argparse.Namespace) -> int:
    from fgvc.speed.measure import run_speed

    run_speed(args)
    return 0


def add_speed_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "speed", help="time fgvc's training pipeline against a pytorch/examples-style reference loop",
        description=" ".join(fgvc.speed.__doc__.split("\n\nModules:")[0].split()) + " Writes OUT/<device>-<model>.csv, "
                    "OUT/<device>-<model>-grid.csv and a provenance JSON beside them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="prepared dataset folder")
    p.add_argument("--model", default="resnet50.tv_in1k", help="timm model name")
    p.add_argument("--pretrained-file", type=Path, default=None, metavar="PATH",
                   help="local weights for --model (else timm's download; speed does not depend on the weights)")
    p.set_defaults(pretrained=True)  # before the flag, whose own default is hidden: "(default: True)" misread
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=argparse.SUPPRESS,
                   help="random init instead of ImageNet weights (no download needed; timings are the same)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size, every loop")
    p.add_argument("--image-size", type=int, default=224, help="training crop and evaluation size in pixels")
    p.add_argument("--crop-pct", type=float, default=0.875, help="evaluation center-crop fraction")
    p.add_argument("--lr", type=float, default=0.001, help="SGD learning rate (speed does not depend on it)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="the reference loop's DataLoader workers (pytorch/examples uses 4)")
    p.add_argument("--pipeline", choices=("auto", "batched", "per-sample"), default="auto", help="fgvc's data path")
    p.add_argument("--fgvc-workers", type=int, default=None,
                   help="fgvc's DataLoader workers (default: fgvc's own, 0 on CPU)")
    p.add_argument("--compile", action="store_true",
                   help="also measure fgvc with torch.compile, beside eager (`fgvc-compiled` rows); the compilation "
                        "(from an empty cache, and from the warm one every later run of a grid loads) is charged "
                        "to the runs")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="fgvc's precision (default: auto = bf16 on CUDA and on CPUs with bf16 instructions, else fp32); the references run fp32")
    p.add_argument("--train-batches", type=int, default=None,
                   help="training batches timed per repeat (default: a whole epoch); fewer are extrapolated")
    p.add_argument("--warmup-batches", type=int, default=3, help="untimed training batches first")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    p.add_argument("--same-process", action="store_true",
                   help="measure every loop in this process (faster start; a loop measured after the others "
                        "ran up to 23%% slower) instead of each in a fresh one")
    p.add_argument("--grid", default="benchmarks/sparrows.yaml",
                   help="benchmark YAML whose wall time is compared (all its runs)")
    p.add_argument("--measure-grid", action="store_true",
                   help="run that grid with fgvc for real (with --jobs) instead of extrapolating it")
    p.add_argument("--jobs", type=int, default=1, help="concurrent runs for --measure-grid")
    p.add_argument("--out", type=Path, default=Path("results/speed"), help="output folder")
    p.set_defaults(func=_run_speed)
    return p


__all__ = ["add_validate_parser", "add_demo_parser", "add_speed_parser"]
