"""The auxiliary-loss registry (a toy loss trained through the real runner) and the
contrastive-center loss against hand-computed values."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tiny import TINY
from torch import nn

from fgvc.grid.benchmark import run_benchmark
from fgvc.config import RunConfig, expand_grid, load_grid
from fgvc.errors import FGVCError
from fgvc.losses import (CenterLoss, ContrastiveCenterLoss, build_aux_loss, register_loss,
                         registered_losses, unregister_loss)
from fgvc.config import RunOptions


# --------------------------------------------------------------------------- registry
class FeatureNorm(nn.Module):
    """Toy loss: L = mean_i (||x_i|| - r)^2 with a radius r learned by its own SGD."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight
        self.radius = nn.Parameter(torch.zeros(()))
        self.values: list[tuple[float, int]] = []
        self.calls = dict(before_step=0, after_step=0)

    def forward(self, features, labels):
        value = (features.float().norm(dim=1) - self.radius).pow(2).mean()
        self.values.append((value.item(), labels.numel()))
        return value

    def model_parameters(self):
        return []

    def make_optimizer(self):
        return torch.optim.SGD([self.radius], lr=0.1)

    def before_step(self):
        self.calls["before_step"] += 1

    def after_step(self, features, labels):
        self.calls["after_step"] += 1


@pytest.fixture
def toy_loss():
    made: list[FeatureNorm] = []

    @register_loss("toy_norm")
    def factory(num_classes, feat_dim, cfg):
        made.append(FeatureNorm(cfg.center_weight))
        return made[-1]

    yield made
    unregister_loss("toy_norm")


@pytest.mark.slow
def test_toy_loss_trains_through_the_real_runner(toy_loss, sparrow_dataset, tmp_path):
    assert registered_losses()[:2] == ["center", "contrastive_center"] and "toy_norm" in registered_losses()
    opts = RunOptions(data=sparrow_dataset, out=tmp_path, progress=False)
    grid = dict(TINY, benchmark="toy", methods=["toy_norm"], center_weight=0.01)
    frame = run_benchmark(None, opts, grid, echo=lambda m: None)
    assert list(frame.status) == ["ok"], frame.error.tolist()
    row = frame.iloc[0]
    assert row.method == "toy_norm" and row.center_weight == 0.01
    (toy,) = toy_loss
    batches = len(toy.values)
    n_train = int((pd.read_csv(sparrow_dataset / "manifest.csv").is_train == 1).sum())
    assert batches >= 2 and sum(n for _, n in toy.values) in (n_train, n_train - 1)
    assert toy.calls == dict(before_step=batches, after_step=batches)
    assert toy.radius.item() > 0  # its own optimizer stepped (the gradient pulls r towards ||x||)
    metrics = pd.read_csv(tmp_path / "runs" / row.run_id / "metrics.csv")
    logged = sum(v * n for v, n in toy.values) / sum(n for _, n in toy.values)
    assert metrics.train_center.iloc[0] == pytest.approx(logged, rel=1e-4)
    assert metrics.train_loss.iloc[0] == pytest.approx(metrics.train_ce.iloc[0] + 0.01 * logged, rel=1e-4)


def test_unknown_method_lists_registered_losses(toy_loss):
    with pytest.raises(FGVCError, match=r"method='quadruplet'.*ce, center, contrastive_center, feature_norm, arcface, cosface, supcon, triplet, pairwise_confusion, max_entropy, toy_norm") as e:
        expand_grid(load_grid(None, {"methods": ["quadruplet"]}))
    assert "\n" not in str(e.value)
    with pytest.raises(FGVCError, match=r"method='quadruplet'.*ce, center, contrastive_center"):
        build_aux_loss(RunConfig(method="quadruplet"), 3, 2)


def test_build_aux_loss():
    assert build_aux_loss(RunConfig(method="ce"), 3, 2) is None
    center = build_aux_loss(RunConfig(method="center", center_weight=0.01, center_update="ema", center_alpha=0.3,
                                      center_distance="euclidean", center_normalize=True, center_per_class=True,
                                      seed=4), 3, 2)
    assert isinstance(center, CenterLoss)
    assert (center.weight, center.update, center.alpha, center.distance, center.normalize, center.per_class) == (
        0.01, "ema", 0.3, "euclidean", True, True)
    assert torch.equal(center.centers.data, CenterLoss(3, 2, 0.01, normalize=True, seed=4).centers.data)
    cc = build_aux_loss(RunConfig(method="contrastive_center", center_lr=0.2, contrastive_delta=2.0), 3, 2)
    assert isinstance(cc, ContrastiveCenterLoss) and (cc.delta, cc.lr, cc.update) == (2.0, 0.2, "learned")
    assert cc.make_optimizer().param_groups[0]["lr"] == 0.2


def test_registry_rejects_bad_names_and_modules():
    with pytest.raises(ValueError, match="already registered"):
        register_loss("center")
    with pytest.raises(ValueError, match="'ce'"):
        register_loss("ce")

    @register_loss("not_a_loss")
    def factory(num_classes, feat_dim, cfg):
        return nn.Identity()

    try:
        with pytest.raises(TypeError, match="model_parameters, make_optimizer, before_step, after_step, weight"):
            build_aux_loss(RunConfig(method="not_a_loss"), 3, 2)
    finally:
        unregister_loss("not_a_loss")
    assert "not_a_loss" not in registered_losses()


