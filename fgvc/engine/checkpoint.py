"""The one checkpoint format of a run folder (`checkpoint.pt`, git-ignored).

After every epoch: model, optimizer, auxiliary loss and its optimizer, RNG states, the
metrics history and the start time, so a rerun resumes exactly after the last completed
epoch. After the last epoch it is replaced by the final model alone (`final: True`), which
`fgvc validate` reads (with weights_only=True: a run folder may come from elsewhere). A bare
state-dict file (a model trained elsewhere) is read by `fgvc.models.read_state_dict`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fgvc.engine.loop import AuxTerm
from fgvc.errors import FGVCError
from fgvc.io import atomic_path
from fgvc.models import is_state_dict

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_epoch(path: Path, run_id: str, epoch: int, model, optimizer, aux: AuxTerm | None, history: list[dict],
               started: str) -> None:
    """Everything needed to resume after `epoch` (0-based), written atomically."""
    with atomic_path(path) as tmp:
        torch.save(dict(run_id=run_id, epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict(),
                        center=aux.module.state_dict() if aux is not None else None,
                        center_optimizer=aux.optimizer.state_dict() if aux is not None and aux.optimizer else None,
                        rng=rng_state(), history=history, started=started), tmp)


def load_resume(path: Path, run_id: str, device: torch.device) -> dict | None:
    """The epoch checkpoint of an unfinished run `run_id`, or None (absent, final, another run)."""
    if not path.is_file():
        return None
    ck = torch.load(path, map_location=device, weights_only=False)
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
        torch.save(dict(run_id=run_id, epoch=last_epoch, final=True, model=model.state_dict(),
                        center=aux.module.state_dict() if aux is not None else None), tmp)


def load_final(path: Path) -> tuple[dict[str, Tensor], dict]:
    """(model state dict, {run_id, epoch}) of a finished run's checkpoint."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # an interrupted run's checkpoint holds RNG state weights_only refuses
        raise FGVCError(f"cannot read {path} as a final fgvc checkpoint ({type(e).__name__}); if the run was "
                        "interrupted, finish it first (rerun the same benchmark/train command to resume)") from None
    if not (isinstance(ck, dict) and is_state_dict(ck.get("model"))):
        raise FGVCError(f"{path} is not an fgvc checkpoint (no 'model' state dict); pass it as a bare "
                        "checkpoint file with --model NAME instead")
    if not ck.get("final"):
        raise FGVCError(f"{path} is the checkpoint of an unfinished run (epoch {ck.get('epoch', '?')}): "
                        "finish it first (rerun the same benchmark/train command to resume)")
    return ck["model"], dict(run_id=ck.get("run_id"), epoch=ck.get("epoch"))


__all__ = ["CHECKPOINT", "save_epoch", "load_resume", "restore", "save_final", "load_final", "rng_state",
           "set_rng_state"]
