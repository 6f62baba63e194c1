"""Auxiliary losses on the pooled features: center loss (Wen et al., ECCV 2016) with its
variants, the contrastive-center loss (Qi and Su, 2017), the feature-norm penalty (center
loss with its centres held at zero: a control), and a registry for new ones.

The formulas, their config keys and their relation to the papers are tabulated in
../docs/losses.md.

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

Auxiliary-loss protocol (what the training loop calls; every registered loss follows it)::

    aux = build_aux_loss(cfg, K, feature_dim(model)).to(device)   # None for method "ce"
    opt = SGD(list(model.parameters()) + aux.model_parameters(), ...)
    aux_opt = aux.make_optimizer()           # its own optimizer, or None
    loss = ce + aux.weight * aux(feats, labels)   # forward: UNWEIGHTED float32 scalar
    loss.backward()
    aux.before_step()                        # e.g. rescale / all-reduce its gradients
    opt.step(); aux_opt and aux_opt.step()
    aux.after_step(feats.detach(), labels)   # e.g. a non-gradient update of its state

`weight` is lambda (cfg.center_weight). A new loss is a module with these five methods
and `weight`, registered with `@register_loss("name")` on a factory
`(num_classes, feat_dim, cfg) -> module`; `method: name` in a YAML then selects it
(docs/losses.md has a ten-line example). Its state_dict goes into the run's checkpoint.

Under torch.distributed (DDP: the centers are not inside the model's wrapper),
`before_step` averages the centers' gradient over processes and the ema rule sums the
per-class statistics over processes, so every process keeps identical centers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from fgvc.aux_registry import (CENTER_DISTANCES, CENTER_UPDATES, GRADIENT_UPDATES, check_aux_config, check_choice,
                               check_new_name, check_positive, check_unit_interval, check_weight, register_method,
                               registered_methods, unregister_method)
from fgvc.errors import FGVCError

if TYPE_CHECKING:
    from fgvc.config import RunConfig

# What the training loop calls on an auxiliary loss (see the module docstring).
PROTOCOL = ("forward", "model_parameters", "make_optimizer", "before_step", "after_step")
AuxLoss = nn.Module
AuxFactory = Callable[[int, int, "RunConfig"], AuxLoss]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _safe_sqrt(sq: Tensor) -> Tensor:
    """sqrt with gradient 0 at 0 (instead of NaN) and no epsilon in the value."""
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def _same_class_counts(labels: Tensor) -> Tensor:
    """n_{y_i}: how many samples of the batch share sample i's class (float, shape (B,))."""
    return (labels[:, None] == labels[None, :]).sum(dim=1).float()


