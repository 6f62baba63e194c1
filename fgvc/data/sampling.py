"""Seeds and batch order. Every random draw of the data path comes from a generator seeded
by small integers (seed, epoch, image index): a run's augmentation and batch order do not
depend on the number of DataLoader workers, on the device or on where a resumed run stopped,
and CE and center runs of one seed see the same batches.
"""

from __future__ import annotations

import numpy as np
import torch

from fgvc.engine import distributed as dist_


def sample_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from small integers (seed, epoch, index)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot(np.array([1, 2**31], dtype=np.uint64)))


class EpochSampler(torch.utils.data.Sampler[int]):
    """A permutation drawn from (seed, epoch): same batch order for every method."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 0x5EED))
        return iter(torch.randperm(self.n, generator=g).tolist())


class DealtSampler(torch.utils.data.Sampler[int]):
    """This process's share of every global batch of a seeded permutation (see fgvc.engine.distributed)."""

    def __init__(self, base: EpochSampler, global_batch: int, d: dist_.Dist, drop_last: bool):
        self.base, self.global_batch, self.d, self.drop_last = base, global_batch, d, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __iter__(self):
        return iter(dist_.deal_batches(list(self.base), self.global_batch, self.d, self.drop_last))

    def __len__(self) -> int:
        return len(dist_.deal_batches(list(range(len(self.base))), self.global_batch, self.d, self.drop_last))


def drop_last_batch(n: int, global_batch: int, world: int) -> bool:
    """A last batch that leaves some process a single image breaks BatchNorm in training mode."""
    rem = n % global_batch
    return 0 < rem and -(-rem // world) == 1


__all__ = ["sample_seed", "EpochSampler", "DealtSampler", "drop_last_batch"]
