"""The one checkpoint format of a run folder (`checkpoint.pt`, git-ignored).

After every epoch: model, optimizer, auxiliary loss and its optimizer, RNG states, the
metrics history and the start time, so a rerun resumes exactly after the last completed
epoch. After the last epoch it is replaced by the final model alone (`final: True`), which
`fgvc validate` reads. A bare state-dict file (a model trained elsewhere) is read by
`fgvc.models.read_state_dict`.

Every checkpoint is read with weights_only=True (a run folder may come from elsewhere):
the format holds only tensors, numbers, strings, lists and dicts; the numpy and Python RNG
states are stored as a tensor and lists. Checkpoints written before that hold numpy's state
as an array, so reading them allows exactly the numpy globals that array needs
(`LEGACY_NUMPY`), nothing else. A resume checkpoint that cannot be read is moved aside
(`checkpoint.pt.unreadable-<time>`, never deleted) and the run starts over.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fgvc.engine.loop import AuxTerm
from fgvc.errors import FGVCError
from fgvc.io import atomic_path, free_mb, set_aside
from fgvc.models import is_state_dict
from fgvc.runs.health import CHECKPOINT  # the file's name, known to the torch-free health check too


# What a checkpoint from before the RNG states were stored as tensors and lists needs.
LEGACY_NUMPY = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
RESUME_KEYS = ("run_id", "epoch", "model", "optimizer", "rng", "history")


def rng_state() -> dict:
    """The global RNG states in weights_only-loadable types (tensors, lists, numbers)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return dict(torch=torch.get_rng_state(),
                numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                           has_gauss=int(has_gauss), cached_gaussian=float(cached)),
                python=[version, list(internal), gauss],
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    if isinstance(npy, dict):
        np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                             npy["cached_gaussian"]))
    else:  # legacy: numpy's own tuple
        np.random.set_state(npy)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value):
    """Python numbers for numpy scalars (weights_only reads no numpy), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _save(obj: dict, tmp: Path) -> None:
    """torch.save; a full disk as OSError(ENOSPC), which torch reports only as a RuntimeError
    ("file write failed"): where the file system has less room than the tensors need."""
    try:
        torch.save(obj, tmp)
    except RuntimeError as e:
        free = free_mb(tmp.parent)
        if 0 <= free * 2**20 < _tensor_bytes(obj):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from e
        raise


def save_epoch(path: Path, run_id: str, epoch: int, model, optimizer, aux: AuxTerm | None, history: list[dict],
               started: str) -> None:
    """Everything needed to resume after `epoch` (0-based), written atomically."""
    with atomic_path(path) as tmp:
        _save(dict(run_id=run_id, epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict(),
                   center=aux.module.state_dict() if aux is not None else None,
                   center_optimizer=aux.optimizer.state_dict() if aux is not None and aux.optimizer else None,
                   rng=rng_state(), history=_plain(history), started=started), tmp)


def read_checkpoint(path: Path, device: torch.device | str = "cpu", mmap: bool = False) -> dict:
    """torch.load with weights_only=True (plus the numpy globals of legacy RNG states)."""
    with torch.serialization.safe_globals(LEGACY_NUMPY):
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)


def _read_or_set_aside(path: Path, run_id: str, device, mmap: bool) -> tuple[dict | None, str | None]:
    """(checkpoint, None), or (None, message) after moving an unreadable one aside."""
    try:
        ck = read_checkpoint(path, device, mmap=mmap)
        missing = [k for k in RESUME_KEYS if k not in ck] if isinstance(ck, dict) else ["a dict"]
        if missing and not (isinstance(ck, dict) and ck.get("final")):
            raise ValueError(f"not an fgvc checkpoint (lacks {', '.join(missing)})")
        return ck, None
    except Exception as e:  # torch raises many types for truncated, empty or foreign files
        text = str(e).strip()
        reason = f"{type(e).__name__}: {text.splitlines()[0][:200] if text else 'no details'}"
        try:
            where = f"moved it to {set_aside(path, 'unreadable').name}"
        except FileNotFoundError:  # another process of the run (DDP) moved it first
            where = "another process moved it aside"
        return None, f"{run_id}: cannot read its checkpoint {path} ({reason}); {where} and starting the run over"


def set_aside_unreadable(path: Path, run_id: str) -> str | None:
    """Move `path` aside if it cannot be read (a quick memory-mapped read); the message, or None."""
    if not path.is_file():
        return None
    return _read_or_set_aside(path, run_id, "cpu", mmap=True)[1]


def load_resume(path: Path, run_id: str, device: torch.device, note=None) -> dict | None:
    """The epoch checkpoint of an unfinished run `run_id`, or None (absent, final, another
    run, or unreadable: then it is moved aside and `note` says so)."""
    if not path.is_file():
        return None
    ck, problem = _read_or_set_aside(path, run_id, device, mmap=False)
    if problem is not None:
        if note is not None:
            note(problem)
        return None
    return ck if ck.get("run_id") == run_id and not ck.get("final") else None


def restore(ck: dict, model, optimizer, aux: AuxTerm | None) -> tuple[int, list[dict]]:
    """Load a `load_resume` checkpoint into the run's parts and the global RNGs; returns
    (first epoch to train, history so far). The model must be loaded first (`ck['model']`)."""
    optimizer.load_state_dict(ck["optimizer"])
    if aux is not None:
        aux.module.load_state_dict(ck["center"])
        if aux.optimizer is not None:
            aux.optimizer.load_state_dict(ck["center_optimizer"])
    set_rng_state(ck["rng"])
    return ck["epoch"] + 1, ck["history"]


def save_final(path: Path, run_id: str, last_epoch: int, model, aux: AuxTerm | None) -> None:
    """Only the final weights (for later evaluation); optimizer state is no longer needed."""
    with atomic_path(path) as tmp:
        _save(dict(run_id=run_id, epoch=last_epoch, final=True, model=model.state_dict(),
                   center=aux.module.state_dict() if aux is not None else None), tmp)


def load_final(path: Path) -> tuple[dict[str, Tensor], dict]:
    """(model state dict, {run_id, epoch}) of a finished run's checkpoint."""
    try:
        ck = read_checkpoint(path)
    except Exception as e:  # truncated, empty or foreign files
        raise FGVCError(f"cannot read {path} as an fgvc checkpoint ({type(e).__name__}); if the run was "
                        "interrupted, finish it first (rerun the same benchmark/train command to resume)") from None
    if not (isinstance(ck, dict) and is_state_dict(ck.get("model"))):
        raise FGVCError(f"{path} is not an fgvc checkpoint (no 'model' state dict); pass it as a bare "
                        "checkpoint file with --model NAME instead")
    if not ck.get("final"):
        raise FGVCError(f"{path} is the checkpoint of an unfinished run (epoch {ck.get('epoch', '?')}): "
                        "finish it first (rerun the same benchmark/train command to resume)")
    return ck["model"], dict(run_id=ck.get("run_id"), epoch=ck.get("epoch"))


def finalize(path: Path, last_epoch: int) -> bool:
    """Turn the epoch checkpoint after `last_epoch` into the final one (what save_final would
    have written); False when `path` holds another epoch."""
    ck = read_checkpoint(path)
    if ck.get("final") or ck.get("epoch") != last_epoch or "model" not in ck:
        return False
    with atomic_path(path) as tmp:
        _save(dict(run_id=ck.get("run_id"), epoch=last_epoch, final=True, model=ck["model"],
                   center=ck.get("center")), tmp)
    return True


def is_final(path: Path) -> bool | None:
    """Does `path` hold a final checkpoint? None when absent or unreadable. Cheap: the
    tensors are memory-mapped, not read."""
    if not path.is_file():
        return None
    try:
        ck = read_checkpoint(path, mmap=True)
    except Exception:
        return None
    return bool(isinstance(ck, dict) and ck.get("final"))


__all__ = ["CHECKPOINT", "LEGACY_NUMPY", "save_epoch", "load_resume", "read_checkpoint", "finalize", "is_final", "set_aside_unreadable", "restore", "save_final", "load_final", "rng_state",
           "set_rng_state"]
