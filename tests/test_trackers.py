"""`--log tensorboard,mlflow,wandb`: the files each tracker writes, read back offline; the options
parse, a missing package is one line naming the extra, and nothing enters the run id."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
from tiny import TINY, tiny_config

from fgvc.grid.benchmark import run_benchmark
from fgvc.cli import build_parser, main
from fgvc.config import RunConfig
from fgvc.engine import trackers
from fgvc.errors import FGVCError
from fgvc.config import RunOptions


class Stop(KeyboardInterrupt):
    pass


def _stop_after_first(epoch, rec):
    if epoch == 0:
        raise Stop()


@pytest.mark.slow
def test_tensorboard_and_mlflow_read_back_after_a_resume(sparrow_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    grid = dict(TINY, epochs=2, methods=["center"])
    kw = dict(data=sparrow_dataset, out=tmp_path, progress=False, trackers=("tensorboard", "mlflow"))
    with pytest.raises(Stop):  # interrupted after epoch 1, then resumed: both trackers hold epochs 1 and 2 once
        run_benchmark(None, RunOptions(**kw, on_epoch_end=_stop_after_first), grid, echo=lambda m: None)
    frame = run_benchmark(None, RunOptions(**kw), grid, echo=lambda m: None)
    row = frame.iloc[0]
    cfg = RunConfig(**tiny_config(method="center", epochs=2))
    assert row.run_id == cfg.run_id  # the options are not in the run id
    run_dir = tmp_path / "runs" / cfg.run_id
    metrics = pd.read_csv(run_dir / "metrics.csv")

    tb = EventAccumulator(str(run_dir / "tb"))
    tb.Reload()
    loss = tb.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx(metrics.train_loss.tolist(), rel=1e-5)
    assert [e.step for e in tb.Scalars("test/top1")] == [2]  # eval_every 5: tested after the last epoch only
    assert tb.Scalars("final/top1")[0].value == pytest.approx(row.top1, rel=1e-6)
    content = tb.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hp = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hp["method"].string_value == "center" and hp["center_weight"].number_value == pytest.approx(0.001)

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == cfg.run_id
    assert run.data.params == {k: str(v) for k, v in cfg.identity().items()}
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(metrics.train_loss.tolist(), rel=1e-5)
    assert run.data.metrics["top1"] == pytest.approx(row.top1)
    assert run.data.metrics["mean_class_acc"] == pytest.approx(row.mean_class_acc)


def test_log_options_parse_and_stay_out_of_the_config():
    args = build_parser().parse_args(["train", "--log", "tensorboard,mlflow", "--mlflow-uri", "sqlite:///m.db"])
    assert args.trackers == ("tensorboard", "mlflow") and args.mlflow_uri == "sqlite:///m.db"
    assert build_parser().parse_args(["benchmark", "g.yaml", "--log", "mlflow"]).trackers == ("mlflow",)
    assert build_parser().parse_args(["benchmark", "g.yaml"]).trackers == ()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--log", "comet"])
    assert not {"trackers", "mlflow_uri"} & set(RunConfig().identity())


def test_missing_tracker_package_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(FGVCError, match=r"pip install 'fgvc\[mlflow\]'"):
        trackers.check_available(("tensorboard", "mlflow"))
    trackers.check_available(("tensorboard",) if real("tensorboard") else ())
    # before anything is built or trained
    assert main(["train", "--log", "mlflow", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --log mlflow needs mlflow") and "\n" not in err
    assert not (tmp_path / "runs").exists()


def read_wandb_records(path):
    """The records of a W&B run file (`run-<id>.wandb`): LevelDB's log format, 32 KiB blocks of
    (crc32, length, type) chunks after a 7-byte header, each record a wandb_internal Record."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, buf, out = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


@pytest.mark.slow
def test_wandb_offline_run_reads_back(sparrow_dataset, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network here, nor in CI
    monkeypatch.setenv("WANDB_SILENT", "true")
    grid = dict(TINY, epochs=2, methods=["center"])
    row = run_benchmark(None, RunOptions(data=sparrow_dataset, out=tmp_path, progress=False, trackers=("wandb",)),
                        grid, echo=lambda m: None).iloc[0]
    run_dir = tmp_path / "runs" / row.run_id
    metrics = pd.read_csv(run_dir / "metrics.csv")
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = read_wandb_records(run_file)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == row.run_id and run.project == "tiny"
    config = {i.key: json.loads(i.value_json) for i in run.config.update if i.key != "_wandb"}
    assert config["method"] == "center" and config["center_weight"] == pytest.approx(0.001)
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["_step"] for h in history] == [1, 2]
    assert [h["train_loss"] for h in history] == pytest.approx(metrics.train_loss.tolist(), rel=1e-5)
    summary = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
               for r in records if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
    assert summary["final/top1"] == pytest.approx(row.top1)
    exit_record = next(r.exit for r in records if r.WhichOneof("record_type") == "exit")
    assert exit_record.exit_code == 0
