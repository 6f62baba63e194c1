"""One training run, in phases: open the run folder, build its parts, resume or start,
one epoch at a time, finish. `run` reads like a table of contents of them.

The run folder layout and file formats are fixed in ../shared/DESIGN.md (Contracts).
Accuracies are stored in percent. The test set is evaluated every `eval_every` epochs
for the learning curve and always after the last; only the final epoch is reported:
nothing is selected on it. With `val_fraction` > 0 a stratified part of the training
images (fixed by `val_seed`) is held out and evaluated every epoch; sweeps select on
that, never on the test set. Under torchrun every process trains its share
(fgvc.engine.distributed); rank 0 writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from fgvc.engine import distributed as dist_
from fgvc.config import RunConfig, save_config
from fgvc.data.dataset import (DatasetInfo, check_batch_fits, load_dataset_info, split_table,
                               stratified_val_split)
from fgvc.data.loaders import RunData, build_loaders
from fgvc.engine import checkpoint as ckpt
from fgvc.runs.write import close_logger, make_row, run_logger, write_metrics, write_outputs
from fgvc.engine.device import (compile_model, configure_backends, describe_device, place_model, resolve_device,
                                resolve_precision)
from fgvc.engine.loop import AuxTerm, NonFiniteLossError, evaluate_all, predict_all, seed_epoch, train_one_epoch
from fgvc.engine.metrics import accuracy_metrics
from fgvc.engine.provenance import git_state, now, provenance
from fgvc.engine.trackers import open_trackers
from fgvc.grid.halving import FIRST_METRICS, keep_first_training
from fgvc.grid.owner import own_benchmark
from fgvc.runs.inputs import write_inputs
from fgvc.io import atomic_path, atomic_write_json
from fgvc.losses.registry import build_aux_loss
from fgvc.models import WithFeatures, load_backbone, weights_info
from fgvc.config import RunOptions
from fgvc.engine.schedule import lr_at


@dataclass
class RunContext:
    """Where and how one run happens: its config, data frames, folder, device and log."""

    cfg: RunConfig
    opts: RunOptions
    info: DatasetInfo
    frames: dict            # "train", "test", "val" (None without a validation split)
    run_dir: Path
    device: torch.device
    precision: str          # resolved: "fp32" or "bf16" (autocast)
    note: Callable[[str], None]
    logger: object | None = None

    @property
    def main(self) -> bool:
        return dist_.current().main


@dataclass
class RunParts:
    """What one run trains: the model (bare and wrapped), its optimizers, auxiliary loss and loaders."""

    model: torch.nn.Module
    data: RunData
    winfo: dict
    aux: AuxTerm | None = None
    net: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    started: str = ""       # the run's first start (kept across resumes), saved in each checkpoint


# --------------------------------------------------------------------------- phases
def open_run(cfg: RunConfig, opts: RunOptions, info: DatasetInfo | None, log) -> RunContext:
    """Validate, split the data, create the run folder and its log, set up the device."""
    cfg.validate()
    d = dist_.current()
    info = info or load_dataset_info(opts.data)
    frames = {"train": info.split(True), "test": info.split(False), "val": None}
    if cfg.val_fraction > 0:  # before anything is written: a bad fraction leaves no run folder
        frames["train"], frames["val"] = stratified_val_split(frames["train"], cfg.val_fraction, cfg.val_seed)
    run_dir = Path(opts.out) / "runs" / cfg.run_id
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    logger = run_logger(run_dir) if d.main else None
    say = log if (log and d.main) else (lambda m: None)

    def note(msg: str) -> None:
        if logger is not None:
            logger.info(msg)
        say(msg)

    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    configure_backends(device, opts.deterministic)
    check_batch_fits(cfg.batch_size, len(frames["train"]), info.root, cfg.val_fraction)
    return RunContext(cfg, opts, info, frames, run_dir, device, precision, note, logger)


def build_parts(ctx: RunContext) -> RunParts:
    """The model (seeded head), the auxiliary loss of cfg.method (None for "ce") and the loaders."""
    cfg, opts = ctx.cfg, ctx.opts
    backbone = load_backbone(cfg.model, ctx.info.num_classes, pretrained=cfg.pretrained,
                             pretrained_file=opts.pretrained_file, seed=cfg.seed)
    model = place_model(backbone.model, ctx.device, precision=ctx.precision)
    module = build_aux_loss(cfg, ctx.info.num_classes, backbone.feature_dim)
    data = build_loaders(cfg, ctx.info, ctx.frames, backbone.data_config, ctx.device, pipeline=opts.pipeline,
                         workers=opts.workers)
    parts = RunParts(model=model, data=data, winfo=backbone.weights)
    if module is not None:
        parts.aux = AuxTerm(module.to(ctx.device), None)
    return parts


def write_static(ctx: RunContext) -> None:
    """The files that do not change during training: config, classes, validation split."""
    if not ctx.main:
        return
    save_config(ctx.cfg, ctx.run_dir / "config.yaml")
    atomic_write_json(ctx.run_dir / "classes.json", ctx.info.classes)
    if ctx.frames["val"] is not None:
        with atomic_path(ctx.run_dir / "val_split.csv") as tmp:
            split_table(ctx.frames["train"], ctx.frames["val"]).to_csv(tmp, index=False)


def start(ctx: RunContext, parts: RunParts, prov: dict) -> None:
    """Resume from the epoch checkpoint if there is one, wrap the model, make the optimizers."""
    cfg, d = ctx.cfg, dist_.current()
    ck = ckpt.load_resume(ctx.run_dir / ckpt.CHECKPOINT, cfg.run_id, ctx.device, note=ctx.note)
    if ck is not None:
        parts.model.load_state_dict(ck["model"])
    # Wrapped after loading (the checkpoint holds the bare model's keys); the optimizer holds
    # the same parameter objects either way.
    parts.net = dist_.wrap_model(WithFeatures(parts.model), ctx.device, d)
    if ctx.opts.compile:
        parts.net = compile_model(parts.net)  # compiled code from the on-disk cache after a grid's first run
    aux = parts.aux
    params = list(parts.model.parameters()) + (aux.module.model_parameters() if aux is not None else [])
    parts.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if aux is not None:
        aux.optimizer = aux.module.make_optimizer()
    if ck is not None:
        parts.start_epoch, parts.history = ckpt.restore(ck, parts.model, parts.optimizer, aux)
        prov["started"] = ck.get("started", prov["started"])
        prov["resumed_at_epoch"] = parts.start_epoch
        ctx.note(f"{cfg.run_id}: resuming after epoch {parts.start_epoch}")
    elif ctx.main and (kept := keep_first_training(ctx.run_dir)):
        ctx.note(f"{cfg.run_id}: no checkpoint to resume its {kept} recorded epoch(s) from: it trains again from "
                 f"epoch 1; the first training's metrics are kept in {FIRST_METRICS} (successive halving keeps "
                 "deciding on them)")
    parts.started = prov["started"]


def describe(ctx: RunContext, parts: RunParts, prov: dict) -> str:
    """The run's first log line: what trains on what, where."""
    cfg, frames, d = ctx.cfg, ctx.frames, dist_.current()
    val = frames["val"]
    lam = parts.aux.weight if parts.aux is not None else 0.0
    return (f"{cfg.run_id}: {cfg.model} ({parts.winfo['weights']}), method={cfg.method}, lambda={lam:g}, "
            f"seed={cfg.seed}, {len(frames['train'])} train / "
            + (f"{len(val)} validation (val_fraction {cfg.val_fraction:g}, val_seed {cfg.val_seed}) / "
               if val is not None else "")
            + f"{len(frames['test'])} test images, {ctx.info.num_classes} classes, "
            f"device {prov['device']}" + (f" x{d.world} processes" if d.enabled else "")
            + f", {ctx.precision}, pipeline {parts.data.pipeline}, workers {parts.data.workers}")


