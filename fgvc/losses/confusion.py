"""Losses on the softmax outputs that keep a fine-grained classifier from over-confidence, by
Dubey et al.; both read the logits (`inputs = "logits"`: the loop passes logits, not features):

- `pairwise_confusion` (ECCV 2018): the Euclidean confusion between the predicted
  distributions of paired samples of different classes. As the authors' code pairs the
  batch's first half with its second half (sample i with i + B/2); a pair of one class adds
  nothing. L = (1/P) sum_{pairs, y_i != y_j} ||p_i - p_j||^2, with P = B/2 pairs (the paper's
  D_EC is the squared distance; the authors' code sums unsquared norms over B).
- `max_entropy` (NeurIPS 2018): CE - gamma * H(p); the term here is -H(p) = mean_i sum_k
  p_ik log p_ik, so lambda is the paper's gamma.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.losses.registry import check_weight

if TYPE_CHECKING:
    from fgvc.config import RunConfig


class LogitLoss(nn.Module):
    """A parameter-free term of the softmax outputs with the auxiliary-loss protocol."""

    inputs = "logits"

    def __init__(self, method: str, weight: float):
        super().__init__()
        check_weight(weight, method, key="center_weight (lambda)")
        self.method, self.weight = method, float(weight)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, weight={self.weight:g}"

    def model_parameters(self) -> list[nn.Parameter]:
        return []

    def make_optimizer(self) -> None:
        return None

    def before_step(self) -> None:
        """No parameters of its own."""

    def after_step(self, logits: Tensor, labels: Tensor) -> None:
        """No state."""


class PairwiseConfusion(LogitLoss):
    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            p = logits.float().softmax(dim=1)
            half = p.shape[0] // 2
            if half == 0:
                return p.sum() * 0.0
            d = (p[:half] - p[half:2 * half]).pow(2).sum(dim=1)
            different = (labels[:half] != labels[half:2 * half]).float()
            return (d * different).sum() / half


class MaxEntropy(LogitLoss):
    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logp = F.log_softmax(logits.float(), dim=1)
            return (logp.exp() * logp).sum(dim=1).mean()  # -H(p), mean over the batch


def build_pairwise_confusion(num_classes: int, feat_dim: int, cfg: "RunConfig") -> PairwiseConfusion:
    return PairwiseConfusion("pairwise_confusion", cfg.center_weight)


def build_max_entropy(num_classes: int, feat_dim: int, cfg: "RunConfig") -> MaxEntropy:
    return MaxEntropy("max_entropy", cfg.center_weight)


__all__ = ["LogitLoss", "PairwiseConfusion", "MaxEntropy", "build_pairwise_confusion", "build_max_entropy"]
