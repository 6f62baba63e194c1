"""`fgvc speed`: fgvc's training pipeline against a reference loop, on the same data,
model, batch size and device.

The reference is written the way pytorch/examples `imagenet/main.py` trains: an image-folder
dataset that opens and decodes every JPEG with PIL on every access, torchvision transforms
(RandomResizedCrop, flip, ToTensor, Normalize), DataLoader workers with pinned memory, fp32,
contiguous (NCHW) tensors, `loss.item()` per step; evaluation with Resize + CenterCrop. fgvc's
side is its own code: `fgvc.data.loaders.build_loaders` (decode once; batched augmentation on the
device or per-sample from memory), `train_one_epoch` (bf16 autocast on CUDA, channels_last)
and `predict`.

Both are timed the same way: `--warmup-batches` training steps first (not timed: start-up,
cudnn autotuning, caches), then `--repeats` times a fresh epoch iterator over
`--train-batches` batches (an epoch's start-up, e.g. worker processes, is included, as in a
real epoch) and one pass of evaluation; the median over repeats is reported. When fewer
batches than an epoch are timed, the seconds per epoch are extrapolated from the measured
rates, and the CSV says so. The grid's wall time (every run of a benchmark YAML, one after
another for the reference) is extrapolated from the per-epoch figures unless
`--measure-grid` runs fgvc's grid for real.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from fgvc.errors import FGVCError

SPEED_COLUMNS = ["pipeline", "device", "model", "weights", "batch_size", "image_size", "workers", "train_img_s",
                 "eval_img_s", "epoch_seconds", "train_batches_timed", "epoch_extrapolated", "repeats",
                 "speedup_train", "speedup_epoch", "notes"]
GRID_COLUMNS = ["who", "grid", "runs", "epochs", "jobs", "wall_seconds", "extrapolated", "speedup", "notes"]


# --------------------------------------------------------------------------- reference loop
class PILImageFolder(Dataset):
    """pytorch/examples' ImageFolder: open and decode the JPEG on every access."""

    def __init__(self, root: Path, frame: pd.DataFrame, transform):
        self.paths = [root / p for p in frame.path]
        self.labels = frame.label.to_numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with open(self.paths[i], "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.transform(img), int(self.labels[i])


def reference_loaders(info, size: int, crop_pct: float, mean, std, batch_size: int, workers: int,
                      pin: bool) -> tuple[DataLoader, DataLoader]:
    normalize = transforms.Normalize(mean=list(mean), std=list(std))
    train = PILImageFolder(info.root, info.split(True), transforms.Compose([
        transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
    test = PILImageFolder(info.root, info.split(False), transforms.Compose([
        transforms.Resize(int(size / crop_pct)), transforms.CenterCrop(size), transforms.ToTensor(), normalize]))
    return (DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=pin),
            DataLoader(test, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=pin))


def reference_train(model, loader, optimizer, device: torch.device, batches: int) -> int:
    """pytorch/examples' train loop body over `batches` batches; returns images seen."""
    model.train()
    n = 0
    for images, target in itertools.islice(loader, batches):
        images = images.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        output = model(images)
        loss = F.cross_entropy(output, target)
        acc = (output.argmax(1) == target).float().mean()
        loss.item(), acc.item()  # the example's meters read both every step (a device sync)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n += images.shape[0]
    return n


@torch.no_grad()
def reference_eval(model, loader, device: torch.device) -> int:
    model.eval()
    n = 0
    for images, target in loader:
        images = images.to(device, non_blocking=True)
        output = model(images)
        (output.argmax(1).cpu() == target).sum().item()
        n += images.shape[0]
    return n


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
    """Warm up, then `repeats` x (timed train batches, timed evaluation); medians."""
    if warmup:
        train_step(warmup)
    train, evals = [], []
    for _ in range(repeats):
        train.append(timed(lambda: train_step(None), device))
        evals.append(timed(eval_pass, device))
    return dict(train_img_s=statistics.median(n / s for s, n in train),
                eval_img_s=statistics.median(n / s for s, n in evals),
                train_images=train[0][1], eval_images=evals[0][1])


def _model(args, num_classes: int, device: torch.device, channels_last: bool):
    from fgvc.engine.device import place_model
    from fgvc.models import build_model

    m = build_model(args.model, num_classes, pretrained=args.pretrained, pretrained_file=args.pretrained_file, seed=0)
    return place_model(m, device, channels_last)


def measure_reference(args, info, device, dcfg, train_batches: int) -> dict:
    model = _model(args, info.num_classes, device, channels_last=False)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    train_loader, test_loader = reference_loaders(info, args.image_size, args.crop_pct, dcfg["mean"], dcfg["std"],
                                                  args.batch_size, args.workers, device.type == "cuda")
    res = measure(lambda k: reference_train(model, train_loader, opt, device, k or train_batches),
                  lambda: reference_eval(model, test_loader, device), device, args.warmup_batches, args.repeats)
    return dict(res, workers=args.workers)


def measure_fgvc(args, info, device, train_batches: int) -> dict:
    from fgvc.config import RunConfig
    from fgvc.data.loaders import build_loaders
    from fgvc.engine.loop import predict, train_one_epoch
    from fgvc.models import WithFeatures, data_config

    cfg = RunConfig(model=args.model, pretrained=args.pretrained, batch_size=args.batch_size,
                    image_size=args.image_size, crop_pct=args.crop_pct, lr=args.lr, epochs=1).validate()
    model = _model(args, info.num_classes, device, channels_last=True)
    net = WithFeatures(model)
    if args.compile:
        net = torch.compile(net)
    frames = {"train": info.split(True), "test": info.split(False), "val": None}
    data = build_loaders(cfg, info, frames, data_config(model), device, pipeline=args.pipeline)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    epoch = itertools.count()

    def train_step(k):
        data.set_epoch(next(epoch))
        batches = itertools.islice(data.train, k or train_batches)
        return train_one_epoch(net, None, opt, batches, device, progress=False)["train_images"]

    def eval_pass():
        return len(predict(model, data.test, device, progress=False)["labels"])

    res = measure(train_step, eval_pass, device, args.warmup_batches, args.repeats)
    return dict(res, workers=data.workers, pipeline=data.pipeline)


# --------------------------------------------------------------------------- report
def device_slug(device: torch.device) -> str:
    if device.type == "cuda":
        return "cuda-" + re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name(device)).strip("_")
    return "cpu"


def epoch_seconds(res: dict, n_train: int, n_test: int, batch_size: int) -> float:
    """Train images (a last batch of one is dropped) at the training rate, then the test set."""
    return (n_train - (n_train % batch_size == 1)) / res["train_img_s"] + n_test / res["eval_img_s"]


def grid_rows(grid: Path, per_epoch: dict[str, float], export_s: dict[str, float], jobs: int,
              measured: float | None) -> list[dict]:
    from fgvc.config import expand_grid, load_grid

    configs = expand_grid(load_grid(grid))
    epochs = sum(c.epochs for c in configs)
    ref = epochs * per_epoch["reference"] + len(configs) * export_s["reference"]
    mine_est = epochs * per_epoch["fgvc"] + len(configs) * export_s["fgvc"]
    rows = [dict(who="reference", grid=grid.name, runs=len(configs), epochs=epochs, jobs=1, wall_seconds=round(ref, 1),
                 extrapolated=True, speedup=1.0,
                 notes="runs one after another; measured seconds/epoch x epochs + final feature pass per run")]
    if measured is not None:
        rows.append(dict(who="fgvc", grid=grid.name, runs=len(configs), epochs=epochs, jobs=jobs,
                         wall_seconds=round(measured, 1), extrapolated=False, speedup=round(ref / measured, 2),
                         notes="fgvc benchmark run for real (training, evaluation and feature export)"))
    else:
        rows.append(dict(who="fgvc", grid=grid.name, runs=len(configs), epochs=epochs, jobs=1,
                         wall_seconds=round(mine_est, 1), extrapolated=True, speedup=round(ref / mine_est, 2),
                         notes="one run at a time; measured seconds/epoch x epochs + final feature pass per run"))
    return rows


def measure_grid(args, device) -> float:
    from fgvc.benchmark import run_benchmark
    from fgvc.options import RunOptions

    with tempfile.TemporaryDirectory() as tmp:
        opts = RunOptions(data=args.data, out=Path(tmp), pretrained_file=args.pretrained_file, device=str(device),
                          progress=False, pipeline=args.pipeline, compile=args.compile)
        t0 = time.perf_counter()
        run_benchmark(args.grid, opts, {"model": args.model, "pretrained": args.pretrained}, echo=lambda m: None,
                      jobs=args.jobs)
        return time.perf_counter() - t0


def provenance(args, info, device) -> dict:
    """The run provenance (fgvc.engine.provenance) plus the machine's size and the command."""
    from fgvc.engine import provenance as prov_
    from fgvc.models import weights_info

    return dict(**prov_.environment(device), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                model=args.model, **weights_info(args.model, args.pretrained, args.pretrained_file),
                **prov_.dataset_provenance(info), command=vars(args) | {"func": None}, measured=prov_.now())


def run_speed(args, echo=print) -> tuple[Path, Path]:
    from fgvc.data.dataset import load_dataset_info
    from fgvc.io import atomic_path, atomic_write_json
    from fgvc.models import data_config
    from fgvc.engine.device import resolve_device

    for key in ("batch_size", "repeats", "image_size"):
        if getattr(args, key) < 1:
            raise FGVCError(f"invalid --{key.replace('_', '-')} {getattr(args, key)}: must be >= 1")
    if args.warmup_batches < 0 or args.workers < 0 or args.jobs < 1:
        raise FGVCError("invalid --warmup-batches/--workers/--jobs: need >= 0, >= 0 and >= 1")
    device = resolve_device(args.device)
    info = load_dataset_info(args.data)
    n_train, n_test = int(info.manifest.is_train.sum()), int((info.manifest.is_train == 0).sum())
    epoch_batches = n_train // args.batch_size
    if epoch_batches < 1:
        raise FGVCError(f"invalid --batch-size {args.batch_size}: larger than the {n_train} training images")
    k = epoch_batches if args.train_batches is None else min(args.train_batches, epoch_batches)
    if k < 1:
        raise FGVCError(f"invalid --train-batches {args.train_batches}: must be >= 1")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dcfg = data_config(_model(args, info.num_classes, torch.device("cpu"), channels_last=False))
    echo(f"speed on {device} ({torch.get_num_threads()} threads): {args.model}, batch {args.batch_size}, "
         f"{k} of {epoch_batches} training batches timed, {args.repeats} repeats after {args.warmup_batches} warm-up")
    results = {}
    echo("measuring the reference loop (PIL decode per sample, DataLoader workers, fp32) ...")
    results["reference"] = measure_reference(args, info, device, dcfg, k)
    echo(f"  reference: {results['reference']['train_img_s']:.1f} train img/s, "
         f"{results['reference']['eval_img_s']:.1f} eval img/s")
    echo("measuring fgvc's pipeline ...")
    results["fgvc"] = measure_fgvc(args, info, device, k)
    echo(f"  fgvc ({results['fgvc']['pipeline']}): {results['fgvc']['train_img_s']:.1f} train img/s, "
         f"{results['fgvc']['eval_img_s']:.1f} eval img/s")

    prov = provenance(args, info, device)  # once: it hashes the weights file and asks git
    per_epoch, export_s, rows = {}, {}, []
    for who in ("reference", "fgvc"):
        r = results[who]
        per_epoch[who] = epoch_seconds(r, n_train, n_test, args.batch_size)
        export_s[who] = (n_train + n_test) / r["eval_img_s"]
    for who in ("reference", "fgvc"):
        r = results[who]
        rows.append(dict(
            pipeline=who if who == "reference" else f"fgvc-{r['pipeline']}", device=device_slug(device),
            model=args.model, weights=prov["weights"], batch_size=args.batch_size, image_size=args.image_size,
            workers=r["workers"], train_img_s=round(r["train_img_s"], 2), eval_img_s=round(r["eval_img_s"], 2),
            epoch_seconds=round(per_epoch[who], 2), train_batches_timed=k, epoch_extrapolated=k < epoch_batches,
            repeats=args.repeats,
            speedup_train=round(r["train_img_s"] / results["reference"]["train_img_s"], 3),
            speedup_epoch=round(per_epoch["reference"] / per_epoch[who], 3),
            notes=("pytorch/examples-style loop: PIL decode per sample, torchvision transforms, fp32, NCHW"
                   if who == "reference" else
                   "fgvc: decode once, " + ("batched augmentation on the device" if r["pipeline"] == "batched"
                                            else "per-sample augmentation from memory")
                   + (", bf16 autocast" if device.type == "cuda" else "") + ", channels_last"
                   + (", torch.compile" if args.compile else ""))))
    out = Path(args.out)
    stem = f"{device_slug(device)}-{re.sub(r'[^A-Za-z0-9_.]+', '_', args.model)}"
    speed_csv, grid_csv = out / f"{stem}.csv", out / f"{stem}-grid.csv"
    measured = None
    if args.measure_grid:
        echo(f"running the grid {args.grid} with fgvc for real (--jobs {args.jobs}) ...")
        measured = measure_grid(args, device)
    grid = grid_rows(Path(args.grid), per_epoch, export_s, args.jobs, measured)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(speed_csv) as tmp:
        pd.DataFrame(rows, columns=SPEED_COLUMNS).to_csv(tmp, index=False)
    with atomic_path(grid_csv) as tmp:
        pd.DataFrame(grid, columns=GRID_COLUMNS).to_csv(tmp, index=False)
    atomic_write_json(out / f"{stem}.json", prov)
    for row in rows:
        echo(f"{row['pipeline']:>18}: {row['train_img_s']:8.1f} train img/s  {row['eval_img_s']:8.1f} eval img/s  "
             f"{row['epoch_seconds']:8.1f} s/epoch{' (extrapolated)' if row['epoch_extrapolated'] else ''}  "
             f"x{row['speedup_epoch']:.2f}")
    for row in grid:
        echo(f"grid {row['grid']} ({row['runs']} runs, {row['epochs']} epochs), {row['who']}: "
             f"{row['wall_seconds'] / 60:.1f} min{' (extrapolated)' if row['extrapolated'] else ' (measured)'}")
    echo(f"wrote {speed_csv}, {grid_csv} and {stem}.json")
    return speed_csv, grid_csv


__all__ = ["run_speed", "PILImageFolder", "reference_train", "reference_eval", "epoch_seconds"]
