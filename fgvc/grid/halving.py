"""Successive halving for sweeps: the grid key `halving: {rungs: [10, 20], keep: 0.5}`.

Every run of the grid trains to the first rung (epoch 10); then, per (model, method), the
settings (a run's identity without its seed) are ranked by their mean validation top-1 over
seeds at that epoch, and only the best `floor(keep * n)` (at least one) continue, resumed
from the rung's checkpoint, to the next rung, and so on; the survivors of the last rung train
to the end. The rest are *pruned*: they keep their folder and metrics.csv, and get a row.json
with status `pruned`, the epochs they trained and their last validation top-1.

Stopping at a rung and resuming is the same computation as not stopping (a run's random draws
and its lr depend only on (seed, epoch); tests/test_halving.py checks it under
--deterministic), so every survivor's result is that of a full run. The decisions are a pure
function of the runs' per-epoch validation scores (`decide`), recomputed at every start, so an
interrupted grid resumes to the same decisions, and a grid that gains settings re-ranks (a
pruned run that now ranks among the kept resumes where it stopped). Ties are broken by the
setting's text (fixed, arbitrary). A failed run (NaN loss) ranks its setting last.

A run that lost its checkpoint (a new machine: checkpoints are never committed) trains again
from epoch 1, and its scores come out a little different (fp32 rounding differs with the thread
count). Its first training's metrics are kept as metrics.first.csv (`keep_first_training`), and
the rule reads those for the epochs they cover (`decision_curve`): a decision once made stays
made, instead of flipping and sending other runs back to training.

Torch-free: the report replays the rule on a finished sweep's metrics (`replay`).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from fgvc.errors import FGVCError

HALVING = "halving"  # the grid key
PRUNED = "pruned"    # a pruned run's status in row.json / runs.csv
HALVING_ORDERS = ("rung", "method")  # how a grid schedules it (fgvc.grid.benchmark.run_halving); same decisions
TIE_DECIMALS = 6     # means compared at this precision: float noise never breaks an exact tie
FIRST_METRICS = "metrics.first.csv"  # a retrained run's first metrics.csv (see the module docstring)


@dataclass(frozen=True)
class Halving:
    """The rule: the rungs (epochs, ascending) and the fraction of settings kept at each."""

    rungs: tuple[int, ...]
    keep: float

    def __str__(self) -> str:
        return f"rungs {', '.join(map(str, self.rungs))}, keep {self.keep:g}"


def parse_halving(raw: Any, source: str) -> Halving | None:
    """The `halving` value of a grid (a mapping, or null for none); one clear error otherwise."""
    if raw is None or raw is False:
        return None
    example = "e.g. halving: {rungs: [10, 20], keep: 0.5}"
    if not isinstance(raw, dict) or set(raw) - {"rungs", "keep"} or "rungs" not in raw:
        raise FGVCError(f"{source}: invalid halving {raw!r}: expected a mapping with rungs and keep, {example}")
    rungs, keep = raw["rungs"], raw.get("keep", 0.5)
    if isinstance(rungs, int):
        rungs = [rungs]
    if (not isinstance(rungs, list) or not rungs
            or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rungs)
            or sorted(set(rungs)) != rungs):
        raise FGVCError(f"{source}: invalid halving rungs {rungs!r}: epochs >= 1 in ascending order, {example}")
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep < 1:
        raise FGVCError(f"{source}: invalid halving keep {keep!r}: the fraction of settings kept at each rung, "
                        f"in (0, 1), {example}")
    return Halving(tuple(rungs), float(keep))


def check_halving(halving: Halving, configs: Sequence[Any]) -> None:
    """Every run has a validation split to rank on and more epochs than the last rung."""
    for cfg in configs:
        if not cfg.val_fraction:
            raise FGVCError(f"halving ranks settings on validation, but run {cfg.run_id} has val_fraction 0: "
                            "set val_fraction (e.g. 0.2) or remove halving")
        if cfg.epochs <= halving.rungs[-1]:
            raise FGVCError(f"halving rung {halving.rungs[-1]} is not before the end of run {cfg.run_id} "
                            f"({cfg.epochs} epochs): every rung must be < epochs")


# --------------------------------------------------------------------------- the rule
@dataclass
class Trial:
    """One run as halving sees it: its group (model, method), its setting (identity without
    the seed), its validation top-1 per epoch so far, and whether it failed."""

    run_id: str
    group: str
    setting: str
    val: list[float]
    failed: bool = False
    epochs: int = 0

    def score(self, rung: int) -> float | None:
        """Validation top-1 after epoch `rung`; -inf for a failed run that did not get there;
        None while it has not got there."""
        if len(self.val) >= rung:
            v = self.val[rung - 1]
            return v if math.isfinite(v) else -math.inf
        return -math.inf if self.failed else None


@dataclass
class Pruned:
    """Why a run stopped: at which rung, its own and its setting's score, the setting's rank."""

    rung: int
    score: float | None
    setting_mean: float
    rank: int
    settings: int
    kept: int

    def text(self) -> str:
        mean = "failed" if not math.isfinite(self.setting_mean) else f"{self.setting_mean:.2f}"
        return (f"pruned at epoch {self.rung}: its setting ranked {self.rank} of {self.settings} by mean "
                f"validation top-1 ({mean}); {self.kept} kept")


@dataclass
class Decision:
    """Which runs go on (`alive`) and how far (`next_rung`: the first rung still waiting for
    their scores; None once every rung is decided: to the end), and which are pruned."""

    alive: list[str]
    pruned: dict[str, Pruned] = field(default_factory=dict)
    next_rung: int | None = None


def _setting_means(trials: list[Trial], rung: int) -> dict[str, float] | None:
    """Mean score per setting at `rung` (-inf when a seed failed); None while any is missing."""
    by: dict[str, list[float]] = {}
    for t in trials:
        s = t.score(rung)
        if s is None:
            return None
        by.setdefault(t.setting, []).append(s)
    return {k: (-math.inf if any(math.isinf(v) for v in vs) else sum(vs) / len(vs)) for k, vs in by.items()}


def decide(trials: Iterable[Trial], halving: Halving) -> Decision:
    """Apply the rule as far as the scores allow (see the module docstring)."""
    alive = list(trials)
    pruned: dict[str, Pruned] = {}
    for rung in halving.rungs:
        groups: dict[str, list[Trial]] = {}
        for t in alive:
            groups.setdefault(t.group, []).append(t)
        means = {g: _setting_means(ts, rung) for g, ts in groups.items()}
        if any(m is None for m in means.values()):
            return Decision([t.run_id for t in alive], pruned, rung)
        survivors = []
        for g, ts in groups.items():
            m = means[g]
            order = sorted(m, key=lambda s: (-round(m[s], TIE_DECIMALS) if math.isfinite(m[s]) else math.inf, s))
            kept = max(1, math.floor(halving.keep * len(order)))
            rank = {s: i + 1 for i, s in enumerate(order)}
            for t in ts:
                if rank[t.setting] <= kept:
                    survivors.append(t)
                else:
                    pruned[t.run_id] = Pruned(rung, t.score(rung), m[t.setting], rank[t.setting], len(order), kept)
        alive = survivors
    return Decision([t.run_id for t in alive], pruned, None)


# --------------------------------------------------------------------------- run folders
def setting_of(identity: dict) -> str:
    """A run's setting: its identity without seed and benchmark, as sorted JSON."""
    return json.dumps({k: v for k, v in identity.items() if k not in ("seed", "benchmark")}, sort_keys=True,
                      default=str)


