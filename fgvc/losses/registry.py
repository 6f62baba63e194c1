"""The auxiliary losses by name, torch-free: each registered `method` with the config keys it
reads, the check of their values and its module factory, in one entry; and the rules the
keys' values obey (`check_choice`, `check_weight`, ...), which the loss modules' constructors
use too.

`fgvc.config` calls `check_aux_config` from `RunConfig.validate()` (so a bad grid fails
before any run starts) and `unused_keys` for the run identity; neither imports torch. The
built-in losses' factories are named by their module path and imported only when a run
builds its loss (`build_aux_loss`); a loss registered at run time with `@register_loss`
passes its factory itself. Adding a built-in loss: one file in fgvc/losses/ with the module
and a `build_<name>(num_classes, feat_dim, cfg)` factory, and one `LossSpec` in BUILTIN below.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fgvc.errors import FGVCError

# --------------------------------------------------------------------------- value rules
# The rules the keys' values obey, shared by the YAML checks below and the loss modules'
# constructors (so both say the same).
CENTER_UPDATES = ("learned", "joint", "ema")
GRADIENT_UPDATES = ("learned", "joint")  # the rules that learn the centers by gradient
CENTER_DISTANCES = ("squared", "euclidean")


def bad_value(key: str, value: Any, why: str) -> FGVCError:
    return FGVCError(f"invalid value {key}={value!r}: {why}")


def _finite_positive(value: Any) -> bool:
    try:
        return math.isfinite(value) and value > 0
    except TypeError:
        return False


def check_choice(key: str, value: Any, choices: Sequence[str], *, also: Sequence[str] = ()) -> None:
    """`value` is one of `choices` (or of `also`, accepted but not advertised)."""
    if value not in (*choices, *also):
        raise bad_value(key, value, f"choose one of {', '.join(choices)}")


def check_positive(key: str, value: Any) -> None:
    """`value` is a finite number > 0."""
    if not _finite_positive(value):
        raise bad_value(key, value, "must be a positive number")


def check_unit_interval(key: str, value: Any) -> None:
    """`value` is in (0, 1] (the ema rate center_alpha)."""
    try:
        ok = 0 < value <= 1
    except TypeError:
        ok = False
    if not ok:
        raise bad_value(key, value, "must be in (0, 1]")


def check_weight(value: Any, method: str, key: str = "center_weight") -> None:
    """lambda, the weight of method `method`'s loss, is a finite number > 0 (no loss at all
    is method 'ce'). `key` names it in the message: the YAML key, or the constructor's
    argument."""
    if not _finite_positive(value):
        raise bad_value(key, value, f"must be > 0 for method {method!r} (use method 'ce' for no auxiliary loss)")


# --------------------------------------------------------------------------- registry
# A check takes a run config (fgvc.config.RunConfig, or anything with its attributes) and
# raises FGVCError for settings the loss cannot use.
Check = Callable[[Any], None]
# A factory builds the unweighted loss module: (num_classes, feat_dim, cfg) -> nn.Module.
Factory = Callable[[int, int, Any], Any]

# The auxiliary-loss config keys. A loss reads all of them (center, contrastive_center) or
# declares the ones it reads; the others are blanked in its run identity
# (fgvc.config.RunConfig.identity), as every one is for "ce", and not checked.
AUX_KEYS = ("center_weight", "center_update", "center_lr", "center_alpha", "center_distance", "center_normalize",
            "center_per_class", "contrastive_delta")
# What the training loop calls on an auxiliary loss (fgvc/losses/__init__.py), besides `weight`.
PROTOCOL = ("forward", "model_parameters", "make_optimizer", "before_step", "after_step")


@dataclass(frozen=True)
class LossSpec:
    """One registered loss: its name (the `method`), the AUX_KEYS it reads (always
    center_weight, its lambda), its own check, its factory (a callable, or the
    "module:function" path of a built-in one, imported when first built), and the loss it is
    the mechanism control of, if any (that loss with its mechanism removed: the report
    pairs the two, fgvc.report.panels.control_panels)."""

    name: str
    factory: Factory | str
    keys: tuple[str, ...] = AUX_KEYS
    check: Check | None = None
    control_of: str = ""

    def build(self, num_classes: int, feat_dim: int, cfg: Any):
        factory = self.factory
        if isinstance(factory, str):
            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        return factory(num_classes, feat_dim, cfg)


_LOSSES: dict[str, LossSpec] = {}  # in registration order


# --------------------------------------------------------------------------- registering
def _check_name(name: str) -> None:
    if name == "ce" or not name.isidentifier():
        raise ValueError(f"invalid loss name {name!r}: an identifier other than 'ce'")
    if name in _LOSSES:
        raise ValueError(f"loss {name!r} is already registered")


def _add(spec: LossSpec) -> None:
    _check_name(spec.name)
    unknown = [k for k in spec.keys if k not in AUX_KEYS]
    if unknown or "center_weight" not in spec.keys:
        raise ValueError(f"keys of loss {spec.name!r} must include center_weight and come from "
                         f"{', '.join(AUX_KEYS)}; got {', '.join(spec.keys)}")
    _LOSSES[spec.name] = spec


def register_loss(name: str, *, check: Check | None = None, keys: Sequence[str] = AUX_KEYS, control_of: str = ""):
    """Decorator: register `factory(num_classes, feat_dim, cfg) -> module` as method `name`,
    reading the config `keys`. `check(cfg)` (optional) raises FGVCError for settings the loss
    cannot use; it runs in RunConfig.validate(), so a bad grid fails before any run starts.
    `control_of`: the loss this one is the mechanism control of (the report pairs them)."""
    _check_name(name)

    def decorator(factory: Factory) -> Factory:
        _add(LossSpec(name, factory, tuple(keys), check, control_of))
        return factory

    return decorator


def unregister_loss(name: str) -> None:
    """Remove a registered loss (for tests and interactive use)."""
    _LOSSES.pop(name, None)


def registered_losses() -> list[str]:
    """Names usable as `method` besides "ce", in registration order."""
    return list(_LOSSES)


def controls() -> dict[str, str]:
    """Each loss that has a mechanism control -> that control's name (center -> feature_norm)."""
    return {spec.control_of: spec.name for spec in _LOSSES.values() if spec.control_of}


