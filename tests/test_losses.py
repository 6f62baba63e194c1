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


# --------------------------------------------------------------------------- variants
# Same batch: squared distances s = (5, 4, 1), classes y = (0, 1, 0) -> n_{y_i} = (2, 1, 2), K_b = 2.
SQRT5 = 5 ** 0.5
VARIANTS = {
    # (distance, per_class): (loss, dL/dx)
    # euclidean: d = (sqrt5, 2, 1), L = mean d; dL/dx_i = (x_i - c)/(B d_i)
    ("euclidean", False): ((SQRT5 + 3) / 3, [[1 / (3 * SQRT5), 2 / (3 * SQRT5)], [1 / 3, 0.0], [0.0, -1 / 3]]),
    # per class: class means (5 + 1)/2 = 3 and 4, L = (3 + 4)/2; dL/dx_i = 2 (x_i - c)/(n_i K_b)
    ("squared", True): (3.5, [[0.5, 1.0], [2.0, 0.0], [0.0, -0.5]]),
    # both: class means (sqrt5 + 1)/2 and 2; dL/dx_i = (x_i - c)/(d_i n_i K_b)
    ("euclidean", True): (((SQRT5 + 1) / 2 + 2) / 2, [[1 / (4 * SQRT5), 2 / (4 * SQRT5)], [0.5, 0.0], [0.0, -0.25]]),
}


@pytest.mark.parametrize("distance,per_class", list(VARIANTS))
def test_variant_value_and_gradient(distance, per_class):
    value_expected, grad_expected = VARIANTS[distance, per_class]
    loss = make("learned", distance=distance, per_class=per_class)
    x, y = batch()
    value = loss(x, y)
    assert value.dtype == torch.float32 and value.ndim == 0
    assert value.item() == pytest.approx(value_expected, rel=1e-6)
    value.backward()
    torch.testing.assert_close(x.grad, torch.tensor(grad_expected))


def test_per_class_equals_default_on_balanced_batch():
    loss, pc = make(), make(per_class=True)
    x = torch.tensor([[1.0, 2.0], [3.0, 1.0], [0.0, -1.0], [2.0, 2.0]])
    y = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(loss(x, y), pc(x, y))


def test_euclidean_gradient_is_zero_not_nan_at_the_center():
    loss = make("learned", distance="euclidean")
    x = torch.tensor([[0.0, 0.0], [4.0, 4.0]], requires_grad=True)  # x_0 sits on c_0
    value = loss(x, torch.tensor([0, 1]))
    assert value.item() == pytest.approx(18 ** 0.5 / 2)
    value.backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 0.0], [0.5 / 2 ** 0.5, 0.5 / 2 ** 0.5]]))
    assert torch.isfinite(loss.centers.grad).all()


# Normalised example: x/|x| = (0.6, 0.8), (0, 1), (0, -1); stored centers c0 = (1, 0) and
# c1 = (0, 2) (forward uses (0, 1)). Squared distances 0.8, 0, 2. For s = ||x/|x| - c||^2
# ds/dx = -(2/|x|) (c - (x^.c) x^): x0: -(2/5) (0.64, -0.48); x1: 0; x2: -(2/3) (1, 0).
NX = [[3.0, 4.0], [0.0, 2.0], [0.0, -3.0]]
NC = [[1.0, 0.0], [0.0, 2.0], [0.0, 1.0]]
DS = [[-0.256, 0.192], [0.0, 0.0], [-2 / 3, 0.0]]
NORMALIZED = {
    ("squared", False): (2.8 / 3, [[g / 3 for g in r] for r in DS]),
    # d = sqrt(s): dd/dx = ds/dx / (2 d); x1 is at zero distance -> gradient 0
    ("euclidean", False): ((0.8 ** 0.5 + 2 ** 0.5) / 3,
                           [[g / (2 * 0.8 ** 0.5 * 3) for g in DS[0]], [0.0, 0.0],
                            [g / (2 * 2 ** 0.5 * 3) for g in DS[2]]]),
    # per class (n = 2, 1, 2; K_b = 2): L = ((0.8 + 2)/2 + 0)/2; weights 1/(n_i K_b) = 1/4, 1/2, 1/4
    ("squared", True): (0.7, [[g / 4 for g in DS[0]], [0.0, 0.0], [g / 4 for g in DS[2]]]),
    ("euclidean", True): ((0.8 ** 0.5 + 2 ** 0.5) / 4,
                          [[g / (2 * 0.8 ** 0.5 * 4) for g in DS[0]], [0.0, 0.0],
                           [g / (2 * 2 ** 0.5 * 4) for g in DS[2]]]),
}


def make_normalized(update="learned", **kw) -> CenterLoss:
    loss = CenterLoss(3, 2, 0.001, update, normalize=True, **kw)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor(NC))
    return loss