def read_val_curve(run_dir: Path, name: str = "metrics.csv") -> list[float]:
    """val_top1 per epoch from a run folder's metrics.csv (or `name`; [] without one, or for
    one that is not text: a damaged run, which fgvc.runs.health reports)."""
    try:
        with open(run_dir / name, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    out = []
    for r in rows:
        try:
            out.append(float(r.get("val_top1") or "nan"))
        except ValueError:
            out.append(math.nan)
    return out


def decision_curve(run_dir: Path) -> list[float]:
    """The validation scores the rule reads: the first training's (metrics.first.csv) for the
    epochs it covers, then the current training's."""
    first = read_val_curve(run_dir, FIRST_METRICS)
    return first + read_val_curve(run_dir)[len(first):]


def keep_first_training(run_dir: Path) -> int:
    """Before a run with recorded epochs but no checkpoint trains again from epoch 1: move its
    metrics.csv to metrics.first.csv (once: the first training's is never overwritten).
    Returns the epochs kept (0: nothing to keep)."""
    first = Path(run_dir) / FIRST_METRICS
    epochs = 0 if first.exists() else len(read_val_curve(run_dir))
    if epochs:
        (Path(run_dir) / "metrics.csv").replace(first)
    return epochs


def row_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "row.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def group_of(cfg: Any) -> str:
    """The group a run's settings are ranked within: its (model, method)."""
    return f"{cfg.model} {cfg.method}"


def trials_of(configs: Sequence[Any], out: Path) -> list[Trial]:
    """The grid's runs as Trials, from their folders under OUT/runs."""
    trials = []
    for cfg in configs:
        run_dir = Path(out) / "runs" / cfg.run_id
        trials.append(Trial(cfg.run_id, group_of(cfg), setting_of(cfg.identity()),
                            decision_curve(run_dir), row_status(run_dir) == "failed", cfg.epochs))
    return trials


def replay(trials: list[Trial], halving: Halving) -> tuple[Decision, int, int]:
    """The rule applied to finished runs: (decision, epochs the grid trained in full, epochs it
    would have trained with halving)."""
    d = decide(trials, halving)
    full = sum(t.epochs for t in trials)
    spent = sum(d.pruned[t.run_id].rung if t.run_id in d.pruned else t.epochs for t in trials)
    return d, full, spent


__all__ = ["HALVING", "HALVING_ORDERS", "PRUNED", "FIRST_METRICS", "Halving", "parse_halving", "check_halving", "Trial",
           "Pruned", "group_of", "Decision", "decide", "setting_of", "read_val_curve", "decision_curve",
           "keep_first_training", "row_status", "trials_of", "replay"]
