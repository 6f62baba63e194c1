"""Center loss (Wen et al., ECCV 2016) with its variants and update rules, and `Centers`, the
class centres with their update rule that contrastive-center loss shares. The formulas,
their config keys and their relation to the papers are tabulated in docs/losses.md.

Center loss, default form (the one of KaiyangZhou/pytorch-center-loss, which the reference
blog post trained with):

    L_C = (1/B) * sum_i ||x_i - c_{y_i}||^2          (mean over the batch of squared distances)

Wen et al. write it as a half sum, L_C^paper = 1/2 * sum_i ||x_i - c_{y_i}||^2, so
L_C = (2/B) * L_C^paper and the same total loss needs

    lambda_here = lambda_paper * B / 2     (lambda_paper = 2 * lambda_here / B).

`weight` (lambda) = 0.001 refers to THIS form: at batch 32 it equals lambda_paper = 6.25e-5.

No clamping: KaiyangZhou expands ||x||^2 + ||c||^2 - 2 x.c, which can go slightly
negative by cancellation, and clamps to [1e-12, 1e12]. Here the difference x - c is
squared directly, so every term is >= 0 exactly, the gradient is the analytic one
(2/B (x_i - c_{y_i})) everywhere, and a diverging run shows up as an inf/NaN loss
(which the trainer stops on) instead of a silently zero gradient above 1e12.

Variants (config keys; all combine; the defaults give the form above):
- ``center_distance: euclidean``: d_i = ||x_i - c_{y_i}|| instead of its square. The
  square root is a "safe" one: exact value, and gradient 0 (a subgradient) at exactly zero
  distance instead of 0 * inf = NaN; no epsilon biases the value.
- ``center_normalize: true``: x_i and the centers are L2-normalised in the forward pass, so
  the loss and its gradients are those of unit vectors whatever the stored centers are;
  the stored centers are also put on the unit sphere at construction and after every step
  (`after_step`, which runs after the optimizers' step, after the ema update for "ema").
- ``center_per_class: true``: every class present in the batch weighs the same:
  L = (1/K_b) sum_{j in batch} (1/n_j) sum_{i: y_i=j} d_i   (K_b classes in the batch, n_j
  samples of class j), i.e. each sample's term is divided by n_{y_i} and the sum by K_b =
  sum_i 1/n_{y_i} instead of B. It equals the default on a class-balanced batch, so lambda
  keeps its scale. The ema rule uses the same per-sample weights 1/n_{y_i} (see below).

Center update rules (`update`):
- ``learned`` (default; KaiyangZhou): the centers have their own SGD (lr 0.5, no momentum,
  no weight decay) and their gradient is multiplied by 1/lambda before the step, so the
  center step is that of L_C alone and does not shrink with lambda.
- ``joint``: the centers join the model's optimizer as plain parameters (what a naive
  implementation does; they then also get its momentum and weight decay).
- ``ema``: the paper's rule, no gradient to the centers. With per-sample weights w_i
  (1, or 1/n_{y_i} for per_class):
  delta c_j = sum_{i: y_i=j} w_i (c_j - x_i) / (1 + sum_{i: y_i=j} w_i);  c_j <- c_j - alpha * delta c_j,
  which is the paper's rule for w_i = 1 and (c_j - mean_j x) / 2 per class for per_class.
  It moves the centers towards the class means whatever `center_distance` is.

Under torch.distributed (DDP: the centers are not inside the model's wrapper),
`before_step` averages the centers' gradient over processes and the ema rule sums the
per-class statistics over processes, so every process keeps identical centers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.losses.registry import (CENTER_DISTANCES, CENTER_UPDATES, check_choice, check_positive, check_unit_interval,
                                  check_weight)

if TYPE_CHECKING:
    from fgvc.config import RunConfig


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def safe_sqrt(sq: Tensor) -> Tensor:
    """sqrt with gradient 0 at 0 (instead of NaN) and no epsilon in the value."""
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def same_class_counts(labels: Tensor) -> Tensor:
    """n_{y_i}: how many samples of the batch share sample i's class (float, shape (B,))."""
    return (labels[:, None] == labels[None, :]).sum(dim=1).float()


