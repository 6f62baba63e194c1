"""The feature-norm penalty, a mechanism control for center loss (the fair-answer sweep):
lambda * mean ||x||^2, i.e. center loss with every centre held at zero."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from fgvc.losses.registry import check_weight

if TYPE_CHECKING:
    from fgvc.config import RunConfig


class FeatureNormLoss(nn.Module):
    """The feature-norm penalty, a mechanism control for center loss:

        L_norm = (1/B) sum_i ||x_i||^2

    i.e. center loss (default form) with every centre held at zero. It shrinks the pooled
    features as center loss does, without pulling them towards class centres: if it helps as
    much, the centres are not what helps. No parameters, no optimizer.
    """

    def __init__(self, feat_dim: int, weight: float):
        super().__init__()
        check_weight(weight, "feature_norm", key="center_weight (lambda)")
        self.feat_dim, self.weight = int(feat_dim), float(weight)

    def extra_repr(self) -> str:
        return f"feat_dim={self.feat_dim}, weight={self.weight:g}"

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"expected features of shape (B, {self.feat_dim}), got {tuple(features.shape)}")
        with torch.autocast(device_type=features.device.type, enabled=False):
            return features.float().pow(2).sum(dim=1).mean()

    def model_parameters(self) -> list[nn.Parameter]:
        return []

    def make_optimizer(self) -> None:
        return None

    def before_step(self) -> None:
        """Nothing to synchronise: no parameters of its own."""

    def after_step(self, features: Tensor, labels: Tensor) -> None:
        """No state to update."""


def build_feature_norm(num_classes: int, feat_dim: int, cfg: "RunConfig") -> FeatureNormLoss:
    """Method "feature_norm" (fgvc.losses.registry: it reads lambda only)."""
    return FeatureNormLoss(feat_dim, cfg.center_weight)


__all__ = ["FeatureNormLoss", "build_feature_norm"]
