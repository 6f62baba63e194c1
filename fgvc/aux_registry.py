"""The auxiliary losses' names and settings, without torch: which `method` values exist,
which values their config keys (`center_*`, `contrastive_delta`) take, and the checks
that enforce both.

`fgvc.config` calls `check_aux_config` from `RunConfig.validate()`, so a bad grid fails
before any run starts and `import fgvc.config` stays free of torch. `fgvc.losses` builds
the modules: its `register_loss` adds a name here (with its optional `check`) and the
module factory there; its constructors check their arguments with the same rules
(`check_choice`, `check_weight`, ...). The built-in methods `center` and
`contrastive_center` are registered here, their factories in `fgvc.losses`.

Import graph: this module imports only `fgvc.errors`; `fgvc.config` and `fgvc.losses`
import it, never each other's way round (`fgvc.losses` may import `fgvc.config`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from fgvc.errors import FGVCError

CENTER_UPDATES = ("learned", "joint", "ema")
GRADIENT_UPDATES = ("learned", "joint")  # the rules that learn the centers by gradient
CENTER_DISTANCES = ("squared", "euclidean")

# A check takes a run config (fgvc.config.RunConfig, or anything with its attributes)
# and raises FGVCError for settings the loss cannot use.
Check = Callable[[Any], None]

_CHECKS: dict[str, Check | None] = {}  # method -> its own check, in registration order
# The auxiliary-loss config keys. A method reads all of them (center, contrastive_center) or
# declares the ones it reads (register_method(keys=...)); the others are blanked in its run
# identity (fgvc.config.RunConfig.identity), as every one is for "ce", and not checked.
AUX_KEYS = ("center_weight", "center_update", "center_lr", "center_alpha", "center_distance", "center_normalize",
            "center_per_class", "contrastive_delta")
_KEYS: dict[str, tuple[str, ...]] = {}  # method -> the AUX_KEYS it reads


# --------------------------------------------------------------------------- rules
def _bad(key: str, value: Any, why: str) -> FGVCError:
    return FGVCError(f"invalid value {key}={value!r}: {why}")


def _finite_positive(value: Any) -> bool:
    try:
        return math.isfinite(value) and value > 0
    except TypeError:
        return False


def check_choice(key: str, value: Any, choices: Sequence[str], *, also: Sequence[str] = ()) -> None:
    """`value` is one of `choices` (or of `also`, accepted but not advertised)."""
    if value not in (*choices, *also):
        raise _bad(key, value, f"choose one of {', '.join(choices)}")


def check_positive(key: str, value: Any) -> None:
    """`value` is a finite number > 0."""
    if not _finite_positive(value):
        raise _bad(key, value, "must be a positive number")


def check_unit_interval(key: str, value: Any) -> None:
    """`value` is in (0, 1] (the ema rate center_alpha)."""
    try:
        ok = 0 < value <= 1
    except TypeError:
        ok = False
    if not ok:
        raise _bad(key, value, "must be in (0, 1]")


def check_weight(value: Any, method: str, key: str = "center_weight") -> None:
    """lambda, the weight of method `method`'s loss, is a finite number > 0 (no loss at all
    is method 'ce'). `key` names it in the message: the YAML key, or the constructor's
    argument."""
    if not _finite_positive(value):
        raise _bad(key, value, f"must be > 0 for method {method!r} (use method 'ce' for no auxiliary loss)")


# --------------------------------------------------------------------------- registry
def check_new_name(name: str) -> None:
    """A usable new method name: an identifier other than 'ce', not yet registered."""
    if name == "ce" or not name.isidentifier():
        raise ValueError(f"invalid loss name {name!r}: an identifier other than 'ce'")
    if name in _CHECKS:
        raise ValueError(f"loss {name!r} is already registered")


def register_method(name: str, check: Check | None = None, keys: Sequence[str] = AUX_KEYS) -> None:
    """Make `name` a valid `method` with an optional `check(cfg)`, reading the auxiliary-loss
    config `keys` (always center_weight, its lambda). Registering a loss goes through
    `fgvc.losses.register_loss`, which also records its module factory."""
    check_new_name(name)
    unknown = [k for k in keys if k not in AUX_KEYS]
    if unknown or "center_weight" not in keys:
        raise ValueError(f"keys of loss {name!r} must include center_weight and come from {', '.join(AUX_KEYS)}; "
                         f"got {', '.join(keys)}")
    _CHECKS[name] = check
    _KEYS[name] = tuple(keys)


def unregister_method(name: str) -> None:
    _CHECKS.pop(name, None)
    _KEYS.pop(name, None)


def unused_keys(method: str) -> tuple[str, ...]:
    """The auxiliary-loss keys `method` does not read (all of them for "ce")."""
    used = _KEYS.get(method, ())
    return tuple(k for k in AUX_KEYS if k not in used)


def registered_methods() -> list[str]:
    """Names usable as `method` besides "ce", in registration order."""
    return list(_CHECKS)


def check_aux_config(cfg: Any) -> None:
    """The method name and every auxiliary-loss setting of a run config, then the method's
    own check (called by RunConfig.validate() and fgvc.losses.build_aux_loss)."""
    method = cfg.method
    if method != "ce" and method not in _CHECKS:
        raise _bad("method", method, f"choose one of {', '.join(['ce', *_CHECKS])}")
    # A saved config has the settings its method does not read blanked (RunConfig.identity()).
    used = _KEYS.get(method, ())
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
    own = _CHECKS.get(method)
    if own is not None:
        own(cfg)  # the loss's own settings (e.g. contrastive_center refuses ema)


# --------------------------------------------------------------------------- built-in methods
def _check_contrastive(cfg: Any) -> None:
    def bad(key: str, why: str) -> FGVCError:
        return FGVCError(f"invalid value {key}={getattr(cfg, key)!r} for method 'contrastive_center': {why}")

    if cfg.center_update not in GRADIENT_UPDATES:
        raise bad("center_update", "its centers are learned by gradient; use learned or joint")
    # Settings it would ignore would still change the run id: refuse them instead.
    for key, default in (("center_distance", "squared"), ("center_normalize", False), ("center_per_class", False)):
        if getattr(cfg, key) != default:
            raise bad(key, f"a center-loss variant only; leave it at {default!r} (use method 'center')")


register_method("center")
register_method("contrastive_center", _check_contrastive)
# The mechanism control of center loss: lambda * mean ||x_i||^2, i.e. center loss with every
# centre held at zero (fgvc.losses.FeatureNormLoss). It has no centres, so only lambda.
register_method("feature_norm", keys=("center_weight",))


__all__ = ["AUX_KEYS", "unused_keys", "CENTER_UPDATES", "GRADIENT_UPDATES", "CENTER_DISTANCES", "check_choice", "check_positive",
           "check_unit_interval", "check_weight", "check_new_name", "register_method", "unregister_method",
           "registered_methods", "check_aux_config"]
