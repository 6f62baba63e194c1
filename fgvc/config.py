"""Run configuration: `RunConfig`, one validated dataclass per run (what a run is), built
from a benchmark YAML plus `--set` overrides, saved with the run and hashed into its run id;
beside it `RunOptions` (how it runs: device, workers, pipeline, progress), which never
changes a run's identity or its results (except `deterministic`, which makes repeated CPU
runs identical). Torch-free.

A benchmark YAML holds the keys of `RunConfig` (any of them may be a list: the grid
is the product) with two renames that read better in a grid: `methods` (list of
`method`) and `seeds` (list of `seed`). See ../shared/DESIGN.md, "Contracts".
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from fgvc.losses.registry import check_aux_config, unused_keys
from fgvc.errors import FGVCError
from fgvc.grid.halving import HALVING, parse_halving
from fgvc.names import slug

# The auxiliary-loss keys (method, center_*, contrastive_delta) and their values are
# checked by fgvc/losses/registry.py, which owns them; the rest here.
AUGMENTS = ("standard", "none")
LR_SCHEDULES = ("constant", "cosine")  # see fgvc/engine/schedule.py

# YAML grid keys that name a list of per-run values.
PLURAL_KEYS = {"methods": "method", "seeds": "seed"}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run (and so its identity)."""

    benchmark: str = "custom"
    model: str = "resnet50.tv_in1k"
    # True: timm's pretrained weights for `model` (hub, or `pretrained_file`);
    # a string: a timm pretrained tag to use instead; False/None: random init.
    pretrained: bool | str | None = True
    method: str = "ce"
    center_weight: float = 0.001
    center_update: str = "learned"
    center_lr: float = 0.5
    center_alpha: float = 0.5
    seed: int = 0
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4
    image_size: int = 224
    crop_pct: float = 0.875
    val_fraction: float = 0.0
    # ---- added after 0.1.0: hashed only when not at their default (see run_hash) ----
    val_seed: int = 0
    center_distance: str = "squared"
    center_normalize: bool = False
    center_per_class: bool = False
    contrastive_delta: float = 1.0
    # Training augmentation: "standard" (RandomResizedCrop scale (0.08, 1), ratio (3/4, 4/3),
    # horizontal flip) or "none" (the evaluation resize + center crop: for checks such as
    # the DDP-equivalence test, not a recipe).
    augment: str = "standard"
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    # Label smoothing of the cross-entropy term (torch's `label_smoothing`), for every method:
    # CE's own regulariser in the fair comparison (Szegedy et al. 2016; FGVC toolboxes' "CE").
    label_smoothing: float = 0.0
    # How often the test set is evaluated for the learning curve: every k epochs and always
    # after the last (0: after the last only). It cannot change a run's final numbers, so it
    # is not part of the identity (not hashed, not in config.yaml; provenance records it).
    eval_every: int = 5

    def __post_init__(self) -> None:
        # An int where a float is meant (center_weight=1) would hash differently from the same
        # run read back from its config.yaml (config_from_dict coerces): one spelling for both.
        for name, typ in _FIELD_TYPES.items():
            value = getattr(self, name)
            if typ == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))

    # ---- identity -------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The resolved per-run settings: what `run_id` hashes (all but `benchmark`; see
        run_hash) and what `save_config` writes to config.yaml.

        The auxiliary-loss settings a method does not read are blanked (all of them for
        `ce`): a grid over lambda runs the CE baseline once per seed, not once per lambda.
        `eval_every` (how a run is evaluated, not what it is) is left out.
        """
        d = dataclasses.asdict(self)
        for key in NOT_IDENTITY:
            d.pop(key)
        d.update({k: AUX_BLANK[k] for k in unused_keys(self.method)})
        if not self.val_fraction:
            d["val_seed"] = _DEFAULTS["val_seed"]
        return d

    @property
    def run_name(self) -> str:
        lam = self.identity()["center_weight"]
        ls = f"-ls{self.label_smoothing:g}" if self.label_smoothing else ""
        return f"{slug(self.model)}-{self.method}-lam{lam:g}{ls}-s{self.seed}"

    @property
    def run_hash(self) -> str:
        # Fields added after 0.1.0 enter the hash only when set, so run folders written
        # before they existed keep their ids (and are skipped / resumed, not redone).
        ident = {k: v for k, v in self.identity().items()
                 if k != "benchmark" and not (k in ADDED_KEYS and v == _DEFAULTS[k])}
        blob = json.dumps(ident, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]

    @property
    def run_id(self) -> str:
        return f"{self.run_name}-{self.run_hash}"

    # ---- validation -----------------------------------------------------------
    def validate(self) -> "RunConfig":
        def bad(key: str, value: Any, why: str) -> FGVCError:
            return FGVCError(f"invalid value {key}={value!r}: {why}")

        # The method (ce or a registered auxiliary loss) and its settings, then the loss's own
        # check (e.g. contrastive_center refuses ema): fgvc/losses/registry.py.
        check_aux_config(self)
        if self.augment not in AUGMENTS:
            raise bad("augment", self.augment, f"choose one of {', '.join(AUGMENTS)}")
        if self.val_seed < 0:
            raise bad("val_seed", self.val_seed, "must be >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", self.lr, "must be a positive number")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", self.lr_schedule, f"choose one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= self.warmup_epochs < max(self.epochs, 1):
            raise bad("warmup_epochs", self.warmup_epochs,
                      f"must be >= 0 and less than epochs={self.epochs} (at least one epoch at the full lr)")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", self.label_smoothing, "must be in [0, 1) (0: plain cross-entropy)")
        if self.eval_every < 0:
            raise bad("eval_every", self.eval_every, "must be >= 0 (0: test evaluated after the last epoch only)")
        if not 0 < self.crop_pct <= 1:
            raise bad("crop_pct", self.crop_pct, "must be in (0, 1]")
        for key in ("momentum", "weight_decay"):
            v = getattr(self, key)
            if not (v >= 0 and math.isfinite(v)):
                raise bad(key, v, "must be >= 0")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise bad(key, getattr(self, key), "must be >= 1")
        if self.image_size < MIN_IMAGE_SIZE:
            raise bad("image_size", self.image_size, f"must be >= {MIN_IMAGE_SIZE} (pixels of the square input)")
        if self.seed < 0:
            raise bad("seed", self.seed, "must be >= 0")
        if not 0 <= self.val_fraction < 1:
            raise bad("val_fraction", self.val_fraction,
                      "must be in [0, 1): the share of each class's training images held out for validation")
        return self



@dataclass
class RunOptions:
    """How to run (not what): these never change a run's identity."""

    data: Path
    out: Path
    pretrained_file: Path | None = None
    device: str = "auto"
    workers: int | None = None
    deterministic: bool = False
    progress: bool = True
    # Data path: "batched" keeps the decoded images on the device and augments whole batches
    # there (fgvc.data.batched), "per-sample" augments each image in a DataLoader (torchvision
    # v2); both draw from the same distribution. "auto": batched on CUDA, per-sample on CPU.
    pipeline: str = "auto"
    compile: bool = False  # torch.compile the model (fgvc.engine.device.compile_model: compiled once per grid)
    # "fp32", "bf16" (autocast) or "auto": bf16 on CUDA and on CPUs with bf16 instructions, else fp32
    # (fgvc.engine.device.resolve_precision).
    # Recorded in provenance; the report says when a group mixes precisions.
    precision: str = "auto"
    # Experiment trackers (fgvc.engine.trackers): any of "tensorboard" (event files in the run
    # folder's tb/) and "mlflow" (to mlflow_uri; None: a file store OUT/mlruns).
    trackers: tuple[str, ...] = ()
    mlflow_uri: str | None = None
    # Stop after this many epochs without finishing (no row.json; the epoch checkpoint resumes
    # it): a rung of successive halving (fgvc.grid.halving). None: train to cfg.epochs.
    stop_after: int | None = None
    # Called after each epoch with (epoch, record): the benchmark's ETA line, and tests that
    # simulate an interruption.
    on_epoch_end: Callable[[int, dict], None] | None = None


