"""One training run: `train_one_epoch`, `evaluate`, checkpoint and resume, artifacts.

The run folder layout and file formats are fixed in ../shared/DESIGN.md (Contracts).
Accuracies are stored in percent. The test set is evaluated every `eval_every` epochs
for the learning curve and always after the last; only the final epoch is reported:
nothing is selected on it.
With `val_fraction` > 0 a stratified part of the training images (fixed by `val_seed`)
is held out and evaluated every epoch too; sweeps select on that, never on the test set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm.auto import tqdm

from fgvc import __version__
from fgvc import distributed as dist_
from fgvc.config import RunConfig, save_config
from fgvc.data import (DatasetInfo, EpochSampler, TrainImages, decode_all, default_workers,
                       eval_loader, eval_resize_crop, normalize, sample_seed, split_table, stratified_val_split,
                       train_transform)
from fgvc.errors import FGVCError
from fgvc.io import atomic_path, atomic_write_json
from fgvc.losses import CenterLoss, build_aux_loss, optimizer_step
from fgvc.models import WithFeatures, build_model, data_config, feature_dim, forward_with_features, weights_info
from fgvc.schedule import lr_at

METRICS_COLUMNS = ["epoch", "train_ce", "train_center", "train_loss", "train_top1",
                   "test_top1", "test_top5", "lr", "seconds", "val_top1", "val_top5"]
ROW_COLUMNS = ["run_id", "benchmark", "model", "weights", "weights_sha256", "method", "center_weight",
               "center_update", "seed", "epochs", "batch_size", "lr", "image_size", "top1", "top5",
               "mean_class_acc", "best_epoch_top1", "train_seconds", "images_per_second", "device",
               "git_commit", "status", "error", "val_top1"]
REPO_ROOT = Path(__file__).resolve().parents[1]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: the run is recorded as failed."""


@dataclass
class RunOptions:
    """How to run (not what): these never change a run's identity."""

    data: Path
    out: Path
    pretrained_file: Path | None = None
    device: str = "auto"
    workers: int | None = None
    deterministic: bool = False
    progress: bool = True
    # Data path: "batched" keeps the decoded images on the device and augments whole batches
    # there (fgvc.augment), "per-sample" augments each image in a DataLoader (torchvision v2);
    # both draw from the same distribution. "auto": batched on CUDA, per-sample on CPU.
    pipeline: str = "auto"
    compile: bool = False  # torch.compile the model (CUDA; pays for long runs only)
    # Test hooks: called after each epoch (e.g. to simulate an interruption).
    on_epoch_end: Callable[[int, dict], None] | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FGVCError(f"invalid --device {name!r}: use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FGVCError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return dev


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


# --------------------------------------------------------------------------- loops
def train_one_epoch(net, center: CenterLoss | None, weight: float, optimizer, center_optimizer,
                    loader, device: torch.device, *, desc: str = "", progress: bool = True) -> dict:
    """One pass over the training data; returns mean losses, accuracy and speed (summed
    over processes under DDP). `net(x)` returns (logits, features): a `WithFeatures`,
    possibly inside DDP."""
    net.train()
    multi = dist_.current().enabled
    sums = dict(ce=0.0, center=0.0, loss=0.0, correct=0, n=0)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for x, y in bar:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits, feats = net(x)
        ce = F.cross_entropy(logits.float(), y)
        lc = center(feats, y) if center is not None else torch.zeros((), device=device)
        loss = ce + weight * lc
        bad = not torch.isfinite(loss)
        if multi:  # every process stops together, or the others would wait in backward forever
            bad = dist_.any_flag(bad)
        if bad:
            raise NonFiniteLossError(f"non-finite loss ({loss.item()}) at sample {sums['n']} "
                                     f"(ce={ce.item():.4g}, center={lc.item():.4g}); lower lr or center_weight")
        optimizer_step(loss, optimizer, center, center_optimizer, feats, y)
        b = y.numel()
        sums["ce"] += ce.item() * b
        sums["center"] += lc.item() * b
        sums["loss"] += loss.item() * b
        sums["correct"] += (logits.argmax(1) == y).sum().item()
        sums["n"] += b
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}", img_s=f"{sums['n'] / elapsed:.1f}")
    seconds = time.perf_counter() - start
    sums = dist_.all_reduce_sum(sums)
    n = max(sums["n"], 1)
    return dict(train_ce=sums["ce"] / n, train_center=sums["center"] / n, train_loss=sums["loss"] / n,
                train_top1=100.0 * sums["correct"] / n, train_seconds=seconds, train_images=int(sums["n"]))


