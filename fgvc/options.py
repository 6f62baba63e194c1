"""`RunOptions`: how a run runs (device, workers, pipeline, progress), beside `RunConfig`
(fgvc.config), which says what a run is. Options never change a run's identity or its
results (except `deterministic`, which makes repeated CPU runs identical). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


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
    compile: bool = False  # torch.compile the model (CUDA; pays for long runs only)
    # "fp32", "bf16" (autocast) or "auto": bf16 on CUDA and on CPUs with bf16 instructions, else fp32
    # (fgvc.engine.device.resolve_precision).
    # Recorded in provenance; the report says when a group mixes precisions.
    precision: str = "auto"
    # Experiment trackers (fgvc.engine.trackers): any of "tensorboard" (event files in the run
    # folder's tb/) and "mlflow" (to mlflow_uri; None: a file store OUT/mlruns).
    trackers: tuple[str, ...] = ()
    mlflow_uri: str | None = None
    # Stop after this many epochs without finishing (no row.json; the epoch checkpoint resumes
    # it): a rung of successive halving (fgvc.halving). None: train to cfg.epochs.
    stop_after: int | None = None
    # Called after each epoch with (epoch, record): the benchmark's ETA line, and tests that
    # simulate an interruption.
    on_epoch_end: Callable[[int, dict], None] | None = None


__all__ = ["RunOptions"]
