"""Center loss (Wen et al., ECCV 2016) in the form the published experiment used.

The loss is the one of KaiyangZhou/pytorch-center-loss, which the reference blog post
trained with:

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

Center update rules (`update`):
- ``learned`` (default; KaiyangZhou): the centers have their own SGD (lr 0.5, no momentum,
  no weight decay) and their gradient is multiplied by 1/lambda before the step, so the
  center step is that of L_C alone and does not shrink with lambda.
- ``joint``: the centers join the model's optimizer as plain parameters (what a naive
  implementation does; they then also get its momentum and weight decay).
- ``ema``: the paper's rule, no gradient to the centers:
  delta c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j);  c_j <- c_j - alpha * delta c_j.

Training-loop protocol (the same for all rules)::

    center = CenterLoss(K, feature_dim(model), weight, update).to(device)
    opt = SGD(list(model.parameters()) + center.model_parameters(), ...)
    center_opt = center.make_optimizer()                  # None unless "learned"
    loss = ce + weight * center(feats, labels)
    loss.backward()
    center.before_step()
    opt.step(); center_opt and center_opt.step()
    center.after_step(feats, labels)

Under torch.distributed (DDP: the centers are not inside the model's wrapper),
`before_step` averages the centers' gradient over processes and the ema rule sums the
per-class statistics over processes, so every process keeps identical centers.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.config import CENTER_UPDATES  # ("learned", "joint", "ema")
from fgvc.errors import FGVCError


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class CenterLoss(nn.Module):
    """Unweighted center loss L_C with its own centers and a selectable update rule."""

    def __init__(self, num_classes: int, feat_dim: int, weight: float, update: str = "learned",
                 lr: float = 0.5, alpha: float = 0.5, seed: int = 0):
        super().__init__()
        if update not in CENTER_UPDATES:
            raise FGVCError(f"unknown center_update {update!r}: choose one of {', '.join(CENTER_UPDATES)}")
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
            raise FGVCError(f"invalid center loss weight (lambda) {weight!r}: must be > 0 "
                            "(use method 'ce' for no center loss)")
        if update == "learned" and not (math.isfinite(lr) and lr > 0):
            raise FGVCError(f"invalid center_lr {lr!r}: must be a positive number")
        if update == "ema" and not 0 < alpha <= 1:
            raise FGVCError(f"invalid center_alpha {alpha!r}: must be in (0, 1]")
        self.num_classes, self.feat_dim = int(num_classes), int(feat_dim)
        self.weight, self.update, self.lr, self.alpha = float(weight), update, float(lr), float(alpha)
        # Own generator: the centers do not depend on (or disturb) the model's init RNG.
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(self.num_classes, self.feat_dim, generator=g, dtype=torch.float32)
        self.centers = nn.Parameter(centers, requires_grad=update != "ema")

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, weight={self.weight:g}, "
                f"update={self.update!r}")

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """L_C = mean_i ||x_i - c_{y_i}||^2 as a float32 scalar, whatever the autocast dtype."""
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"expected features of shape (B, {self.feat_dim}), got {tuple(features.shape)}")
        with torch.autocast(device_type=features.device.type, enabled=False):
            diff = features.float() - self.centers.float()[labels]
            return diff.pow(2).sum(dim=1).mean()

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
        if _distributed():
            dist.all_reduce(grad)
            grad.div_(dist.get_world_size())
        if self.update == "learned":
            grad.mul_(1.0 / self.weight)

    @torch.no_grad()
    def after_step(self, features: Tensor, labels: Tensor) -> None:
        """The paper's center update for "ema" (only classes present in the batch move)."""
        if self.update != "ema":
            return
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = features.detach().float()
            # One-hot matmul rather than index_add_: deterministic on CUDA as well.
            onehot = F.one_hot(labels, self.num_classes).float()      # (B, K)
            sums = onehot.t() @ x                                     # (K, D) sum of x_i per class
            counts = onehot.sum(dim=0)                                # (K,)   n_j
            if _distributed():
                dist.all_reduce(sums)
                dist.all_reduce(counts)
            c = self.centers.data
            # sum_{i: y_i=j} (c_j - x_i) = n_j c_j - sum_i x_i; zero for absent classes.
            delta = (counts[:, None] * c - sums) / (1.0 + counts[:, None])
            c.sub_(self.alpha * delta)
