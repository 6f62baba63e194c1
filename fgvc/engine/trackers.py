"""Optional experiment trackers for a run: `--log tensorboard`, `--log mlflow`, `--log wandb`,
or several (`--log tensorboard,wandb`).

Each logs the same three things: the config (`cfg.identity()`) as hyper-parameters when
the run starts, every epoch's metrics (the columns of metrics.csv), and the final metrics
(the run's row: top1, top5, mean_class_acc, ...) when it finishes.

- TensorBoard: event files in the run folder's `tb/` (`tensorboard --logdir OUT/runs`),
  tags `train/loss`, `train/ce`, `test/top1`, ..., `final/top1`, and the HParams plugin's
  hyper-parameters.
- MLflow: `RunOptions.mlflow_uri` (default: a file store `OUT/mlruns`), one experiment per
  benchmark name, one MLflow run per fgvc run (named by run id, tag `fgvc.run_id`), metric
  keys as in metrics.csv and runs.csv.
- Weights & Biases: one W&B run per fgvc run in the project named by the benchmark (display
  name the run id), files under the run folder's `wandb/`; online when an API key is set up
  (`wandb login` or WANDB_API_KEY), otherwise offline (`wandb sync OUT/runs/*/wandb/offline-run-*`
  uploads it later); WANDB_MODE overrides. Epoch metrics as in metrics.csv, final ones in the
  run summary as `final/<key>`.

A resumed run logs its restored epochs again where the tracker lacks them: TensorBoard's
`tb/` is rewritten from the run's history, an unfinished MLflow run of the same run id is
continued from its last logged epoch. Options never enter the run id, and nothing here
changes a run's results. The packages are optional extras (`pip install 'fgvc[tensorboard]'`,
`'fgvc[mlflow]'`, `'fgvc[wandb]'`), imported only when asked for; `check_available` says which is missing
before any training. Only the main process (rank 0 under torchrun) logs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from fgvc.errors import FGVCError

TRACKERS = ("tensorboard", "mlflow", "wandb")
PACKAGE = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # tracker -> importable package
# per-epoch metrics (metrics.csv columns but `epoch`, which is the step) and final ones (runs.csv)
EPOCH_KEYS = ("train_loss", "train_ce", "train_center", "train_top1", "test_top1", "test_top5",
              "val_top1", "val_top5", "lr", "seconds")
FINAL_KEYS = ("top1", "top5", "mean_class_acc", "best_epoch_top1", "val_top1", "train_seconds",
              "images_per_second")


def parse_trackers(text: str) -> tuple[str, ...]:
    """`tensorboard,mlflow` -> ("tensorboard", "mlflow"); an unknown name is an FGVCError."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in str(text).split(",") if n.strip()))
    for name in names:
        if name not in TRACKERS:
            raise FGVCError(f"unknown --log {name!r}: use {', '.join(TRACKERS)}, or several joined by commas")
    return names


def check_available(names) -> None:
    """Raise one FGVCError naming every requested tracker whose package is not installed."""
    missing = [n for n in names if importlib.util.find_spec(PACKAGE[n]) is None]
    if missing:
        extras = ",".join(missing)
        raise FGVCError(f"--log {','.join(names)} needs {' and '.join(PACKAGE[n] for n in missing)}, not installed: "
                        f"pip install 'fgvc[{extras}]' (or make setup)")


def default_mlflow_uri(out: Path) -> str:
    return (Path(out) / "mlruns").resolve().as_uri()


def _scalars(values: dict, keys) -> dict[str, float]:
    return {k: float(values[k]) for k in keys if values.get(k) is not None}