def tests_after(cfg: RunConfig, epoch: int) -> bool:
    """Is the test set evaluated after `epoch` (0-based)? Every eval_every epochs and after the last."""
    n = epoch + 1
    return n == cfg.epochs or (cfg.eval_every > 0 and n % cfg.eval_every == 0)


def run_epoch(ctx: RunContext, parts: RunParts, epoch: int) -> tuple[dict, dict | None]:
    """Train one epoch, evaluate, save metrics and the checkpoint; returns (record, the
    test predictions when the test set was evaluated)."""
    cfg, data, device = ctx.cfg, parts.data, ctx.device
    seed_epoch(cfg.seed, epoch)
    data.set_epoch(epoch)
    for group in parts.optimizer.param_groups:  # stateless (fgvc/engine/schedule.py): a resumed run gets the same lr
        group["lr"] = lr_at(cfg, epoch)
    t0 = time.perf_counter()
    tr = train_one_epoch(parts.net, parts.aux, parts.optimizer, data.train, device, precision=ctx.precision,
                         label_smoothing=cfg.label_smoothing, desc=f"{cfg.run_name} ep {epoch + 1}/{cfg.epochs}", progress=ctx.opts.progress and ctx.main)
    test_out, ev = None, dict(top1=None, top5=None)
    if tests_after(cfg, epoch):
        test_out = predict_all(parts.model, data.test, data.n_test, device, precision=ctx.precision, progress=False)
        ev = accuracy_metrics(test_out["probs"], test_out["labels"])
    val = {}
    if data.val is not None:
        val = evaluate_all(parts.model, data.val, data.n_val, device, precision=ctx.precision, progress=False)
    rec = dict(epoch=epoch + 1, train_ce=tr["train_ce"], train_center=tr["train_center"],
               train_loss=tr["train_loss"], train_top1=tr["train_top1"], test_top1=ev["top1"],
               test_top5=ev["top5"], lr=parts.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - t0,
               train_seconds=tr["train_seconds"], train_images=tr["train_images"],
               val_top1=val.get("top1"), val_top5=val.get("top5"))
    parts.history.append(rec)
    if ctx.main:
        write_metrics(ctx.run_dir / "metrics.csv", parts.history)
        ckpt.save_epoch(ctx.run_dir / ckpt.CHECKPOINT, cfg.run_id, epoch, parts.model, parts.optimizer, parts.aux,
                        parts.history, parts.started)
    ctx.note(f"{cfg.run_id}: epoch {epoch + 1}/{cfg.epochs} loss {tr['train_loss']:.4f} "
             f"(ce {tr['train_ce']:.4f}" + (f", {cfg.method} {tr['train_center']:.4g}" if parts.aux is not None else "")
             + f") train top1 {tr['train_top1']:.1f} "
             + (f"val top1 {val['top1']:.1f} " if val else "")
             + (f"test top1 {ev['top1']:.1f} top5 {ev['top5']:.1f} " if test_out is not None else "")
             + f"{tr['train_images'] / tr['train_seconds']:.1f} img/s {rec['seconds']:.1f}s")
    return rec, test_out


