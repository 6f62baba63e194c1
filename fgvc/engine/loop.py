"""The loops: `train_one_epoch` and `predict`, the size of torchvision's reference scripts.

`net(x)` returns (logits, features) (a `fgvc.models.WithFeatures`, possibly inside DDP), so
an auxiliary loss on the pooled features needs no second pass. Metric code lives in
fgvc.engine.metrics; what an epoch draws is fixed by `seed_epoch`.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from fgvc.engine import distributed as dist_
from fgvc.data.sampling import sample_seed
from fgvc.engine.metrics import accuracy_metrics
from fgvc.models import forward_with_features

EPOCH_STREAM = 0xE90C  # third key of sample_seed for the global RNGs of an epoch


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: the run is recorded as failed."""


@dataclass
class AuxTerm:
    """An auxiliary loss as the loop carries it: the module (the protocol of fgvc.losses; its
    `weight` is lambda) and the optimizer of its own parameters (None when it has none)."""

    module: nn.Module
    optimizer: torch.optim.Optimizer | None

    @property
    def weight(self) -> float:
        return float(self.module.weight)


def optimizer_step(loss: Tensor, optimizer: torch.optim.Optimizer, aux: nn.Module | None,
                   aux_optimizer: torch.optim.Optimizer | None, features: Tensor, labels: Tensor) -> None:
    """One step of the model and its auxiliary loss, in the order the protocol needs
    (fgvc/losses/__init__.py): backward, `before_step`, both optimizers, `after_step`."""
    optimizer.zero_grad(set_to_none=True)
    if aux_optimizer is not None:
        aux_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if aux is not None:
        aux.before_step()
    optimizer.step()
    if aux_optimizer is not None:
        aux_optimizer.step()
    if aux is not None:
        aux.after_step(features.detach().float(), labels)


def seed_epoch(seed: int, epoch: int) -> None:
    """Reseed the global RNGs per epoch: what an epoch draws (dropout, etc.) depends
    only on (seed, epoch), so resuming at any epoch boundary is exact."""
    s = sample_seed(seed, epoch, EPOCH_STREAM)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


def autocast(device: torch.device, precision: str):
    """bf16 autocast for precision "bf16" (a resolved precision: fgvc.engine.device), else none."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(net, aux: AuxTerm | None, optimizer, loader, device: torch.device, *, precision: str = "fp32",
                    label_smoothing: float = 0.0, desc: str = "", progress: bool = True) -> dict:
    """One pass over the training data; returns mean losses, accuracy and speed (summed
    over processes under DDP). `label_smoothing` applies to the cross-entropy term."""
    net.train()
    multi = dist_.current().enabled
    sums = dict(ce=0.0, center=0.0, loss=0.0, correct=0, n=0)
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for x, y in bar:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast(device, precision):
            logits, feats = net(x)
        ce = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        # an auxiliary loss reads the pooled features, or the logits where it says so (`inputs`)
        aux_in = logits if getattr(aux and aux.module, "inputs", "features") == "logits" else feats
        la = aux.module(aux_in, y) if aux is not None else torch.zeros((), device=device)
        loss = ce + (aux.weight if aux is not None else 0.0) * la
        bad = not torch.isfinite(loss)
        if multi:  # every process stops together, or the others would wait in backward forever
            bad = dist_.any_flag(bad)
        if bad:
            raise NonFiniteLossError(f"non-finite loss ({loss.item()}) at sample {sums['n']} "
                                     f"(ce={ce.item():.4g}, center={la.item():.4g}); lower lr or center_weight")
        optimizer_step(loss, optimizer, aux.module if aux else None, aux.optimizer if aux else None, aux_in, y)
        b = y.numel()
        sums["ce"] += ce.item() * b
        sums["center"] += la.item() * b
        sums["loss"] += loss.item() * b
        sums["correct"] += (logits.argmax(1) == y).sum().item()
        sums["n"] += b
        bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}", img_s=f"{sums['n'] / (time.perf_counter() - start):.1f}")
    seconds = time.perf_counter() - start
    sums = dist_.all_reduce_sum(sums)
    n = max(sums["n"], 1)
    return dict(train_ce=sums["ce"] / n, train_center=sums["center"] / n, train_loss=sums["loss"] / n,
                train_top1=100.0 * sums["correct"] / n, train_seconds=seconds, train_images=int(sums["n"]))


@torch.inference_mode()
def predict(model, loader, device: torch.device, *, precision: str = "fp32", desc: str = "",
            progress: bool = True) -> dict:
    """Softmax probabilities (`probs`), pooled features and labels for every image, in
    loader order (numpy arrays)."""
    model.eval()
    probs, feats, labels = [], [], []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits, f = forward_with_features(model, x)
        probs.append(logits.float().softmax(1).cpu())
        feats.append(f.float().cpu())
        labels.append(y)
    return dict(probs=torch.cat(probs).numpy(), features=torch.cat(feats).numpy(),
                labels=torch.cat(labels).numpy())


def predict_all(model, loader, n: int, device: torch.device, **kw) -> dict:
    """`predict` on this process's `eval_chunk` loader, gathered into all n rows in order
    (each image once; plain `predict` when not distributed)."""
    out = predict(model, loader, device, **kw)
    d = dist_.current()
    return {k: dist_.gather_rows(v, n, d) for k, v in out.items()}


def evaluate_all(model, loader, n: int, device: torch.device, **kw) -> dict:
    """Accuracy metrics of `predict_all`."""
    out = predict_all(model, loader, n, device, **kw)
    return accuracy_metrics(out["probs"], out["labels"])


__all__ = ["NonFiniteLossError", "AuxTerm", "optimizer_step", "seed_epoch", "autocast", "train_one_epoch", "predict", "predict_all",
           "evaluate_all"]
