"""Contrastive-center loss (Qi and Su, 2017): center loss divided by the distances to the
other classes' centres; its centres (`Centers`, shared with center loss) are learned by
gradient. The formula and its relation to the paper are in docs/losses.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fgvc.losses.center import Centers
from fgvc.losses.registry import GRADIENT_UPDATES, check_positive

if TYPE_CHECKING:
    from fgvc.config import RunConfig


class ContrastiveCenterLoss(Centers):
    """Contrastive-center loss (Qi and Su, 2017), unweighted, batch mean:

        L_ct-c = (1/B) sum_i ||x_i - c_{y_i}||^2 / (sum_{j != y_i} ||x_i - c_j||^2 + delta)

    The paper writes (1/2) sum_i of the same ratio, so as for the center loss
    L_ct-c = (2/B) L_paper and lambda_here = lambda_paper * B / 2. The centers are
    learned by gradient ("learned": own SGD with the 1/lambda rescale, or "joint"); the
    ema rule is the center loss's closed form and does not apply.

    The denominator is computed exactly in O((B + K) D) without a (B, K, D) tensor nor the
    cancelling ||x||^2 - 2 x.c + ||c||^2 expansion, by the parallel-axis identity
    sum_j ||x - c_j||^2 = K ||x - m||^2 + sum_j ||c_j - m||^2 (m = mean of the centers),
    minus the own-class term.
    """

    METHOD = "contrastive_center"

    def __init__(self, num_classes: int, feat_dim: int, weight: float, update: str = "learned",
                 lr: float = 0.5, delta: float = 1.0, seed: int = 0):
        super().__init__(num_classes, feat_dim, weight, update, lr, seed=seed, updates=GRADIENT_UPDATES)
        check_positive("contrastive_delta", delta)
        self.delta = float(delta)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, weight={self.weight:g}, "
                f"update={self.update!r}, delta={self.delta:g}")

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        self._check(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            x, c = features.float(), self.centers.float()
            own = (x - c[labels]).pow(2).sum(dim=1)
            m = c.mean(dim=0)
            total = self.num_classes * (x - m).pow(2).sum(dim=1) + (c - m).pow(2).sum()
            others = (total - own).clamp(min=0)               # >= 0 exactly; rounding only
            return (own / (others + self.delta)).mean()


def build_contrastive_center(num_classes: int, feat_dim: int, cfg: "RunConfig") -> ContrastiveCenterLoss:
    """Method "contrastive_center" (fgvc.losses.registry; its check: check_contrastive there)."""
    return ContrastiveCenterLoss(num_classes, feat_dim, cfg.center_weight, update=cfg.center_update,
                                 lr=cfg.center_lr, delta=cfg.contrastive_delta, seed=cfg.seed)


__all__ = ["ContrastiveCenterLoss", "build_contrastive_center"]