def finish(ctx: RunContext, parts: RunParts, prov: dict, test_out: dict | None) -> dict:
    """Final predictions and features (no augmentation) for test and train, the row,
    provenance and the final checkpoint. A run resumed after its last epoch (cut off while
    writing) has no test pass yet."""
    cfg, data, device, show = ctx.cfg, parts.data, ctx.device, ctx.opts.progress and ctx.main
    if test_out is None:
        test_out = predict_all(parts.model, data.test, data.n_test, device, precision=ctx.precision,
                               desc="test features", progress=show)
    train_out = predict_all(parts.model, data.train_eval(), data.n_train, device, precision=ctx.precision,
                            desc="train features", progress=show)
    final = accuracy_metrics(test_out["probs"], test_out["labels"])
    history = parts.history
    train_seconds = float(sum(h["train_seconds"] for h in history))
    train_images = int(sum(h["train_images"] for h in history))
    prov.update(finished=now(), workers=data.workers)
    row = make_row(cfg, parts.winfo, prov["device"], prov["git_commit"], top1=final["top1"], top5=final["top5"],
                   mean_class_acc=final["mean_class_acc"],
                   best_epoch_top1=max(h["test_top1"] for h in history if h["test_top1"] is not None),
                   train_seconds=round(train_seconds, 2),
                   images_per_second=round(train_images / max(train_seconds, 1e-9), 2),
                   val_top1=history[-1].get("val_top1") if ctx.frames["val"] is not None else None)
    if ctx.main:
        write_outputs(ctx.run_dir, ctx.frames["test"].image_id.to_numpy(), test_out,
                      ctx.frames["train"].image_id.to_numpy(), train_out)
        atomic_write_json(ctx.run_dir / "provenance.json", prov)
        atomic_write_json(ctx.run_dir / "row.json", row)
        ckpt.save_final(ctx.run_dir / ckpt.CHECKPOINT, cfg.run_id, cfg.epochs - 1, parts.model, parts.aux)
        ctx.note(f"{cfg.run_id}: done: top1 {final['top1']:.2f} top5 {final['top5']:.2f} "
                 f"mean-class {final['mean_class_acc']:.2f} ({train_seconds:.0f}s training)")
        close_logger(ctx.logger)
    dist_.barrier()
    return row


