"""Backbones from timm by name: pretrained weights from the hub or a local file, a head
rebuilt for the dataset's classes, and logits + pooled features from one forward pass.

Weights, in order of precedence:
- ``pretrained_file``: a safetensors file or a PyTorch state dict (``weights_only=True``;
  a dict holding it under ``state_dict`` / ``model`` works too) in timm's key names. It is
  checked against the architecture first (keys and shapes, the classifier aside) and then
  loaded by timm, which drops a classifier whose class count differs.
- ``pretrained=True``: timm's normal download (Hugging Face hub); ``pretrained="tag"``:
  that timm pretrained tag (``resnet50`` + ``a1_in1k`` -> ``resnet50.a1_in1k``).
- ``pretrained=False`` / ``None``: random init.
The model's ``pretrained_cfg`` (mean, std, interpolation) is always the one of the named
model/tag, also for a local file: name the tag the file holds (e.g. ``resnet50.tv_in1k``).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from timm.models import get_pretrained_cfg, load_state_dict, split_model_name_tag
from torch import Tensor, nn

from fgvc.errors import FGVCError

RANDOM_INIT = "random-init"
_HOW_TO_OFFLINE = "pass a local weights file with --pretrained-file PATH (make: WEIGHTS=PATH)"


# ---- names ------------------------------------------------------------------------
def _close(name: str, pool: list[str]) -> str:
    matches = difflib.get_close_matches(name, pool, n=4, cutoff=0.6)
    return f": did you mean {', '.join(matches)}?" if matches else " (see timm.list_models())"


def _resolve_name(name: str, pretrained: bool | str | None) -> str:
    """`arch` or `arch.tag` as timm knows it; a clear error for unknown names or tags."""
    arch, tag = split_model_name_tag(name)
    if not timm.is_model(arch):
        pool = timm.list_pretrained() if tag else timm.list_models()
        raise FGVCError(f"unknown model {name!r}{_close(name, pool)}")
    if isinstance(pretrained, str) and pretrained:
        if tag and tag != pretrained:
            raise FGVCError(f"model {name!r} names pretrained tag {tag!r} but pretrained={pretrained!r}: "
                            "give the tag in one place only")
        tag = pretrained
    if not tag:
        return arch
    full = f"{arch}.{tag}"
    tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
    if tag not in tags:
        close = difflib.get_close_matches(tag, tags, n=4, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else f"its tags: {', '.join(tags[:10]) or 'none'}"
        raise FGVCError(f"unknown pretrained tag {tag!r} for model {arch!r}: {hint}")
    return full


def _hub_name(full: str) -> str:
    """`arch.tag` of the weights timm downloads for `full` (the default tag if none)."""
    cfg = get_pretrained_cfg(full)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise FGVCError(f"timm has no pretrained weights for {full!r}: use pretrained=False for "
                        f"random init, or {_HOW_TO_OFFLINE}")
    return f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture


# ---- weights files ----------------------------------------------------------------
def _check_file(path: str | Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FGVCError(f"weights file not found: {p} (check --pretrained-file / WEIGHTS=)")
    return p.resolve()


def is_state_dict(obj) -> bool:
    """A non-empty dict of tensors."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def read_state_dict(path: Path, what: str = "weights file") -> dict[str, Tensor]:
    """The tensors timm will load from `path` (same reader, so the same keys): safetensors or
    a PyTorch state dict, plain or under 'state_dict' / 'model', read with weights_only=True
    (DDP 'module.' prefixes stripped). `what` names the file in errors."""
    expected = "expected safetensors or a PyTorch state dict, possibly under 'state_dict' or 'model'"
    try:
        sd = load_state_dict(str(path), weights_only=True)
    except Exception as e:  # corrupt file, pickle refused by weights_only, ...
        raise FGVCError(f"cannot read {what} {path}: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''} ({expected})") from None
    if not is_state_dict(sd):
        raise FGVCError(f"{what} {path} does not hold a state dict of tensors ({expected})")
    return sd