_DEFAULTS = {f.name: f.default for f in fields(RunConfig)}
ADDED_KEYS = ("val_seed", "center_distance", "center_normalize", "center_per_class", "contrastive_delta",
              "lr_schedule", "warmup_epochs", "augment", "label_smoothing")
# How a run is evaluated, not what it is: never hashed, never saved in config.yaml.
NOT_IDENTITY = ("eval_every",)
# The value an auxiliary-loss key takes in the identity of a method that does not read it:
# "no value" for the four keys of 0.1.0 (as CE's saved configs have them), else the default.
AUX_BLANK = {**{k: _DEFAULTS[k] for k in ("center_distance", "center_normalize", "center_per_class",
                                          "contrastive_delta")},
             "center_weight": 0.0, "center_update": "none", "center_lr": 0.0, "center_alpha": 0.0}


_FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}
_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
MIN_IMAGE_SIZE = 16  # pixels: torch's antialiased resize fails below 2, and nothing smaller is a usable input


def _coerce(key: str, value: Any) -> Any:
    """Check one scalar value against the field's type; a clear error on mismatch."""
    typ = _FIELD_TYPES[key]
    if key == "pretrained":
        if value is None or isinstance(value, (bool, str)):
            return value
        raise FGVCError(f"invalid value pretrained={value!r}: use true, false, null or a timm pretrained tag")
    if typ == "str":
        if isinstance(value, str):
            return value
    elif typ == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ == "bool":
        if isinstance(value, bool):
            return value
    elif typ == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            return float(value)  # YAML 1.1 (PyYAML) reads 1e-4 as text: it wants 1.0e-4
    raise FGVCError(f"invalid value {key}={value!r}: expected {typ}, got {type(value).__name__}")