@pytest.mark.parametrize("distance,per_class", list(NORMALIZED))
def test_normalized_value_and_gradient(distance, per_class):
    value_expected, grad_expected = NORMALIZED[distance, per_class]
    loss = make_normalized(distance=distance, per_class=per_class)
    x = torch.tensor(NX, requires_grad=True)
    value = loss(x, torch.tensor(Y))
    assert value.item() == pytest.approx(value_expected, rel=1e-6)
    value.backward()
    torch.testing.assert_close(x.grad, torch.tensor(grad_expected))
    # the value depends on the directions only
    torch.testing.assert_close(loss(7 * x.detach(), torch.tensor(Y)), value.detach())


def test_normalized_centers_on_unit_sphere_at_init_and_after_steps():
    loss = CenterLoss(5, 4, 0.001, normalize=True, seed=1)
    raw = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss.centers.data, raw / raw.norm(dim=1, keepdim=True))
    # learned: the optimizer step leaves the sphere, after_step projects back
    loss = make_normalized("learned")
    opt = loss.make_optimizer()
    x, y = torch.tensor(NX), torch.tensor(Y)
    (0.001 * loss(x, y)).backward()
    loss.before_step()
    opt.step()
    assert not torch.allclose(loss.centers.data.norm(dim=1), torch.ones(3))
    stepped = loss.centers.data.clone()
    loss.after_step(x, y)
    torch.testing.assert_close(loss.centers.data.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(loss.centers.data, stepped / stepped.norm(dim=1, keepdim=True))


def test_ema_normalized_hand_computed():
    loss = CenterLoss(3, 2, 0.001, "ema", alpha=0.5, normalize=True)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, -0.8]]))
    loss.after_step(torch.tensor(NX), torch.tensor(Y))
    # class 0 on unit features (0.6, 0.8), (0, -1): sum(c0 - x^) = (1.4, 0.2), delta = that / 3,
    # c0 - 0.5 delta = (1 - 1.4/6, -0.2/6), then projected on the sphere.
    c0 = torch.tensor([1 - 1.4 / 6, -0.2 / 6])
    expected = torch.stack([c0 / c0.norm(), torch.tensor([0.0, 1.0]), torch.tensor([0.6, -0.8])])
    torch.testing.assert_close(loss.centers.data, expected)


def test_ema_per_class_hand_computed():
    loss = make("ema", alpha=0.5, per_class=True)
    x, y = batch()
    loss.after_step(x.detach(), y)
    # weights 1/n_j: class 0 mean (0.5, 0.5), delta = (c0 - mean)/2 = (-0.25, -0.25), c0 = (0.125, 0.125);
    # class 1 (n = 1) as the default rule: (1.5, 1); class 2 absent.
    torch.testing.assert_close(loss.centers.data, torch.tensor([[0.125, 0.125], [1.5, 1.0], [5.0, 5.0]]))


def reference_loss(x, y, c, distance, normalize, per_class):
    """The documented formula, one sample at a time (independent of the vectorised code)."""
    terms, weights = [], []
    for i in range(len(y)):
        xi, ci = x[i], c[y[i]]
        if normalize:
            xi, ci = xi / xi.norm(), ci / ci.norm()
        s = ((xi - ci) ** 2).sum()
        terms.append(s.sqrt() if distance == "euclidean" else s)
        weights.append(1.0 / sum(int(yj == y[i]) for yj in y) if per_class else 1.0)
    return sum(w * t for w, t in zip(weights, terms)) / sum(weights)


@pytest.mark.parametrize("update", ["learned", "joint", "ema"])
@pytest.mark.parametrize("distance", ["squared", "euclidean"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("per_class", [False, True])
def test_every_combination_matches_reference_and_steps(update, distance, normalize, per_class):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64).float().requires_grad_()
    y = torch.tensor([0, 2, 2, 1, 0, 2, 3])
    loss = CenterLoss(4, 5, 0.01, update, distance=distance, normalize=normalize, per_class=per_class, seed=2)
    xr = x.detach().clone().requires_grad_()
    ref = reference_loss(xr, y.tolist(), loss.centers.detach(), distance, normalize, per_class)
    value = loss(x, y)
    torch.testing.assert_close(value, ref)
    (0.01 * value).backward()
    (0.01 * ref).backward()
    torch.testing.assert_close(x.grad, xr.grad)
    model_opt = torch.optim.SGD(loss.model_parameters() or [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    own_opt = loss.make_optimizer()
    before = loss.centers.detach().clone()
    loss.before_step()
    model_opt.step()
    if own_opt is not None:
        own_opt.step()
    loss.after_step(x.detach(), y)
    assert torch.isfinite(loss.centers).all()
    assert not torch.equal(before[:4], loss.centers.data[:4])   # the present classes moved
    if normalize:
        torch.testing.assert_close(loss.centers.data.norm(dim=1), torch.ones(4))


def test_bad_distance():
    with pytest.raises(FGVCError, match=r"'manhattan'.*squared, euclidean"):
        CenterLoss(3, 2, 0.001, distance="manhattan")