def _check_matches(path: Path, sd: dict[str, Tensor], full: str, num_classes: int, **kwargs: Any) -> None:
    """Compare the file's keys and shapes with the model's; timm's own load would skip
    missing keys silently once the classifier is dropped (strict=False)."""
    try:
        with torch.device("meta"):  # shapes only: no memory, no init
            ref = timm.create_model(full, pretrained=False, num_classes=num_classes, **kwargs)
    except Exception:  # a model that cannot be built on "meta": build it for real
        with torch.random.fork_rng(devices=[]):
            ref = timm.create_model(full, pretrained=False, num_classes=num_classes, **kwargs)
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    cfg = ref.pretrained_cfg
    ignore: set[str] = set()
    classifiers = cfg.get("classifier") or ()
    if isinstance(classifiers, str):
        classifiers = (classifiers,)
    if num_classes != cfg.get("num_classes"):  # timm drops these keys from the file
        ignore = {f"{c}.{s}" for c in classifiers for s in ("weight", "bias")}

    mismatch = describe_mismatch(sd, expected, ignore, source="file")
    if mismatch:
        raise FGVCError(f"weights file {path} does not match {full}: {mismatch}; "
                        "pass the model name the file was saved from")


def describe_mismatch(sd: dict[str, Tensor], expected: dict[str, tuple], ignore: set[str] = frozenset(),
                      source: str = "file") -> str | None:
    """'N missing keys (...), M unexpected keys (...), K shape mismatches (...)' between a
    saved state dict and a model's shapes, or None when they match. BatchNorm step
    counters are ignored: they do not change the outputs."""

    def keep(k: str) -> bool:
        return k not in ignore and not k.endswith("num_batches_tracked")

    missing = [k for k in expected if keep(k) and k not in sd]
    unexpected = [k for k in sd if keep(k) and k not in expected]
    shapes = [f"{k}: {source} {tuple(sd[k].shape)} vs model {expected[k]}"
              for k in expected if keep(k) and k in sd and tuple(sd[k].shape) != expected[k]]
    if not (missing or unexpected or shapes):
        return None

    def few(items: list[str], what: str) -> str:
        more = ", ..." if len(items) > 3 else ""
        return f"{len(items)} {what} ({', '.join(items[:3])}{more})"

    return ", ".join(few(x, w) for x, w in ((missing, "missing keys"), (unexpected, "unexpected keys"),
                                            (shapes, "shape mismatches")) if x)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---- hub --------------------------------------------------------------------------
def _hub_reachable() -> bool:
    """A fast DNS check before timm's download, whose retries take ~45 s to fail offline.
    Undecided cases (a proxy, HF_HUB_OFFLINE) are left to huggingface_hub."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in (
            "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _cached_hub_file(full: str) -> str | None:
    """The weights file in the local Hugging Face cache, if an earlier download left one."""
    from huggingface_hub import try_to_load_from_cache

    cfg = get_pretrained_cfg(full)
    if cfg is None or not cfg.hf_hub_id:
        return None
    names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for name in names:
        hit = try_to_load_from_cache(cfg.hf_hub_id, name)
        if isinstance(hit, str):
            return hit
    return None


# ---- public API ---------------------------------------------------------------------
def build_model(name: str, num_classes: int, *, pretrained: bool | str | None = True,
                pretrained_file: str | Path | None = None, seed: int = 0, **timm_kwargs: Any) -> nn.Module:
    """A timm model with a fresh `num_classes` head, initialised under torch seed `seed`
    (same seed -> same head; the global RNG is left as it was). `timm_kwargs` go to
    `timm.create_model` (e.g. `drop_rate`)."""
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise FGVCError(f"invalid num_classes {num_classes!r}: must be an integer >= 1")
    full = _resolve_name(name, pretrained)
    create: dict[str, Any] = dict(num_classes=num_classes, **timm_kwargs)
    if pretrained_file is not None:
        path = _check_file(pretrained_file)
        _check_matches(path, read_state_dict(path), full, num_classes, **timm_kwargs)
        create.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    elif pretrained is True or isinstance(pretrained, str):
        full = _hub_name(full)
        create.update(pretrained=True)
        if not _hub_reachable():
            cached = _cached_hub_file(full)
            if cached is None:
                raise FGVCError(f"cannot download pretrained weights for {full}: the Hugging Face hub is "
                                f"unreachable (no network?); {_HOW_TO_OFFLINE}")
            create.update(pretrained_cfg_overlay=dict(file=cached))
    else:
        create.update(pretrained=False)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return timm.create_model(full, **create)
        except FGVCError:
            raise
        except Exception as e:
            if not create["pretrained"]:
                raise
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            where = create.get("pretrained_cfg_overlay", {}).get("file") or "the Hugging Face hub"
            raise FGVCError(f"cannot load pretrained weights for {full} from {where}: {detail}; "
                            f"{_HOW_TO_OFFLINE}") from e


def forward_with_features(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(logits, pooled pre-classifier features) from one forward pass.

    The features are timm's `pre_logits`: the globally pooled last-conv output, after the
    head's dropout in training mode if the model was built with one (`drop_rate`; timm's
    default is 0 for resnet50 and tf_efficientnet_lite0). In eval mode they are the plain
    pooled features, and the logits always equal `model(x)`.
    """
    feats = model.forward_head(model.forward_features(x), pre_logits=True)
    logits = model.get_classifier()(feats)
    return logits, feats


