"""CenterLoss against hand-computed values on a 3-sample, 3-class, 2-d example."""

from __future__ import annotations

import pytest
import torch

from fgvc.errors import FGVCError
from fgvc.losses import CenterLoss

# Centers c0=(0,0), c1=(1,1), c2=(5,5) (class 2 is absent from the batch).
CENTERS = [[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]
X = [[1.0, 2.0], [3.0, 1.0], [0.0, -1.0]]
Y = [0, 1, 0]
# x - c_y: (1,2) -> 5, (2,0) -> 4, (0,-1) -> 1;  L = (5 + 4 + 1) / 3
LOSS = 10.0 / 3.0
# dL/dx_i = 2/B (x_i - c_{y_i})
GRAD_X = [[2 / 3, 4 / 3], [4 / 3, 0.0], [0.0, -2 / 3]]
# dL/dc_j = -2/B sum_{i: y_i=j} (x_i - c_j): c0: -2/3 (1,1); c1: -2/3 (2,0); c2: 0
GRAD_C = [[-2 / 3, -2 / 3], [-4 / 3, 0.0], [0.0, 0.0]]


def make(update: str = "learned", weight: float = 0.001, **kw) -> CenterLoss:
    loss = CenterLoss(3, 2, weight, update, **kw)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor(CENTERS))
    return loss


def batch(dtype=torch.float32):
    return torch.tensor(X, dtype=dtype, requires_grad=True), torch.tensor(Y)


def test_loss_value_and_gradients():
    loss = make("learned")
    x, y = batch()
    value = loss(x, y)
    assert value.dtype == torch.float32 and value.ndim == 0
    assert value.item() == pytest.approx(LOSS, abs=1e-6)
    value.backward()
    torch.testing.assert_close(x.grad, torch.tensor(GRAD_X))
    torch.testing.assert_close(loss.centers.grad, torch.tensor(GRAD_C))


def test_ema_update_hand_computed():
    loss = make("ema", alpha=0.5)
    assert not loss.centers.requires_grad
    x, y = batch()
    loss(x, y).backward()
    assert loss.centers.grad is None  # no gradient reaches the centers
    loss.before_step()
    loss.after_step(x, y)
    # class 0: n=2, sum(c0 - x_i) = (-1,-1), delta = (-1,-1)/3, c0 - 0.5 delta = (1/6, 1/6)
    # class 1: n=1, (c1 - x) = (-2,0), delta = (-1,0), c1 - 0.5 delta = (1.5, 1)
    # class 2: absent, unchanged
    torch.testing.assert_close(loss.centers.data, torch.tensor([[1 / 6, 1 / 6], [1.5, 1.0], [5.0, 5.0]]))


@pytest.mark.parametrize("update", ["learned", "joint"])
def test_after_step_is_noop_for_gradient_rules(update):
    loss = make(update)
    x, y = batch()
    loss.after_step(x, y)
    torch.testing.assert_close(loss.centers.data, torch.tensor(CENTERS))


def learned_step(weight: float) -> torch.Tensor:
    """One step with a CE-free total loss lambda * L_C, as the training loop does it."""
    loss = make("learned", weight=weight)
    opt = loss.make_optimizer()
    x, y = batch()
    (weight * loss(x, y)).backward()
    loss.before_step()
    opt.step()
    loss.after_step(x, y)
    return loss.centers.detach().clone()


def test_learned_center_step_is_lambda_invariant():
    # c <- c - 0.5 * dL/dc: c0 = (1/3, 1/3), c1 = (1 + 2/3, 1), c2 unchanged
    expected = torch.tensor([[1 / 3, 1 / 3], [5 / 3, 1.0], [5.0, 5.0]])
    small, large = learned_step(0.001), learned_step(0.1)
    torch.testing.assert_close(small, expected)
    torch.testing.assert_close(large, expected)
    torch.testing.assert_close(small, large)


def test_learned_optimizer_is_plain_sgd():
    opt = make("learned", lr=0.5).make_optimizer()
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.5, 0.0, 0.0)
    assert make("joint").make_optimizer() is None and make("ema").make_optimizer() is None


@pytest.mark.parametrize("update,in_model_opt", [("learned", False), ("ema", False), ("joint", True)])
def test_centers_in_model_optimizer_only_for_joint(update, in_model_opt):
    model = torch.nn.Linear(2, 3)
    loss = make(update)
    opt = torch.optim.SGD(list(model.parameters()) + loss.model_parameters(), lr=0.1, momentum=0.9)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert any(p is loss.centers for p in params) == in_model_opt
    assert len(params) == 2 + in_model_opt


def test_joint_gradient_is_not_rescaled():
    loss = make("joint", weight=0.01)
    x, y = batch()
    (0.01 * loss(x, y)).backward()
    loss.before_step()
    torch.testing.assert_close(loss.centers.grad, 0.01 * torch.tensor(GRAD_C))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_float32_loss_for_low_precision_inputs(dtype):
    loss = CenterLoss(3, 8, 0.001, seed=0)
    # ||300 - c||^2 summed over 8 dims is ~7e5: beyond float16's range (65504).
    x = torch.full((4, 8), 300.0, dtype=dtype, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    ref = ((x.detach().float() - loss.centers.detach()[y]) ** 2).sum(1).mean()
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            value = loss(x, y)
        assert value.dtype == torch.float32
        assert torch.isfinite(value)
        torch.testing.assert_close(value, ref)
    value.backward()
    assert torch.isfinite(x.grad.float()).all()


def test_centers_seeded_from_own_generator():
    state = torch.get_rng_state()
    a, b = CenterLoss(5, 4, 0.001, seed=3), CenterLoss(5, 4, 0.001, seed=3)
    c = CenterLoss(5, 4, 0.001, seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert a.centers.shape == (5, 4) and a.centers.dtype == torch.float32
    assert torch.equal(a.centers, b.centers)
    assert not torch.equal(a.centers, c.centers)
    expected = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))  # N(0, 1)
    assert torch.equal(a.centers.data, expected)


@pytest.mark.parametrize("weight", [0, -0.001, float("nan"), float("inf")])
def test_bad_weight(weight):
    with pytest.raises(FGVCError, match=r"lambda.*must be > 0.*'ce'"):
        CenterLoss(3, 2, weight)


def test_bad_update():
    with pytest.raises(FGVCError, match=r"'sgd'.*learned, joint, ema"):
        CenterLoss(3, 2, 0.001, update="sgd")


def test_single_process_group_keeps_values(tmp_path):
    """The all-reduce paths (DDP) leave the hand-computed values as they are with one process."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        test_learned_center_step_is_lambda_invariant()
        test_ema_update_hand_computed()
    finally:
        dist.destroy_process_group()
