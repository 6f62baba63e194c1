"""Learning-rate schedules: the lr of an epoch as a pure function of (config, epoch).

Stateless on purpose: `train.run` sets every parameter group's lr from `lr_at` at the
start of each epoch, so a run resumed from a checkpoint follows the schedule exactly
and metrics.csv's `lr` column shows what each epoch used.

For epoch e (0-based) of E = `epochs`, W = `warmup_epochs` and base lr = `lr`:

- warm-up, e < W: lr * (e + 1) / (W + 1), a linear ramp below lr (W = 2: lr/3, 2lr/3);
- then `constant`: lr;
- then `cosine`: lr * 0.5 * (1 + cos(pi * (e - W) / (E - W))), which starts at lr on the
  first epoch after warm-up and decays towards 0 (reached at e = E, one past the last
  epoch). With W = 0 this is lr * 0.5 * (1 + cos(pi * e / E)).

The center-loss optimizer (`center_lr`, `center_update: learned`) is not scheduled.
"""

from __future__ import annotations

import math

from fgvc.config import RunConfig


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch` (see the module docstring for the rule)."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    warmup = cfg.warmup_epochs
    if epoch < warmup:
        return cfg.lr * (epoch + 1) / (warmup + 1)
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (cfg.epochs - warmup)))
    return cfg.lr


__all__ = ["lr_at"]