class _Centers(nn.Module):
    """Class centers with a gradient update rule ("learned" or "joint") or "ema".

    The arguments are checked with the rules of fgvc.aux_registry (those of the YAML keys),
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
        if _distributed():
            dist.all_reduce(grad)
            grad.div_(dist.get_world_size())
        if self.update == "learned":
            grad.mul_(1.0 / self.weight)

    def after_step(self, features: Tensor, labels: Tensor) -> None:
        """Nothing for the gradient rules (their optimizers have stepped)."""


class CenterLoss(_Centers):
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
                d = _safe_sqrt(d)
            if not self.per_class:
                return d.mean()
            w = 1.0 / _same_class_counts(labels)       # sum(w) = K_b, the classes in the batch
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
            if _distributed():
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


class ContrastiveCenterLoss(_Centers):
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


# --------------------------------------------------------------------------- registry
# The method names and their config checks live in fgvc.aux_registry (torch-free, so that
# RunConfig.validate() knows them without importing this module); the module factories here.
AUX_LOSSES: dict[str, AuxFactory] = {}


def register_loss(name: str, *, check: Callable[["RunConfig"], None] | None = None):
    """Decorator: register `factory(num_classes, feat_dim, cfg) -> module` as method `name`.

    `check(cfg)` (optional) raises FGVCError for settings the loss cannot use; it runs in
    RunConfig.validate(), so a bad grid fails before any run starts.
    """
    check_new_name(name)

    def decorator(factory: AuxFactory) -> AuxFactory:
        register_method(name, check)
        AUX_LOSSES[name] = factory
        return factory

    return decorator


def _factory_of(name: str):
    """Decorator: the module factory of built-in method `name` (already in fgvc.aux_registry)."""
    if name not in registered_methods() or name in AUX_LOSSES:
        raise ValueError(f"{name!r} is not a built-in method without a factory (see fgvc.aux_registry)")

    def decorator(factory: AuxFactory) -> AuxFactory:
        AUX_LOSSES[name] = factory
        return factory

    return decorator


def unregister_loss(name: str) -> None:
    """Remove a registered loss (for tests and interactive use)."""
    AUX_LOSSES.pop(name, None)
    unregister_method(name)


def registered_losses() -> list[str]:
    """Names usable as `method` besides "ce", in registration order."""
    return registered_methods()


def build_aux_loss(cfg: "RunConfig", num_classes: int, feat_dim: int) -> nn.Module | None:
    """The auxiliary loss module of `cfg.method` (None for "ce")."""
    if cfg.method == "ce":
        return None
    check_aux_config(cfg)
    if cfg.method not in AUX_LOSSES:
        raise FGVCError(f"method {cfg.method!r} has no module: register it with fgvc.losses.register_loss, "
                        "not fgvc.aux_registry.register_method alone")
    module = AUX_LOSSES[cfg.method](num_classes, feat_dim, cfg)
    missing = [m for m in (*PROTOCOL, "weight") if not hasattr(module, m)]
    if missing:
        raise TypeError(f"loss {cfg.method!r} does not follow the auxiliary-loss protocol: "
                        f"missing {', '.join(missing)} (see fgvc.losses)")
    return module


@_factory_of("center")
def _center(num_classes: int, feat_dim: int, cfg: "RunConfig") -> CenterLoss:
    return CenterLoss(num_classes, feat_dim, cfg.center_weight, update=cfg.center_update, lr=cfg.center_lr,
                      alpha=cfg.center_alpha, seed=cfg.seed, distance=cfg.center_distance,
                      normalize=cfg.center_normalize, per_class=cfg.center_per_class)


@_factory_of("contrastive_center")  # its check: fgvc.aux_registry
def _contrastive_center(num_classes: int, feat_dim: int, cfg: "RunConfig") -> ContrastiveCenterLoss:
    return ContrastiveCenterLoss(num_classes, feat_dim, cfg.center_weight, update=cfg.center_update,
                                 lr=cfg.center_lr, delta=cfg.contrastive_delta, seed=cfg.seed)


@_factory_of("feature_norm")  # registered (lambda only) in fgvc.aux_registry
def _feature_norm(num_classes: int, feat_dim: int, cfg: "RunConfig") -> FeatureNormLoss:
    return FeatureNormLoss(feat_dim, cfg.center_weight)


__all__ = ["CenterLoss", "ContrastiveCenterLoss", "FeatureNormLoss", "AUX_LOSSES", "PROTOCOL", "register_loss", "unregister_loss",
           "registered_losses", "build_aux_loss", "check_aux_config"]


def optimizer_step(loss: Tensor, optimizer: torch.optim.Optimizer, aux: nn.Module | None,
                   aux_optimizer: torch.optim.Optimizer | None, features: Tensor, labels: Tensor) -> None:
    """One step of the model and its auxiliary loss, in the order the protocol needs:
    backward, `before_step`, both optimizers, `after_step` (see the module docstring)."""
    optimizer.zero_grad(set_to_none=True)
    if aux_optimizer is not None:
        aux_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if aux is not None:
        aux.before_step()
    optimizer.step()
    if aux_optimizer is not None:
        aux_optimizer.step()
    if aux is not None:
        aux.after_step(features.detach().float(), labels)