@pytest.mark.parametrize("override, message", [
    ({"center_update": "ema"}, r"center_update='ema' for method 'contrastive_center'.*learned or joint"),
    ({"center_normalize": True}, r"center_normalize=True for method 'contrastive_center'"),
    ({"center_distance": "euclidean"}, r"center_distance='euclidean' for method 'contrastive_center'"),
    ({"center_per_class": True}, r"center_per_class=True for method 'contrastive_center'"),
    ({"center_weight": 0}, r"center_weight=0.0: must be > 0 for method 'contrastive_center'"),
])
def test_contrastive_center_bad_settings_fail_at_validation(override, message):
    with pytest.raises(FGVCError, match=message):
        expand_grid(load_grid(None, {"methods": ["contrastive_center"], **override}))


def test_contrastive_center_ids_and_rejects_ema_directly():
    cfg = RunConfig(model="test_resnet", method="contrastive_center", center_weight=0.01).validate()
    assert cfg.run_id.startswith("test_resnet-contrastive_center-lam0.01-s0-")
    with pytest.raises(FGVCError, match="'ema'.*learned, joint"):
        ContrastiveCenterLoss(3, 2, 0.001, update="ema")
    with pytest.raises(FGVCError, match="contrastive_delta"):
        ContrastiveCenterLoss(3, 2, 0.001, delta=0.0)


# --------------------------------------------------------------------------- contrastive center
# Centers c0 = (0, 0), c1 = (1, 0), c2 = (0, 2); x0 = (1, 1) of class 0, x1 = (2, 0) of class 1.
# x0: own 2, others 1 + 2 = 3 -> 2 / (3 + 1) = 1/2;  x1: own 1, others 4 + 8 = 12 -> 1/13.
# L = (1/2 + 1/13) / 2 = 15/52.
# d r_i/d x_i = 2 (x_i - c_y)/(b_i + delta) - 2 a_i sum_{j != y} (x_i - c_j) / (b_i + delta)^2:
# x0: (1/2, 1/2) - (2/16) * 2 (1, 0) = (1/4, 1/2);  x1: (2/13, 0) - (2/169) (4, -2) = (18, 4)/169; then / B.
CC_CENTERS = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
CC_X, CC_Y = [[1.0, 1.0], [2.0, 0.0]], [0, 1]


def make_cc(update="learned", weight=0.001, delta=1.0) -> ContrastiveCenterLoss:
    loss = ContrastiveCenterLoss(3, 2, weight, update, delta=delta)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor(CC_CENTERS))
    return loss


def brute_force(x, y, c, delta):
    """The paper's ratio over a (B, K) table of squared distances, batch mean."""
    sq = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    own = sq.gather(1, y[:, None]).squeeze(1)
    return (own / (sq.sum(1) - own + delta)).mean()


def test_contrastive_center_value_and_gradient():
    loss = make_cc()
    x, y = torch.tensor(CC_X, requires_grad=True), torch.tensor(CC_Y)
    value = loss(x, y)
    assert value.dtype == torch.float32 and value.ndim == 0
    assert value.item() == pytest.approx(15 / 52, rel=1e-6)
    value.backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.125, 0.25], [9 / 169, 2 / 169]]))
    # centers' gradient against autograd of the brute-force formula
    c = torch.tensor(CC_CENTERS, requires_grad=True)
    brute_force(torch.tensor(CC_X), y, c, 1.0).backward()
    torch.testing.assert_close(loss.centers.grad, c.grad)


def test_contrastive_center_delta():
    # delta = 2: (2/5 + 1/14) / 2
    loss = make_cc(delta=2.0)
    assert loss(torch.tensor(CC_X), torch.tensor(CC_Y)).item() == pytest.approx((0.4 + 1 / 14) / 2, rel=1e-6)


def test_contrastive_center_matches_brute_force_on_random_data():
    g = torch.Generator().manual_seed(0)
    loss = ContrastiveCenterLoss(7, 5, 0.001, delta=0.5, seed=1)
    x = (3 * torch.randn(9, 5, generator=g)).requires_grad_()
    y = torch.randint(0, 7, (9,), generator=g)
    value = loss(x, y)
    xr = x.detach().clone().requires_grad_()
    cr = loss.centers.detach().clone().requires_grad_()
    ref = brute_force(xr, y, cr, 0.5)
    torch.testing.assert_close(value, ref)
    value.backward()
    ref.backward()
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(loss.centers.grad, cr.grad)


def test_contrastive_center_learned_step_is_lambda_invariant():
    def step(weight):
        loss = make_cc("learned", weight=weight)
        opt = loss.make_optimizer()
        (weight * loss(torch.tensor(CC_X), torch.tensor(CC_Y))).backward()
        loss.before_step()
        opt.step()
        loss.after_step(torch.tensor(CC_X), torch.tensor(CC_Y))
        return loss.centers.detach().clone()

    c = torch.tensor(CC_CENTERS, requires_grad=True)
    brute_force(torch.tensor(CC_X), torch.tensor(CC_Y), c, 1.0).backward()
    expected = torch.tensor(CC_CENTERS) - 0.5 * c.grad
    torch.testing.assert_close(step(0.001), expected)
    torch.testing.assert_close(step(0.1), expected)
    joint = make_cc("joint")
    assert joint.make_optimizer() is None and joint.model_parameters() == [joint.centers]


def test_contrastive_center_float32_under_autocast():
    loss = make_cc()
    x = torch.tensor(CC_X, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x, torch.tensor(CC_Y))
    assert value.dtype == torch.float32 and value.item() == pytest.approx(15 / 52, rel=1e-6)
