"""The loss zoo (issue 27): each loss against its reference on a small case (pytorch-metric-
learning's own output, or the paper's formula by hand), and each trains through the runner."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from fgvc.config import RunConfig, RunOptions
from fgvc.grid.benchmark import run_benchmark
from fgvc.losses.registry import build_aux_loss, registered_losses
from tiny import TINY

ZOO = ("arcface", "cosface", "supcon", "triplet", "pairwise_confusion", "max_entropy")
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3])


def build(method: str, k: int = 4, dim: int = 6, lam: float = 0.1):
    return build_aux_loss(RunConfig(method=method, center_weight=lam, lr=0.01).validate(), k, dim)


def test_every_zoo_loss_is_registered_with_lambda_as_its_only_key():
    assert set(ZOO) <= set(registered_losses())
    for m in ZOO:
        ident = RunConfig(method=m, center_weight=0.1, center_lr=0.3).validate().identity()
        assert (ident["center_weight"], ident["center_lr"], ident["center_update"]) == (0.1, 0.0, "none")


@pytest.mark.parametrize("method", ["arcface", "cosface", "supcon", "triplet"])
def test_metric_losses_equal_pytorch_metric_learnings_own_output(method):
    from pytorch_metric_learning import losses, miners

    torch.manual_seed(0)
    x = torch.randn(8, 6)
    mod = build(method)
    reference = {"arcface": lambda: losses.ArcFaceLoss(4, 6), "cosface": lambda: losses.CosFaceLoss(4, 6),
                 "supcon": losses.SupConLoss, "triplet": lambda: losses.TripletMarginLoss(margin=0.05)}[method]()
    if method in ("arcface", "cosface"):
        reference.W.data.copy_(mod.loss.W.data)
    if method == "triplet":
        mined = miners.TripletMarginMiner(margin=0.05, type_of_triplets="semihard")(x, LABELS)
        expected = reference(x, LABELS, mined)
    else:
        expected = reference(x, LABELS)
    assert mod(x, LABELS).item() == pytest.approx(expected.item(), rel=1e-6)


def test_arcface_and_cosface_train_their_weights_with_their_own_optimizer():
    mod = build("arcface", lam=0.1)
    opt = mod.make_optimizer()
    assert opt is not None and opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 0
    before = mod.loss.W.detach().clone()
    x = torch.randn(8, 6, requires_grad=True)
    (0.1 * mod(x, LABELS)).backward()
    grad = mod.loss.W.grad.clone()
    mod.before_step()
    assert torch.allclose(mod.loss.W.grad, grad / 0.1)  # the step is that of the loss alone
    opt.step()
    assert not torch.equal(before, mod.loss.W.detach())
    assert build("supcon").make_optimizer() is None and build("triplet").make_optimizer() is None


def test_pairwise_confusion_is_the_squared_distance_of_paired_different_class_predictions():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0],
                           [0.0, 2.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    labels = torch.tensor([0, 1, 2, 3, 1, 1, 0, 3])  # pairs (0,4) (1,5) (2,6) (3,7): labels differ for 0-4 and 2-6 only
    p = logits.softmax(1)
    expected = ((p[0] - p[4]).pow(2).sum() + (p[2] - p[6]).pow(2).sum()) / 4
    mod = build("pairwise_confusion")
    assert mod.inputs == "logits"
    assert mod(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)


def test_max_entropy_term_is_minus_the_entropy():
    mod = build("max_entropy")
    uniform = torch.zeros(3, 5)
    assert mod(uniform, LABELS[:3]).item() == pytest.approx(-math.log(5), rel=1e-6)
    logits = torch.tensor([[3.0, 0.0, -1.0]])
    p = logits.softmax(1)
    assert mod(logits, LABELS[:1]).item() == pytest.approx((p * p.log()).sum().item(), rel=1e-6)
    # CE - gamma * H(p): lowering the term raises the entropy
    x = torch.tensor([[4.0, 0.0, 0.0]], requires_grad=True)
    mod(x, LABELS[:1]).backward()
    assert x.grad[0, 0] > 0 and x.grad[0, 1] < 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ZOO)
def test_each_zoo_loss_trains_through_the_runner(method, sparrow_dataset, tmp_path):
    opts = RunOptions(data=sparrow_dataset, out=tmp_path, progress=False)
    frame = run_benchmark(None, opts, dict(TINY, methods=[method], center_weight=0.01, epochs=2), echo=lambda m: None)
    assert list(frame.status) == ["ok"], frame.error.tolist()
    metrics = pd.read_csv(tmp_path / "runs" / frame.run_id.iloc[0] / "metrics.csv")
    assert metrics.train_center.notna().all()
    assert metrics.train_loss.iloc[0] == pytest.approx(metrics.train_ce.iloc[0] + 0.01 * metrics.train_center.iloc[0],
                                                       rel=1e-4)
