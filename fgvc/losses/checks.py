"""The rules an auxiliary loss's settings obey, torch-free: what the YAML keys may hold
(checked by fgvc.losses.registry when a config is validated) and what the loss modules'
constructors accept (the same rules, so both say the same)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from fgvc.errors import FGVCError

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


__all__ = ["CENTER_UPDATES", "GRADIENT_UPDATES", "CENTER_DISTANCES", "bad_value", "check_choice", "check_positive",
           "check_unit_interval", "check_weight"]