def _check_key(key: str, source: str) -> str:
    key = PLURAL_KEYS.get(key, key)
    if key == "name":
        return "benchmark"
    if key not in _FIELD_TYPES:
        known = sorted(set(_FIELD_TYPES) | set(PLURAL_KEYS) | {"name"})
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"
        raise FGVCError(f"unknown key {key!r} in {source}{hint}")
    return key


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`--set key=value` pairs, values parsed as YAML (`--set seeds=[0,1,2]`)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise FGVCError(f"invalid --set {item!r}: expected key=value, e.g. --set epochs=3")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise FGVCError(f"invalid --set {item!r}: value is not valid YAML ({e.problem})") from None
    return out


CASES = "cases"  # a benchmark YAML's union of sub-grids (see load_grid)
# A confirmation grid names the sweep its settings were chosen in (a results folder beside
# its own); `fgvc report` checks seeds, settings and code against it (fgvc.report.protocol).
SELECTED_FROM = "selected_from"
GRID_ONLY = (CASES, HALVING, SELECTED_FROM)  # grid keys that are not RunConfig fields


def load_grid(path: str | Path | None, overrides: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """Read a benchmark YAML (or nothing) and apply overrides: key -> list of values.

    A YAML may list `cases:`, mappings whose keys replace the base keys for that case; the
    grid is then the union of each case's product, so methods can run at settings of their
    own (e.g. each at the lr it was tuned to). `--set` overrides win over base and cases.
    The cases come back under CASES, each as key -> list of values; a `halving` rule
    (fgvc.grid.halving) under HALVING, as a Halving (absent without one); the sweep a
    confirmation was selected from under SELECTED_FROM, as text."""
    raw: dict[str, Any] = {}
    source = "--set"
    if path is not None:
        path = Path(path)
        source = str(path)
        raw.update({_check_key(str(k), source) if k not in GRID_ONLY else k: v for k, v in _read_yaml(path).items()})
    cases = raw.pop(CASES, None)
    overrides = dict(overrides or {})
    from_yaml = raw.pop(HALVING, None)
    if HALVING in overrides:
        halving = parse_halving(overrides.pop(HALVING), "--set")
    else:
        halving = parse_halving(from_yaml, source)
    chosen_in = overrides.pop(SELECTED_FROM) if SELECTED_FROM in overrides else raw.pop(SELECTED_FROM, None)
    overrides = {_check_key(k, "--set"): v for k, v in overrides.items()}
    grid = _as_lists({**raw, **overrides})
    if halving is not None:
        grid[HALVING] = halving
    if chosen_in is not None:
        if not isinstance(chosen_in, str) or not chosen_in.strip():
            raise FGVCError(f"{source}: invalid {SELECTED_FROM} {chosen_in!r}: the sweep's results folder, beside "
                            "this grid's (e.g. selected_from: fair-lite0-cpu)")
        grid[SELECTED_FROM] = chosen_in.strip()
    if cases is not None:
        grid[CASES] = [_as_lists({k: v for k, v in case.items() if k not in overrides})
                       for case in _checked_cases(cases, source)]
    return grid


def grid_record(path: str | Path | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The grid as written (its YAML's mapping, `--set` overrides applied): what `fgvc
    benchmark` records as OUT/grid.yaml, so a results folder says which grid made it."""
    raw = dict(_read_yaml(Path(path))) if path is not None else {}
    return {**raw, **(overrides or {})}


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FGVCError(f"benchmark file not found: {path} (see benchmarks/*.yaml)")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise FGVCError(f"{path}: not valid YAML: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise FGVCError(f"{path}: expected a mapping of keys to values, got {type(loaded).__name__}")
    return loaded


def _checked_cases(cases: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(cases, list) or not cases:
        raise FGVCError(f"{source}: `cases` must be a non-empty list of mappings (key: value per case)")
    out = []
    for i, case in enumerate(cases):
        where = f"{source} cases[{i}]"
        if not isinstance(case, dict) or not case:
            raise FGVCError(f"{where}: expected a non-empty mapping of keys to values, got {case!r}")
        if CASES in case:
            raise FGVCError(f"{where}: `cases` cannot be nested; list every case at the top level")
        out.append({_check_key(str(k), where): v for k, v in case.items()})
    return out


def _as_lists(raw: dict[str, Any]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for key, value in raw.items():
        values = value if isinstance(value, list) else [value]
        if not values:
            raise FGVCError(f"empty list for {key!r}: give at least one value")
        grid[key] = [_coerce(key, v) for v in values]
    return grid


def expand_grid(grid: dict[str, list[Any]]) -> list[RunConfig]:
    """The product of all list-valued keys (the union over `cases`, when given), validated,
    duplicates (same run_id) dropped."""
    base = {k: v for k, v in grid.items() if k not in GRID_ONLY}
    runs: dict[str, RunConfig] = {}
    for sub in ([{**base, **case} for case in grid[CASES]] if CASES in grid else [base]):
        keys = list(sub)
        for combo in itertools.product(*(sub[k] for k in keys)):
            cfg = RunConfig(**dict(zip(keys, combo))).validate()
            runs.setdefault(cfg.run_id, cfg)
    # Seeds outermost so that a partial grid finishes whole pairs first.
    return sorted(runs.values(), key=lambda c: (c.seed, c.model, c.method, c.center_weight, c.run_id))


def config_from_dict(d: dict[str, Any], source: str = "config") -> RunConfig:
    """Rebuild a RunConfig from a saved `config.yaml` (unknown keys are an error)."""
    kwargs = {}
    for k, v in d.items():
        key = _check_key(k, source)
        kwargs[key] = _coerce(key, v)
    return RunConfig(**kwargs)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from fgvc.io import atomic_write_text

    # config.yaml holds the identity (CE runs with their center settings blanked), so that
    # load_config(path).run_id is the run's id.
    atomic_write_text(path, yaml.safe_dump(cfg.identity(), sort_keys=False))


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    return config_from_dict(yaml.safe_load(path.read_text()) or {}, str(path))


__all__ = [
    "RunConfig",
    "RunOptions",
    "LR_SCHEDULES",
    "parse_overrides",
    "load_grid",
    "grid_record",
    "CASES",
    "HALVING",
    "SELECTED_FROM",
    "expand_grid",
    "config_from_dict",
    "save_config",
    "load_config",
]
