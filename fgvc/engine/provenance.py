"""Where a result came from: the code (git commit), the environment (versions, host,
device), and for a run its weights and data. One implementation for train, validate and
speed, so their provenance files carry the same keys."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from fgvc import __version__
from fgvc.data.dataset import DatasetInfo
from fgvc.engine.device import cpu_identity, describe_device

REPO_ROOT = Path(__file__).resolve().parents[2]


def now() -> str:
    """UTC time as provenance records it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state() -> tuple[str, bool | None]:
    """(commit, dirty) of the code that runs; FGVC_GIT_COMMIT stands in without .git."""
    env = os.environ.get("FGVC_GIT_COMMIT")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True, timeout=10, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return env or "unknown", None


def environment(device: torch.device, code: tuple[str, bool | None] | None = None) -> dict:
    """Code, host, device and library versions; `code` is the `git_state()` taken when the work
    began (default: now), so a commit made while a long measurement runs is not credited with it."""
    import sklearn
    import timm
    import torchvision

    commit, dirty = code or git_state()
    return dict(git_commit=commit, git_dirty=dirty, fgvc_version=__version__, host=platform.node(),
                device=describe_device(device), **cpu_identity(), python=sys.version.split()[0],
                torch=torch.__version__, torchvision=torchvision.__version__, timm=timm.__version__,
                numpy=np.__version__, scikit_learn=sklearn.__version__)


def dataset_provenance(info: DatasetInfo) -> dict:
    return dict(dataset=str(info.root), dataset_source=info.meta.get("source"),
                dataset_content_sha256=info.content_sha256)


def provenance(model: str, info: DatasetInfo, device: torch.device, winfo: dict, deterministic: bool) -> dict:
    """A run's provenance.json at its start (`finished` is filled in at the end)."""
    return dict(**environment(device), model=model, **winfo, **dataset_provenance(info),
                deterministic=deterministic, started=now(), finished=None)


def measurement_provenance(model: str, winfo: dict, info: DatasetInfo, device: torch.device, command: dict,
                           code: tuple[str, bool | None] | None = None) -> dict:
    """A measurement's provenance (`fgvc speed`): a run's environment, weights and data, plus
    the machine's size and the command that measured (`code`: see `environment`)."""
    return dict(**environment(device, code), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                model=model, **winfo, **dataset_provenance(info), command=command, measured=now())


__all__ = ["git_state", "environment", "dataset_provenance", "provenance", "measurement_provenance", "now",
           "REPO_ROOT"]
