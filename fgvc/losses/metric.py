"""The metric-learning losses of the zoo, from pytorch-metric-learning (PML), on the pooled
features beside the unchanged CE head, weighted by lambda (center_weight):

- `arcface`: additive angular margin (Deng et al., CVPR 2019), PML's ArcFaceLoss (margin 28.6
  degrees, scale 64), with its own class-weight matrix;
- `cosface`: additive cosine margin (Wang et al., CVPR 2018), PML's CosFaceLoss (margin 0.35,
  scale 64), with its own class-weight matrix;
- `supcon`: supervised contrastive (Khosla et al., NeurIPS 2020), PML's SupConLoss
  (temperature 0.1), on L2-normalised features;
- `triplet`: PML's TripletMarginLoss (margin 0.05) on the semi-hard triplets PML's
  TripletMarginMiner (margin 0.05) finds in the batch.

PML's defaults are kept: each method tunes only its weight lambda (docs/losses.md). ArcFace's
and CosFace's weight matrices have their own SGD at the run's lr and momentum, no weight decay,
their gradient multiplied by 1/lambda first (as center loss's `learned` centres: the matrix's
step is that of its loss alone). SupCon and the triplet loss see positives only within a batch:
an anchor without another sample of its class adds nothing (docs/losses.md has the measurement).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from fgvc.losses.center import distributed
from fgvc.losses.registry import check_weight

if TYPE_CHECKING:
    from fgvc.config import RunConfig


class MetricLoss(nn.Module):
    """A PML loss (and miner) on the features, in float32, with the auxiliary-loss protocol."""

    def __init__(self, method: str, loss: nn.Module, weight: float, miner: nn.Module | None = None,
                 lr: float = 0.01, momentum: float = 0.9):
        super().__init__()
        check_weight(weight, method, key="center_weight (lambda)")
        self.method, self.loss, self.miner = method, loss, miner
        self.weight, self.lr, self.momentum = float(weight), float(lr), float(momentum)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, weight={self.weight:g}"

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = features.float()
            pairs = self.miner(x, labels) if self.miner is not None else None
            return self.loss(x, labels, pairs) if pairs is not None else self.loss(x, labels)

    def model_parameters(self) -> list[nn.Parameter]:
        return []

    def make_optimizer(self) -> torch.optim.Optimizer | None:
        """The loss's own parameters (ArcFace's and CosFace's class weights), if it has any."""
        params = list(self.loss.parameters())
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum) if params else None

    def before_step(self) -> None:
        """Average the loss's own gradients over processes (DDP) and undo lambda."""
        for p in self.loss.parameters():
            if p.grad is None:
                continue
            if distributed():
                torch.distributed.all_reduce(p.grad)
                p.grad.div_(torch.distributed.get_world_size())
            p.grad.mul_(1.0 / self.weight)

    def after_step(self, features: Tensor, labels: Tensor) -> None:
        """No state besides the optimizer's."""


def _pml():
    from pytorch_metric_learning import losses, miners

    return losses, miners


def build_arcface(num_classes: int, feat_dim: int, cfg: "RunConfig") -> MetricLoss:
    losses, _ = _pml()
    return MetricLoss("arcface", losses.ArcFaceLoss(num_classes, feat_dim), cfg.center_weight, lr=cfg.lr,
                      momentum=cfg.momentum)


def build_cosface(num_classes: int, feat_dim: int, cfg: "RunConfig") -> MetricLoss:
    losses, _ = _pml()
    return MetricLoss("cosface", losses.CosFaceLoss(num_classes, feat_dim), cfg.center_weight, lr=cfg.lr,
                      momentum=cfg.momentum)


def build_supcon(num_classes: int, feat_dim: int, cfg: "RunConfig") -> MetricLoss:
    losses, _ = _pml()
    return MetricLoss("supcon", losses.SupConLoss(), cfg.center_weight)


def build_triplet(num_classes: int, feat_dim: int, cfg: "RunConfig") -> MetricLoss:
    losses, miners = _pml()
    return MetricLoss("triplet", losses.TripletMarginLoss(margin=0.05), cfg.center_weight,
                      miner=miners.TripletMarginMiner(margin=0.05, type_of_triplets="semihard"))


__all__ = ["MetricLoss", "build_arcface", "build_cosface", "build_supcon", "build_triplet"]
