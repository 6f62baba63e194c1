"""Data-parallel training of one run with `torchrun` (DDP): process group, batch split,
reduced metrics and gathered evaluation.

Rules (docs/speed.md, "Several GPUs for one run (DDP)"):
- `batch_size` is the GLOBAL batch: each of the W processes takes batch_size / W images of
  every global batch, so the optimisation (and the lr, which is not rescaled) is that of one
  process with the same batch. The global batches are the single-process ones: the same
  seeded permutation is cut into global batches first, then each batch is dealt out.
- A last global batch that does not split evenly is padded with its own first images (as
  DistributedSampler pads an epoch) so every process steps the same number of times.
- The centers of the center loss are outside the model's DDP wrapper: their gradient is
  all-reduced in `CenterLoss.before_step` and the ema rule all-reduces per-class sums and
  counts (fgvc.losses), so every process keeps identical centers.
- Evaluation splits the images into W contiguous chunks and gathers the outputs, so each
  image is evaluated exactly once and the outputs keep the manifest order.
- On CUDA, BatchNorm becomes SyncBatchNorm (statistics over the global batch); on CPU (gloo)
  SyncBatchNorm does not run, so BatchNorm statistics there are per process.
- Only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from fgvc.errors import FGVCError


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank 0 of 1 when not launched by torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun(env=os.environ) -> bool:
    return int(env.get("WORLD_SIZE", "1")) > 1


def init(device_name: str) -> tuple[Dist, str]:
    """Join the process group torchrun set up (no-op without it); returns the process's
    place and the device name it should use (cuda:LOCAL_RANK on GPUs)."""
    if not launched_by_torchrun():
        return Dist(), device_name
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    want_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    if want_cuda:
        torch.cuda.set_device(local)
        device_name = f"cuda:{local}"
    elif device_name == "auto":
        device_name = "cpu"
    return Dist(rank, world, local), device_name


def current() -> Dist:
    """The place of this process in an initialised process group (rank 0 of 1 otherwise)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def local_batch_size(global_batch: int, d: Dist) -> int:
    if global_batch % d.world:
        raise FGVCError(f"invalid value batch_size={global_batch}: under torchrun it is the global batch and must "
                        f"be divisible by the {d.world} processes (e.g. batch_size={global_batch - global_batch % d.world or d.world})")
    return global_batch // d.world


def deal_batches(order: list[int], global_batch: int, d: Dist, drop_last: bool) -> list[int]:
    """This process's indices: cut `order` into global batches, give each process its
    contiguous share of every batch (an uneven last batch is padded with its first images)."""
    if not d.enabled:
        return order
    out: list[int] = []
    for start in range(0, len(order), global_batch):
        batch = order[start:start + global_batch]
        if len(batch) < global_batch and drop_last:
            break
        per = -(-len(batch) // d.world)  # ceil: every process takes as many as the largest share
        padded = [batch[k % len(batch)] for k in range(per * d.world)]  # cycles even through a tiny batch
        out.extend(padded[d.rank * per:(d.rank + 1) * per])
    return out


def eval_chunk(n: int, d: Dist) -> slice:
    """The contiguous slice of n evaluation images this process evaluates."""
    per = -(-n // d.world)
    return slice(min(n, d.rank * per), min(n, (d.rank + 1) * per))


def gather_rows(local: np.ndarray, n: int, d: Dist) -> np.ndarray:
    """Concatenate every process's `eval_chunk` rows back into the n rows in order."""
    if not d.enabled:
        return local
    per = -(-n // d.world)
    buf = torch.zeros((per, *local.shape[1:]), dtype=torch.from_numpy(local[:0]).dtype)
    buf[: len(local)] = torch.from_numpy(local)
    parts = [torch.zeros_like(buf) for _ in range(d.world)]
    dist.all_gather(parts, _to_comm(buf))
    return torch.cat([p.cpu() for p in parts])[:n].numpy()


def _to_comm(t: torch.Tensor) -> torch.Tensor:
    """NCCL needs CUDA tensors; gloo takes CPU ones."""
    if dist.get_backend() == "nccl":
        return t.cuda()
    return t


def all_reduce_sum(values: dict[str, float]) -> dict[str, float]:
    """Sum a dict of per-process numbers over processes (float64)."""
    if not current().enabled:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    t = _to_comm(t)
    dist.all_reduce(t)
    return dict(zip(keys, t.cpu().tolist()))


def any_flag(flag: bool) -> bool:
    """True on every process if it is true on any (so all stop together on a NaN)."""
    if not current().enabled:
        return flag
    t = _to_comm(torch.tensor([1.0 if flag else 0.0]))
    dist.all_reduce(t)
    return bool(t.item() > 0)


def wrap_model(module: torch.nn.Module, device: torch.device, d: Dist) -> torch.nn.Module:
    """DDP around `module` (SyncBatchNorm first on CUDA); `module` itself when not distributed."""
    if not d.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return DDP(module, device_ids=[device.index])
    return DDP(module)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["Dist", "init", "current", "barrier", "local_batch_size", "deal_batches", "eval_chunk", "gather_rows",
           "all_reduce_sum", "any_flag", "wrap_model", "shutdown", "launched_by_torchrun"]