@torch.inference_mode()
def predict(model, loader, device: torch.device, *, desc: str = "", progress: bool = True) -> dict:
    """Logits-derived outputs and pooled features for every image, in loader order."""
    model.eval()
    probs, feats, labels = [], [], []
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        x = x.to(device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits, f = forward_with_features(model, x)
        probs.append(logits.float().softmax(1).cpu())
        feats.append(f.float().cpu())
        labels.append(y)
    return dict(probs=torch.cat(probs).numpy(), features=torch.cat(feats).numpy(),
                labels=torch.cat(labels).numpy())


def accuracy_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, top-5 and mean per-class accuracy, in percent."""
    k = min(5, probs.shape[1])
    topk = np.argsort(-probs, axis=1)[:, :k]
    top1 = topk[:, 0] == labels
    top5 = (topk == labels[:, None]).any(1)
    per_class = [top1[labels == c].mean() for c in np.unique(labels)]
    return dict(top1=100.0 * top1.mean(), top5=100.0 * top5.mean(), mean_class_acc=100.0 * float(np.mean(per_class)))


def evaluate(model, loader, device: torch.device, **kw) -> dict:
    out = predict(model, loader, device, **kw)
    return accuracy_metrics(out["probs"], out["labels"])


def predict_all(model, loader, n: int, device: torch.device, **kw) -> dict:
    """`predict` on this process's `eval_chunk` loader, gathered into all n rows in order
    (each image once; plain `predict` when not distributed)."""
    out = predict(model, loader, device, **kw)
    d = dist_.current()
    return {k: dist_.gather_rows(v, n, d) for k, v in out.items()}


def evaluate_all(model, loader, n: int, device: torch.device, **kw) -> dict:
    out = predict_all(model, loader, n, device, **kw)
    return accuracy_metrics(out["probs"], out["labels"])


# --------------------------------------------------------------------------- provenance
def git_state() -> tuple[str, bool | None]:
    """(commit, dirty) of the code that runs; FGVC_GIT_COMMIT stands in without .git."""
    env = os.environ.get("FGVC_GIT_COMMIT")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True, timeout=10, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return env or "unknown", None


def provenance(cfg: RunConfig, opts: RunOptions, info: DatasetInfo, device: torch.device, winfo: dict) -> dict:
    import sklearn
    import timm
    import torchvision

    commit, dirty = git_state()
    return dict(
        git_commit=commit, git_dirty=dirty, fgvc_version=__version__, host=platform.node(),
        device=describe_device(device), python=sys.version.split()[0], torch=torch.__version__,
        torchvision=torchvision.__version__, timm=timm.__version__, numpy=np.__version__,
        scikit_learn=sklearn.__version__, model=cfg.model, **winfo,
        dataset=str(info.root), dataset_source=info.meta.get("source"),
        dataset_content_sha256=info.content_sha256, deterministic=opts.deterministic,
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"), finished=None,
    )


# --------------------------------------------------------------------------- artifacts
def write_metrics(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history, columns=METRICS_COLUMNS).to_csv(tmp, index=False, float_format="%.6g")


def write_predictions(path: Path, ids: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> None:
    k = min(5, probs.shape[1])
    topk = np.argsort(-probs, axis=1)[:, :k]
    topp = np.take_along_axis(probs, topk, axis=1)
    frame = pd.DataFrame({
        "image_id": ids, "label": labels, "pred": topk[:, 0], "prob": topp[:, 0].round(6),
        "top5": [";".join(map(str, r)) for r in topk],
        "top5_probs": [";".join(f"{p:.6f}" for p in r) for r in topp],
    })
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_features(path: Path, test: dict, test_ids, train: dict, train_ids) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp, test_features=test["features"].astype(np.float16), test_labels=test["labels"].astype(np.int64),
            test_ids=np.asarray(test_ids, dtype=np.int64), train_features=train["features"].astype(np.float16),
            train_labels=train["labels"].astype(np.int64), train_ids=np.asarray(train_ids, dtype=np.int64))


def make_row(cfg: RunConfig, winfo: dict, device: str, commit: str, **values) -> dict:
    ident = cfg.identity()
    row = {c: None for c in ROW_COLUMNS}
    row.update(run_id=cfg.run_id, benchmark=cfg.benchmark, model=cfg.model, weights=winfo["weights"],
               weights_sha256=winfo["weights_sha256"], method=cfg.method, center_weight=ident["center_weight"],
               center_update=ident["center_update"], seed=cfg.seed, epochs=cfg.epochs,
               batch_size=cfg.batch_size, lr=cfg.lr, image_size=cfg.image_size, device=device,
               git_commit=commit, status="ok", error="")
    row.update(values)
    return row


def _rng_state() -> dict:
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_epoch(seed: int, epoch: int) -> None:
    """Reseed the global RNGs per epoch: what an epoch draws (dropout, etc.) depends
    only on (seed, epoch), so resuming at any epoch boundary is exact."""
    s = sample_seed(seed, epoch, 0xE90C)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


# --------------------------------------------------------------------------- data
@dataclass
class RunData:
    """The loaders of one run; eval loaders hold this process's `eval_chunk` only."""

    train: object            # iterable of (x, y) batches
    set_epoch: Callable[[int], None]
    test: object
    val: object | None
    train_eval: Callable[[], object]  # built only at the end: the final feature pass
    n_test: int
    n_val: int
    n_train: int
    workers: int
    pipeline: str


def resolve_pipeline(name: str, device: torch.device, cfg: RunConfig) -> str:
    if name not in ("auto", "batched", "per-sample"):
        raise FGVCError(f"invalid --pipeline {name!r}: use auto, batched or per-sample")
    if cfg.augment == "none":
        return "per-sample"  # no random crops: the plain eval transform, per image
    if name == "auto":
        return "batched" if device.type == "cuda" else "per-sample"
    return name


def drop_last_batch(n: int, global_batch: int, world: int) -> bool:
    """A last batch that leaves some process a single image breaks BatchNorm in training mode."""
    rem = n % global_batch
    return 0 < rem and -(-rem // world) == 1


def build_data(cfg: RunConfig, opts: RunOptions, info: DatasetInfo, frames: dict, dcfg: dict,
               device: torch.device) -> RunData:
    """Training loader (per-sample or batched on the device) and the evaluation loaders."""
    d = dist_.current()
    pipeline = resolve_pipeline(opts.pipeline, device, cfg)
    train_df, test_df, val_df = frames["train"], frames["test"], frames.get("val")
    local_bs = dist_.local_batch_size(cfg.batch_size, d)
    drop_last = drop_last_batch(len(train_df), cfg.batch_size, d.world)
    sampler = EpochSampler(len(train_df), cfg.seed)
    if d.enabled:
        sampler = DealtSampler(sampler, cfg.batch_size, d, drop_last)
    resize_crop = eval_resize_crop(cfg.image_size, cfg.crop_pct, dcfg["interpolation"])
    norm = normalize(dcfg["mean"], dcfg["std"])
    eval_bs = max(cfg.batch_size, 64)
    labels = {k: f.label.to_numpy() for k, f in frames.items() if f is not None}
    workers = 0 if pipeline == "batched" else (default_workers(device) if opts.workers is None else opts.workers)
    pin = device.type == "cuda"

    if pipeline == "batched":
        from fgvc.augment import BatchedTrainLoader, DeviceEvalLoader
        from fgvc.cache import build_image_cache

        # Decoded once (a memory-mapped file shared by runs and processes), then kept on the device.
        train_cache = build_image_cache(info, train_df).to(device)
        train = BatchedTrainLoader(train_cache, labels["train"], local_bs, cfg.seed, cfg.image_size,
                                   dcfg["mean"], dcfg["std"], sampler=sampler,
                                   drop_last=drop_last and not d.enabled, interpolation=dcfg["interpolation"])

        def evaluation(split: str):
            # Resized and cropped once on the CPU (the same pixels as the per-sample path), kept on the device.
            part = frames[split].iloc[dist_.eval_chunk(len(frames[split]), d)]
            return DeviceEvalLoader(build_image_cache(info, part), part.label.to_numpy(), eval_bs, resize_crop,
                                    dcfg["mean"], dcfg["std"], device=device)

        set_epoch = train.set_epoch
    else:
        images_train = decode_all(info, train_df)
        if cfg.augment == "none":
            transform = v2.Compose([resize_crop, norm])
        else:
            transform = train_transform(cfg.image_size, dcfg["mean"], dcfg["std"], dcfg["interpolation"])
        train_ds = TrainImages(images_train, labels["train"], transform, cfg.seed)
        train = DataLoader(train_ds, batch_size=local_bs, sampler=sampler, num_workers=workers, pin_memory=pin,
                           drop_last=drop_last and not d.enabled)

        def evaluation(split: str):
            chunk = dist_.eval_chunk(len(frames[split]), d)
            images = images_train if split == "train" else decode_all(info, frames[split])
            return eval_loader(images[chunk], labels[split][chunk], resize_crop, norm, eval_bs, workers, pin)

        def set_epoch(epoch: int) -> None:
            train_ds.set_epoch(epoch)
            sampler.set_epoch(epoch)

    return RunData(train=train, set_epoch=set_epoch, test=evaluation("test"),
                   val=evaluation("val") if val_df is not None else None,
                   train_eval=lambda: evaluation("train"), n_test=len(test_df),
                   n_val=len(val_df) if val_df is not None else 0, n_train=len(train_df), workers=workers,
                   pipeline=pipeline)


class DealtSampler(torch.utils.data.Sampler[int]):
    """This process's share of every global batch of a seeded permutation (see fgvc.distributed)."""

    def __init__(self, base: EpochSampler, global_batch: int, d: dist_.Dist, drop_last: bool):
        self.base, self.global_batch, self.d, self.drop_last = base, global_batch, d, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __iter__(self):
        return iter(dist_.deal_batches(list(self.base), self.global_batch, self.d, self.drop_last))

    def __len__(self) -> int:
        return len(dist_.deal_batches(list(range(len(self.base))), self.global_batch, self.d, self.drop_last))


# --------------------------------------------------------------------------- one run
def run(cfg: RunConfig, opts: RunOptions, info: DatasetInfo | None = None,
        log: Callable[[str], None] | None = None) -> dict:
    """Train (or resume) one run into `opts.out/runs/<run_id>/`; returns its row.

    A NaN loss or other training error is recorded in row.json as a failed run and
    re-raised as NonFiniteLossError / the original error for the caller to decide.
    Under torchrun every process trains its share (fgvc.distributed); rank 0 writes.
    """
    from fgvc.data import load_dataset_info

    cfg.validate()
    d = dist_.current()
    info = info or load_dataset_info(opts.data)
    frames = {"train": info.split(True), "test": info.split(False), "val": None}
    if cfg.val_fraction > 0:  # before anything is written: a bad fraction leaves no run folder
        frames["train"], frames["val"] = stratified_val_split(frames["train"], cfg.val_fraction, cfg.val_seed)
    train_df, test_df, val_df = frames["train"], frames["test"], frames["val"]
    run_dir = Path(opts.out) / "runs" / cfg.run_id
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    logger = _run_logger(run_dir) if d.main else None
    say = log if (log and d.main) else (lambda m: None)

    def note(msg: str) -> None:
        if logger is not None:
            logger.info(msg)
        say(msg)

    device = resolve_device(opts.device)
    if opts.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if cfg.batch_size > len(train_df):
        raise FGVCError(f"invalid value batch_size={cfg.batch_size}: larger than the training set "
                        f"({len(train_df)} images in {info.root})")

    winfo = weights_info(cfg.model, cfg.pretrained, opts.pretrained_file)
    # channels_last: faster convolutions on CUDA and, with oneDNN, on CPU too (1.7x for Lite0 here).
    model = build_model(cfg.model, info.num_classes, pretrained=cfg.pretrained,
                        pretrained_file=opts.pretrained_file, seed=cfg.seed).to(device, memory_format=torch.channels_last)
    dcfg = data_config(model)
    # The auxiliary loss of cfg.method from the registry (None for "ce"); see fgvc.losses.
    center = build_aux_loss(cfg, info.num_classes, feature_dim(model))
    if center is not None:
        center = center.to(device)
    data = build_data(cfg, opts, info, frames, dcfg, device)

    ckpt_path = run_dir / "checkpoint.pt"
    history: list[dict] = []
    start_epoch = 0
    prov = provenance(cfg, opts, info, device, winfo)
    prov.update(pipeline=data.pipeline, compile=opts.compile, world_size=d.world, eval_every=cfg.eval_every)
    if d.main:
        save_config(cfg, run_dir / "config.yaml")
        atomic_write_json(run_dir / "classes.json", info.classes)
        if val_df is not None:
            with atomic_path(run_dir / "val_split.csv") as tmp:
                split_table(train_df, val_df).to_csv(tmp, index=False)
    ck = torch.load(ckpt_path, map_location=device, weights_only=False) if ckpt_path.is_file() else {}
    resume = ck.get("run_id") == cfg.run_id and not ck.get("final")
    if resume:
        model.load_state_dict(ck["model"])
    # Wrapped after loading (the checkpoint holds the bare model's keys); the optimizer holds
    # the same parameter objects either way.
    net = dist_.wrap_model(WithFeatures(model), device, d)
    if opts.compile:
        net = torch.compile(net)
    params = list(model.parameters()) + (center.model_parameters() if center is not None else [])
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    center_optimizer = center.make_optimizer() if center is not None else None
    weight = cfg.center_weight if center is not None else 0.0
    if resume:
        optimizer.load_state_dict(ck["optimizer"])
        if center is not None:
            center.load_state_dict(ck["center"])
            if center_optimizer is not None:
                center_optimizer.load_state_dict(ck["center_optimizer"])
        _set_rng_state(ck["rng"])
        history = ck["history"]
        start_epoch = ck["epoch"] + 1
        prov["started"] = ck.get("started", prov["started"])
        prov["resumed_at_epoch"] = start_epoch
        note(f"{cfg.run_id}: resuming after epoch {start_epoch}")
    del ck

    note(f"{cfg.run_id}: {cfg.model} ({winfo['weights']}), method={cfg.method}, lambda={weight:g}, "
         f"seed={cfg.seed}, {len(train_df)} train / "
         + (f"{len(val_df)} validation (val_fraction {cfg.val_fraction:g}, val_seed {cfg.val_seed}) / "
            if val_df is not None else "")
         + f"{len(test_df)} test images, {info.num_classes} classes, "
         f"device {prov['device']}" + (f" x{d.world} processes" if d.enabled else "")
         + f", pipeline {data.pipeline}, workers {data.workers}")
    test_out = None
    for epoch in range(start_epoch, cfg.epochs):
        seed_epoch(cfg.seed, epoch)
        data.set_epoch(epoch)
        for group in optimizer.param_groups:  # stateless (fgvc/schedule.py): a resumed run gets the same lr
            group["lr"] = lr_at(cfg, epoch)
        t0 = time.perf_counter()
        tr = train_one_epoch(net, center, weight, optimizer, center_optimizer, data.train, device,
                             desc=f"{cfg.run_name} ep {epoch + 1}/{cfg.epochs}", progress=opts.progress and d.main)
        last = epoch + 1 == cfg.epochs
        test_now = last or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0)
        ev = dict(top1=None, top5=None)
        if test_now:
            out = predict_all(model, data.test, data.n_test, device, progress=False)
            ev = accuracy_metrics(out["probs"], out["labels"])
            if last:  # the final predictions: the same model, so not computed twice
                test_out = out
        val = evaluate_all(model, data.val, data.n_val, device, progress=False) if data.val is not None else {}
        rec = dict(epoch=epoch + 1, train_ce=tr["train_ce"], train_center=tr["train_center"],
                   train_loss=tr["train_loss"], train_top1=tr["train_top1"], test_top1=ev["top1"],
                   test_top5=ev["top5"], lr=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - t0,
                   train_seconds=tr["train_seconds"], train_images=tr["train_images"],
                   val_top1=val.get("top1"), val_top5=val.get("top5"))
        history.append(rec)
        if d.main:
            write_metrics(run_dir / "metrics.csv", history)
            with atomic_path(ckpt_path) as tmp:
                torch.save(dict(run_id=cfg.run_id, epoch=epoch, model=model.state_dict(),
                                optimizer=optimizer.state_dict(),
                                center=center.state_dict() if center is not None else None,
                                center_optimizer=center_optimizer.state_dict() if center_optimizer else None,
                                rng=_rng_state(), history=history, started=prov["started"]), tmp)
        note(f"{cfg.run_id}: epoch {epoch + 1}/{cfg.epochs} loss {tr['train_loss']:.4f} "
             f"(ce {tr['train_ce']:.4f}, center {tr['train_center']:.4g}) train top1 {tr['train_top1']:.1f} "
             + (f"val top1 {val['top1']:.1f} " if val else "")
             + (f"test top1 {ev['top1']:.1f} top5 {ev['top5']:.1f} " if test_now else "")
             + f"{tr['train_images'] / tr['train_seconds']:.1f} img/s {rec['seconds']:.1f}s")
        if opts.on_epoch_end is not None:
            opts.on_epoch_end(epoch, rec)

    # Final epoch: predictions and features (no augmentation) for test and train. A run resumed
    # after its last epoch (cut off while writing) has no test pass yet.
    if test_out is None:
        test_out = predict_all(model, data.test, data.n_test, device, desc="test features",
                               progress=opts.progress and d.main)
    train_out = predict_all(model, data.train_eval(), data.n_train, device, desc="train features",
                            progress=opts.progress and d.main)
    final = accuracy_metrics(test_out["probs"], test_out["labels"])
    train_seconds = float(sum(h["train_seconds"] for h in history))
    train_images = int(sum(h["train_images"] for h in history))
    prov["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    prov["workers"] = data.workers
    row = make_row(cfg, winfo, prov["device"], prov["git_commit"], top1=final["top1"], top5=final["top5"],
                   mean_class_acc=final["mean_class_acc"],
                   best_epoch_top1=max(h["test_top1"] for h in history if h["test_top1"] is not None),
                   train_seconds=round(train_seconds, 2),
                   images_per_second=round(train_images / max(train_seconds, 1e-9), 2),
                   val_top1=history[-1].get("val_top1") if val_df is not None else None)
    if d.main:
        write_predictions(run_dir / "predictions.csv", test_df.image_id.to_numpy(), test_out["labels"],
                          test_out["probs"])
        write_features(run_dir / "features.npz", test_out, test_df.image_id.to_numpy(), train_out,
                       train_df.image_id.to_numpy())
        atomic_write_json(run_dir / "provenance.json", prov)
        atomic_write_json(run_dir / "row.json", row)
        # Keep only the final weights (for later evaluation); optimizer state is no longer needed.
        with atomic_path(ckpt_path) as tmp:
            torch.save(dict(run_id=cfg.run_id, epoch=cfg.epochs - 1, final=True, model=model.state_dict(),
                            center=center.state_dict() if center is not None else None), tmp)
        note(f"{cfg.run_id}: done: top1 {final['top1']:.2f} top5 {final['top5']:.2f} "
             f"mean-class {final['mean_class_acc']:.2f} ({train_seconds:.0f}s training)")
        _close_logger(logger)
    dist_.barrier()
    return row


def record_failure(cfg: RunConfig, opts: RunOptions, error: BaseException) -> dict:
    """Write a failed run's row.json (the grid goes on)."""
    run_dir = Path(opts.out) / "runs" / cfg.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        winfo = weights_info(cfg.model, cfg.pretrained, opts.pretrained_file)
    except Exception:  # the failure may be the weights themselves
        winfo = dict(weights=str(opts.pretrained_file or cfg.pretrained), weights_sha256=None)
    commit, _ = git_state()
    msg = f"{type(error).__name__}: {error}".replace("\n", " ")
    row = make_row(cfg, winfo, describe_device(resolve_device(opts.device)), commit, status="failed", error=msg)
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "row.json", row)
    logger = _run_logger(run_dir)
    logger.error(f"{cfg.run_id}: FAILED: {msg}")
    _close_logger(logger)
    return row


def _run_logger(run_dir: Path) -> logging.Logger:
    logger = logging.getLogger(f"fgvc.run.{run_dir.name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        h = logging.FileHandler(run_dir / "train.log")
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(h)
    return logger


def _close_logger(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        h.close()
        logger.removeHandler(h)


def read_row(run_dir: Path) -> dict | None:
    p = run_dir / "row.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


__all__ = ["RunOptions", "run", "record_failure", "train_one_epoch", "evaluate", "predict",
           "accuracy_metrics", "NonFiniteLossError", "ROW_COLUMNS", "METRICS_COLUMNS", "read_row"]