class Centers(nn.Module):
    """Class centers with a gradient update rule ("learned" or "joint") or "ema".

    The arguments are checked with the rules of fgvc.losses.registry (those of the YAML keys),
    each only where the update rule uses it (`lr` for "learned", `alpha` for "ema").
    """

    METHOD = "center"  # the `method` whose module this is (named in error messages)

    def __init__(self, num_classes: int, feat_dim: int, weight: float, update: str = "learned",
                 lr: float = 0.5, alpha: float = 0.5, seed: int = 0, updates: tuple[str, ...] = CENTER_UPDATES):
        super().__init__()
        check_choice("center_update", update, updates)
        check_weight(weight, self.METHOD, key="center_weight (lambda)")
        if update == "learned":
            check_positive("center_lr", lr)
        if update == "ema":
            check_unit_interval("center_alpha", alpha)
        self.num_classes, self.feat_dim = int(num_classes), int(feat_dim)
        self.weight, self.update, self.lr, self.alpha = float(weight), update, float(lr), float(alpha)
        # Own generator: the centers do not depend on (or disturb) the model's init RNG.
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(self.num_classes, self.feat_dim, generator=g, dtype=torch.float32)
        self.centers = nn.Parameter(centers, requires_grad=update != "ema")

    def _check(self, features: Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"expected features of shape (B, {self.feat_dim}), got {tuple(features.shape)}")

    def model_parameters(self) -> list[nn.Parameter]:
        """Parameters to add to the model's optimizer: the centers for "joint", else none."""
        return [self.centers] if self.update == "joint" else []

    def make_optimizer(self) -> torch.optim.Optimizer | None:
        """The centers' own optimizer for "learned" (call after moving the module to its device)."""
        if self.update != "learned":
            return None
        return torch.optim.SGD([self.centers], lr=self.lr, momentum=0.0, weight_decay=0.0)

    def before_step(self) -> None:
        """After backward, before the optimizers step: average the centers' gradient over
        processes (DDP) and, for "learned", undo lambda so the center step is lambda-free."""
        grad = self.centers.grad
        if self.update == "ema" or grad is None:
            return
        if distributed():
            dist.all_reduce(grad)
            grad.div_(dist.get_world_size())
        if self.update == "learned":
            grad.mul_(1.0 / self.weight)

    def after_step(self, features: Tensor, labels: Tensor) -> None:
        """Nothing for the gradient rules (their optimizers have stepped)."""


class CenterLoss(Centers):
    """Unweighted center loss L_C with its own centers, a selectable update rule and the
    distance / normalisation / per-class variants of the module docstring."""

    def __init__(self, num_classes: int, feat_dim: int, weight: float, update: str = "learned",
                 lr: float = 0.5, alpha: float = 0.5, seed: int = 0, distance: str = "squared",
                 normalize: bool = False, per_class: bool = False):
        super().__init__(num_classes, feat_dim, weight, update, lr, alpha, seed)
        check_choice("center_distance", distance, CENTER_DISTANCES)
        self.distance, self.normalize, self.per_class = distance, bool(normalize), bool(per_class)
        if self.normalize:
            with torch.no_grad():
                self.centers.copy_(F.normalize(self.centers, dim=1))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, weight={self.weight:g}, "
                f"update={self.update!r}, distance={self.distance!r}, normalize={self.normalize}, "
                f"per_class={self.per_class}")

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """L_C (see the module docstring) as a float32 scalar, whatever the autocast dtype."""
        self._check(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            x, c = features.float(), self.centers.float()[labels]
            if self.normalize:
                x, c = F.normalize(x, dim=1), F.normalize(c, dim=1)
            d = (x - c).pow(2).sum(dim=1)
            if self.distance == "euclidean":
                d = safe_sqrt(d)
            if not self.per_class:
                return d.mean()
            w = 1.0 / same_class_counts(labels)       # sum(w) = K_b, the classes in the batch
            return (w * d).sum() / w.sum()

    @torch.no_grad()
    def after_step(self, features: Tensor, labels: Tensor) -> None:
        """The ema center update (only classes present in the batch move); then, with
        `normalize`, the stored centers are projected back onto the unit sphere."""
        if self.update == "ema":
            self._ema_update(features, labels)
        if self.normalize:
            self.centers.copy_(F.normalize(self.centers, dim=1))

    def _ema_update(self, features: Tensor, labels: Tensor) -> None:
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = features.detach().float()
            if self.normalize:
                x = F.normalize(x, dim=1)
            # One-hot matmul rather than index_add_: deterministic on CUDA as well.
            onehot = F.one_hot(labels, self.num_classes).float()      # (B, K)
            sums = onehot.t() @ x                                     # (K, D) sum of x_i per class
            counts = onehot.sum(dim=0)                                # (K,)   n_j
            if distributed():
                dist.all_reduce(sums)
                dist.all_reduce(counts)
            if self.per_class:
                # weights w_i = 1/n_j: the weighted sum is the class mean, the total weight 1
                present = (counts > 0).float()
                sums, counts = sums / counts.clamp(min=1)[:, None], present
            c = self.centers.data
            # sum_{i: y_i=j} w_i (c_j - x_i) = W_j c_j - sum_i w_i x_i; zero for absent classes.
            delta = (counts[:, None] * c - sums) / (1.0 + counts[:, None])
            c.sub_(self.alpha * delta)


def build_center(num_classes: int, feat_dim: int, cfg: "RunConfig") -> CenterLoss:
    """Method "center" (fgvc.losses.registry)."""
    return CenterLoss(num_classes, feat_dim, cfg.center_weight, update=cfg.center_update, lr=cfg.center_lr,
                      alpha=cfg.center_alpha, seed=cfg.seed, distance=cfg.center_distance,
                      normalize=cfg.center_normalize, per_class=cfg.center_per_class)


__all__ = ["Centers", "CenterLoss", "build_center", "distributed", "safe_sqrt", "same_class_counts"]