class WithFeatures(nn.Module):
    """`forward(x) -> (logits, features)` as one module, so that DDP (which synchronises
    gradients only through the wrapped module's forward) and torch.compile see the whole pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return forward_with_features(self.model, x)


@dataclass
class Backbone:
    """One backbone as a run uses it, built once: the timm model (with its seeded head), the
    width of its pooled features, the data config of its weights and their provenance
    (`weights_info`). `WithFeatures(backbone.model)` gives logits and features in one pass."""

    model: nn.Module
    feature_dim: int
    data_config: dict
    weights: dict


def load_backbone(name: str, num_classes: int, *, pretrained: bool | str | None = True,
                  pretrained_file: str | Path | None = None, seed: int = 0) -> Backbone:
    """`build_model` and what a run needs to know about the result, in one call."""
    model = build_model(name, num_classes, pretrained=pretrained, pretrained_file=pretrained_file, seed=seed)
    return Backbone(model, feature_dim(model), data_config(model), weights_info(name, pretrained, pretrained_file))


def feature_dim(model: nn.Module) -> int:
    """Width of the features `forward_with_features` returns (2048 for resnet50)."""
    dim = getattr(model, "head_hidden_size", None) or getattr(model, "num_features")
    return int(dim)


def data_config(model: nn.Module) -> dict:
    """mean, std, interpolation, input_size, crop_pct, crop_mode of the model's weights."""
    return timm.data.resolve_data_config({}, model=model)


def weights_info(name: str, pretrained: bool | str | None, pretrained_file: str | Path | None) -> dict:
    """Provenance of the weights `build_model` would load with the same arguments."""
    full = _resolve_name(name, pretrained)
    if pretrained_file is not None:
        path = _check_file(pretrained_file)
        return {"weights": path.name, "weights_source": str(path), "weights_sha256": sha256_file(path)}
    if pretrained is True or isinstance(pretrained, str):
        hub = _hub_name(full)
        return {"weights": hub, "weights_source": f"timm-hub:{hub}", "weights_sha256": None}
    return {"weights": RANDOM_INIT, "weights_source": RANDOM_INIT, "weights_sha256": None}


def weights_problem(name: str, pretrained: bool | str | None, pretrained_file: str | Path | None) -> str | None:
    """Why `build_model` could not get the weights it would load with these arguments
    (checked without loading them: the weights file is missing, or the hub is unreachable
    and nothing is cached), or None. Used by the preflight that names every missing input."""
    try:
        full = _resolve_name(name, pretrained)
        if pretrained_file is not None:
            _check_file(pretrained_file)
            return None
        if not (pretrained is True or isinstance(pretrained, str)):
            return None
        full = _hub_name(full)
    except FGVCError as e:
        return str(e)
    if _hub_reachable() or _cached_hub_file(full) is not None:
        return None
    return f"no pretrained weights for {full}: not in the local cache, and the Hugging Face hub is unreachable (no network?)"