# --------------------------------------------------------------------------- one run
def run(cfg: RunConfig, opts: RunOptions, info: DatasetInfo | None = None,
        log: Callable[[str], None] | None = None) -> dict:
    """Train (or resume) one run into `opts.out/runs/<run_id>/`; returns its row.

    A NaN loss or other training error propagates (NonFiniteLossError / the original error)
    for the caller to record with `record_failure` and decide.
    """
    cfg = own_benchmark(cfg, Path(opts.out) / "runs" / cfg.run_id)  # a run keeps the grid name it started under
    ctx = open_run(cfg, opts, info, log)
    parts = build_parts(ctx)
    prov = provenance(cfg.model, ctx.info, ctx.device, parts.winfo, opts.deterministic)
    prov.update(pipeline=parts.data.pipeline, compile=opts.compile, world_size=dist_.current().world,
                eval_every=cfg.eval_every, precision=ctx.precision)
    write_static(ctx)
    if ctx.main:
        write_inputs(ctx.run_dir, ctx.info, parts.winfo, prov["device"])  # checked before this folder is reused (fgvc/runs/inputs.py)
    start(ctx, parts, prov)
    ctx.note(describe(ctx, parts, prov))
    test_out = None
    last = cfg.epochs if opts.stop_after is None else min(cfg.epochs, opts.stop_after)
    with open_trackers(opts, cfg, ctx.run_dir, parts.history, ctx.main) as trackers:
        for epoch in range(parts.start_epoch, last):
            rec, test_out = run_epoch(ctx, parts, epoch)
            trackers.log_epoch(rec)
            if opts.on_epoch_end is not None:
                opts.on_epoch_end(epoch, rec)
        if last < cfg.epochs:
            return pause(ctx, parts, last)
        row = finish(ctx, parts, prov, test_out)
        trackers.finish(row)
    return row


def pause(ctx: RunContext, parts: RunParts, epoch: int) -> dict:
    """Stop at a halving rung without finishing: the epoch checkpoint resumes the run later.
    Returns a row-like record with status "paused" (nothing is written as row.json)."""
    val = parts.history[-1].get("val_top1") if parts.history else None
    ctx.note(f"{ctx.cfg.run_id}: paused after epoch {epoch} (a halving rung)"
             + (f": val top1 {val:.1f}" if val is not None else ""))
    if ctx.main:
        close_logger(ctx.logger)
    return dict(run_id=ctx.cfg.run_id, status="paused", epochs=epoch, val_top1=val, error="")


def record_failure(cfg: RunConfig, opts: RunOptions, error: BaseException) -> dict:
    """Write a failed run's row.json (the grid goes on)."""
    run_dir = Path(opts.out) / "runs" / cfg.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = own_benchmark(cfg, run_dir)
    try:
        winfo = weights_info(cfg.model, cfg.pretrained, opts.pretrained_file)
    except Exception:  # the failure may be the weights themselves
        winfo = dict(weights=str(opts.pretrained_file or cfg.pretrained), weights_sha256=None)
    commit, _ = git_state()
    msg = f"{type(error).__name__}: {error}".replace("\n", " ")
    row = make_row(cfg, winfo, describe_device(resolve_device(opts.device)), commit, status="failed", error=msg)
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "row.json", row)
    logger = run_logger(run_dir)
    logger.error(f"{cfg.run_id}: FAILED: {msg}")
    close_logger(logger)
    return row


__all__ = ["RunOptions", "RunContext", "RunParts", "run", "record_failure", "open_run", "build_parts", "start",
           "run_epoch", "finish", "NonFiniteLossError"]