def unused_keys(method: str) -> tuple[str, ...]:
    """The auxiliary-loss keys `method` does not read (all of them for "ce")."""
    spec = _LOSSES.get(method)
    used = spec.keys if spec is not None else ()
    return tuple(k for k in AUX_KEYS if k not in used)


# --------------------------------------------------------------------------- using
def check_aux_config(cfg: Any) -> None:
    """The method name and every auxiliary-loss setting it reads, then the loss's own check
    (called by RunConfig.validate())."""
    method = cfg.method
    if method != "ce" and method not in _LOSSES:
        raise bad_value("method", method, f"choose one of {', '.join(['ce', *_LOSSES])}")
    used = _LOSSES[method].keys if method != "ce" else ()
    # A saved config has the settings its method does not read blanked (RunConfig.identity()).
    check_choice("center_update", cfg.center_update, CENTER_UPDATES,
                 also=("none",) if "center_update" not in used else ())
    if "center_weight" in used:
        check_weight(cfg.center_weight, method)
    if "center_lr" in used:
        check_positive("center_lr", cfg.center_lr)
    if "center_alpha" in used:
        check_unit_interval("center_alpha", cfg.center_alpha)
    check_choice("center_distance", cfg.center_distance, CENTER_DISTANCES)
    check_positive("contrastive_delta", cfg.contrastive_delta)
    own = _LOSSES[method].check if method != "ce" else None
    if own is not None:
        own(cfg)


def build_aux_loss(cfg: Any, num_classes: int, feat_dim: int):
    """The auxiliary loss module of `cfg.method` (None for "ce"), on the CPU. `cfg` is a
    validated RunConfig (RunConfig.validate() ran check_aux_config)."""
    if cfg.method == "ce":
        return None
    if cfg.method not in _LOSSES:
        raise bad_value("method", cfg.method, f"choose one of {', '.join(['ce', *_LOSSES])}")
    module = _LOSSES[cfg.method].build(num_classes, feat_dim, cfg)
    missing = [m for m in (*PROTOCOL, "weight") if not hasattr(module, m)]
    if missing:
        raise TypeError(f"loss {cfg.method!r} does not follow the auxiliary-loss protocol: "
                        f"missing {', '.join(missing)} (see fgvc/losses/__init__.py)")
    return module


# --------------------------------------------------------------------------- built-in losses
def check_contrastive(cfg: Any) -> None:
    """contrastive_center learns its centres by gradient and has none of center loss's variants."""
    def bad(key: str, why: str) -> FGVCError:
        return FGVCError(f"invalid value {key}={getattr(cfg, key)!r} for method 'contrastive_center': {why}")

    if cfg.center_update not in GRADIENT_UPDATES:
        raise bad("center_update", "its centers are learned by gradient; use learned or joint")
    # Settings it would ignore would still change the run id: refuse them instead.
    for key, default in (("center_distance", "squared"), ("center_normalize", False), ("center_per_class", False)):
        if getattr(cfg, key) != default:
            raise bad(key, f"a center-loss variant only; leave it at {default!r} (use method 'center')")


BUILTIN = (
    LossSpec("center", "fgvc.losses.center:build_center"),
    LossSpec("contrastive_center", "fgvc.losses.contrastive_center:build_contrastive_center", check=check_contrastive),
    # The mechanism control of center loss (its centres held at zero): lambda only.
    LossSpec("feature_norm", "fgvc.losses.feature_norm:build_feature_norm", keys=("center_weight",),
             control_of="center"),
    # The zoo (issue 27): each at its paper's / pytorch-metric-learning's defaults, lambda its knob.
    LossSpec("arcface", "fgvc.losses.metric:build_arcface", keys=("center_weight",)),
    LossSpec("cosface", "fgvc.losses.metric:build_cosface", keys=("center_weight",)),
    LossSpec("supcon", "fgvc.losses.metric:build_supcon", keys=("center_weight",)),
    LossSpec("triplet", "fgvc.losses.metric:build_triplet", keys=("center_weight",)),
    LossSpec("pairwise_confusion", "fgvc.losses.confusion:build_pairwise_confusion", keys=("center_weight",)),
    LossSpec("max_entropy", "fgvc.losses.confusion:build_max_entropy", keys=("center_weight",)),
)
for _spec in BUILTIN:
    _add(_spec)


__all__ = ["CENTER_UPDATES", "GRADIENT_UPDATES", "CENTER_DISTANCES", "bad_value", "check_choice", "check_positive",
           "check_unit_interval", "check_weight", "AUX_KEYS", "PROTOCOL", "LossSpec", "BUILTIN", "register_loss",
           "unregister_loss", "registered_losses", "controls", "unused_keys", "check_aux_config", "build_aux_loss",
           "check_contrastive"]