def _hparams(cfg) -> dict:
    """cfg.identity() with values TensorBoard and MLflow both take (None and lists as text)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in cfg.identity().items()}


class TensorBoardTracker:
    def __init__(self, cfg, run_dir: Path, history: list[dict]):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        tb = Path(run_dir) / "tb"
        shutil.rmtree(tb, ignore_errors=True)  # rewritten from the run's history: no stale or doubled steps
        self.writer = SummaryWriter(log_dir=str(tb))
        self.epochs = cfg.epochs
        exp, ssi, self._end = hparams(_hparams(cfg), {f"final/{k}": 0.0 for k in FINAL_KEYS})
        for summary in (exp, ssi):
            self.writer._get_file_writer().add_summary(summary)
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in cfg.identity().items()), 0)
        for rec in history:
            self.log_epoch(rec)

    def log_epoch(self, rec: dict) -> None:
        for key, value in _scalars(rec, EPOCH_KEYS).items():
            self.writer.add_scalar(key.replace("_", "/", 1), value, rec["epoch"])
        self.writer.flush()

    def finish(self, row: dict) -> None:
        for key, value in _scalars(row, FINAL_KEYS).items():
            self.writer.add_scalar(f"final/{key}", value, self.epochs)
        self.writer._get_file_writer().add_summary(self._end)

    def close(self, status: str) -> None:
        self.writer.close()


class MLflowTracker:
    def __init__(self, cfg, uri: str, history: list[dict]):
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 refuses its file store unless asked: fgvc's default is one (no server, no database).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self.client, self.epochs, self._metric = MlflowClient(tracking_uri=uri), cfg.epochs, Metric
        experiment = self._experiment(cfg.benchmark)
        self.run_id, logged = self._continue(experiment, cfg.run_id, bool(history))
        if self.run_id is None:
            self.run_id = self.client.create_run(experiment, run_name=cfg.run_id, tags={"fgvc.run_id": cfg.run_id}).info.run_id
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in _hparams(cfg).items()])
        for rec in history:
            if rec["epoch"] > logged:
                self.log_epoch(rec)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # created meanwhile by another --jobs process
            return self.client.get_experiment_by_name(name).experiment_id

    def _continue(self, experiment: str, run_id: str, resumed: bool) -> tuple[str | None, int]:
        """(MLflow run id, last logged epoch) of this run's unfinished MLflow run, when resuming."""
        if not resumed:
            return None, 0
        runs = self.client.search_runs([experiment], f"tags.`fgvc.run_id` = '{run_id}'",
                                       order_by=["attributes.start_time DESC"], max_results=5)
        for r in runs:
            if r.info.status != "FINISHED":
                self.client.update_run(r.info.run_id, status="RUNNING")
                steps = [m.step for m in self.client.get_metric_history(r.info.run_id, "train_loss")]
                return r.info.run_id, max(steps, default=0)
        return None, 0

    def _log(self, values: dict[str, float], step: int) -> None:
        import time

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self._metric(k, v, stamp, step) for k, v in values.items()])

    def log_epoch(self, rec: dict) -> None:
        self._log(_scalars(rec, EPOCH_KEYS), rec["epoch"])

    def finish(self, row: dict) -> None:
        self._log(_scalars(row, FINAL_KEYS), self.epochs)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


class WandbTracker:
    def __init__(self, cfg, run_dir: Path, history: list[dict]):
        import re

        import wandb

        self.epochs = cfg.epochs
        self.run = wandb.init(project=cfg.benchmark or "fgvc", name=cfg.run_id, dir=str(run_dir), resume="allow",
                              id=re.sub(r"[^A-Za-z0-9_-]", "-", cfg.run_id)[-64:], config=_hparams(cfg),
                              mode=os.environ.get("WANDB_MODE") or ("online" if _wandb_key() else "offline"),
                              settings=wandb.Settings(silent=True))
        for rec in history:  # a resumed run: its restored epochs again (W&B keeps the highest steps)
            self.log_epoch(rec)

    def log_epoch(self, rec: dict) -> None:
        self.run.log(_scalars(rec, EPOCH_KEYS), step=int(rec["epoch"]))

    def finish(self, row: dict) -> None:
        self.run.summary.update({f"final/{k}": v for k, v in _scalars(row, FINAL_KEYS).items()})

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


def _wandb_key() -> bool:
    """Whether W&B has an API key here (env or `wandb login`'s netrc): online, else offline."""
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())


class Trackers:
    """The trackers of one run, as a context manager: `log_epoch(rec)` after each epoch,
    `finish(row)` at the end; leaving the block closes them (MLflow status FINISHED, or
    FAILED / KILLED when an error or Ctrl-C ends the run)."""

    def __init__(self, trackers: list):
        self.trackers = trackers

    def log_epoch(self, rec: dict) -> None:
        for t in self.trackers:
            t.log_epoch(rec)

    def finish(self, row: dict) -> None:
        for t in self.trackers:
            t.finish(row)

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, kind, error, tb) -> None:
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        for t in self.trackers:
            t.close(status)


def open_trackers(opts, cfg, run_dir: Path, history: list[dict], main: bool = True) -> Trackers:
    """The trackers `opts.trackers` names (none off the main process), started for `cfg`,
    with the epochs already in `history` (a resumed run) logged."""
    names = tuple(getattr(opts, "trackers", ()) or ()) if main else ()
    check_available(names)
    started = []
    if "tensorboard" in names:
        started.append(TensorBoardTracker(cfg, run_dir, history))
    if "mlflow" in names:
        started.append(MLflowTracker(cfg, opts.mlflow_uri or default_mlflow_uri(opts.out), history))
    if "wandb" in names:
        started.append(WandbTracker(cfg, run_dir, history))
    return Trackers(started)


__all__ = ["TRACKERS", "parse_trackers", "check_available", "default_mlflow_uri", "open_trackers", "Trackers",
           "TensorBoardTracker", "MLflowTracker", "WandbTracker", "EPOCH_KEYS", "FINAL_KEYS"]
