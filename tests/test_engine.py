"""The training engine and benchmark runner on the synthetic fixture (CPU, tiny models)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny import TINY as _TINY

from fgvc.grid.benchmark import run_benchmark
from fgvc.cli import main
from fgvc.runs.write import METRICS_COLUMNS, ROW_COLUMNS
from fgvc.config import RunOptions

# every test here trains a model or reads one trained by a module fixture
pytestmark = pytest.mark.slow

# this file's TINY: both methods, 2 epochs
TINY = dict(_TINY, epochs=2, methods=["ce", "center"])


def opts(data, out, **kw) -> RunOptions:
    return RunOptions(data=data, out=out, progress=False, **kw)


@pytest.fixture(scope="module")
def tiny_grid(sparrow_dataset, tmp_path_factory):
    """One 2-epoch grid of both methods, shared by the artifact tests."""
    out = tmp_path_factory.mktemp("bench")
    frame = run_benchmark(None, opts(sparrow_dataset, out), dict(TINY), echo=lambda m: None)
    return out, frame


def test_grid_writes_every_artifact(tiny_grid, sparrow_dataset):
    out, frame = tiny_grid
    assert list(frame.columns[: len(ROW_COLUMNS)]) == ROW_COLUMNS
    assert sorted(frame.method) == ["ce", "center"]
    assert (frame.status == "ok").all(), frame.error.tolist()
    manifest = pd.read_csv(sparrow_dataset / "manifest.csv")
    test_ids = manifest[manifest.is_train == 0].image_id.to_numpy()
    train_ids = manifest[manifest.is_train == 1].image_id.to_numpy()
    for row in frame.itertuples():
        d = out / "runs" / row.run_id
        for name in ("config.yaml", "metrics.csv", "predictions.csv", "features.npz", "provenance.json",
                     "row.json", "train.log", "classes.json"):
            assert (d / name).is_file(), name
        metrics = pd.read_csv(d / "metrics.csv")
        assert list(metrics.columns) == METRICS_COLUMNS and list(metrics.epoch) == [1, 2]
        preds = pd.read_csv(d / "predictions.csv")
        assert list(preds.columns) == ["image_id", "label", "pred", "prob", "top5", "top5_probs"]
        assert np.array_equal(preds.image_id, test_ids)
        # the reported top-1 is the final epoch's, recomputed from the saved predictions
        assert row.top1 == pytest.approx(100 * (preds.pred == preds.label).mean())
        assert row.top1 == pytest.approx(metrics.test_top1.iloc[-1])
        feats = np.load(d / "features.npz")
        assert set(feats.files) == {"test_features", "test_labels", "test_ids", "train_features", "train_labels", "train_ids"}
        assert feats["test_features"].dtype == np.float16 and feats["test_features"].shape[0] == len(test_ids)
        assert np.array_equal(feats["train_ids"], train_ids)
        prov = json.loads((d / "provenance.json").read_text())
        for key in ("git_commit", "git_dirty", "host", "device", "cpu_id", "cpu_capability", "python", "torch",
                    "torchvision", "timm", "numpy", "scikit_learn", "weights_source", "weights_sha256",
                    "dataset_content_sha256", "started", "finished"):
            assert key in prov, key
        assert prov["dataset_content_sha256"] == json.loads((sparrow_dataset / "dataset.json").read_text())["content_sha256"]
        assert json.loads((d / "row.json").read_text())["run_id"] == row.run_id
        assert yaml.safe_load((d / "config.yaml").read_text())["method"] == row.method
    center = frame[frame.method == "center"].iloc[0]
    assert center.center_weight == 0.001 and center.center_update == "learned"
    # center loss is logged per epoch for the center run, zero for CE
    m = pd.read_csv(out / "runs" / center.run_id / "metrics.csv")
    assert (m.train_center > 0).all()


def test_rerun_skips_finished(tiny_grid, sparrow_dataset):
    out, frame = tiny_grid
    before = (out / "runs.csv").read_text()

    def fail(*a):
        raise AssertionError("a finished run was trained again")

    messages = []
    run_benchmark(None, opts(sparrow_dataset, out, on_epoch_end=fail), dict(TINY), echo=messages.append)
    assert "2 done, 0 to do" in messages[0]
    assert (out / "runs.csv").read_text() == before


@pytest.mark.parametrize("pipeline", ["per-sample", "batched"])
def test_tiny_model_learns(sparrow_dataset, tmp_path, pipeline):
    """The synthetic classes are learnable: a few epochs beat chance clearly, with either data path."""
    grid = dict(TINY, methods=["ce"], epochs=6)
    frame = run_benchmark(None, opts(sparrow_dataset, tmp_path, pipeline=pipeline), grid, echo=lambda m: None)
    assert json.loads((tmp_path / "runs" / frame.run_id.iloc[0] / "provenance.json").read_text())["pipeline"] == pipeline
    chance = 100 / len(json.loads((sparrow_dataset / "dataset.json").read_text())["classes"])
    assert frame.top1.iloc[0] > 1.5 * chance


@pytest.mark.parametrize("pipeline", ["per-sample", "batched"])
def test_resume_equals_uninterrupted(sparrow_dataset, tmp_path, pipeline):
    grid = dict(TINY, methods=["center"], epochs=3)
    whole = tmp_path / "whole"
    run_benchmark(None, opts(sparrow_dataset, whole, deterministic=True, pipeline=pipeline), grid, echo=lambda m: None)

    class Stop(KeyboardInterrupt):
        pass

    def stop_after_first(epoch, rec):
        if epoch == 0:
            raise Stop()

    cut = tmp_path / "cut"
    with pytest.raises(Stop):
        run_benchmark(None, opts(sparrow_dataset, cut, deterministic=True, pipeline=pipeline,
                                 on_epoch_end=stop_after_first), grid, echo=lambda m: None)
    (run_dir,) = (cut / "runs").iterdir()
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "row.json").exists()
    run_benchmark(None, opts(sparrow_dataset, cut, deterministic=True, pipeline=pipeline), grid, echo=lambda m: None)
    a = pd.read_csv(whole / "runs" / run_dir.name / "metrics.csv").drop(columns="seconds")
    b = pd.read_csv(run_dir / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    assert (whole / "runs" / run_dir.name / "predictions.csv").read_text() == (run_dir / "predictions.csv").read_text()
    assert "resuming after epoch 1" in (run_dir / "train.log").read_text()


def test_eval_every_changes_no_final_number_and_not_the_run_id(sparrow_dataset, tmp_path):
    """eval_every only thins the test curve: run id, predictions, features, validation
    curve and the final row are those of a run evaluated every epoch."""
    grid = dict(TINY, methods=["center"], epochs=3, val_fraction=0.25)
    runs = {}
    for k in (1, 0, 2):
        out = tmp_path / f"every{k}"
        frame = run_benchmark(None, opts(sparrow_dataset, out, deterministic=True), dict(grid, eval_every=k),
                              echo=lambda m: None)
        (run_id,) = frame.run_id
        runs[k] = out / "runs" / run_id
    assert len({d.name for d in runs.values()}) == 1
    every = pd.read_csv(runs[1] / "metrics.csv")
    assert every.test_top1.notna().all()
    for k, tested in ((0, [3]), (2, [2, 3])):
        d = runs[k]
        m = pd.read_csv(d / "metrics.csv")
        assert list(m.epoch[m.test_top1.notna()]) == tested
        pd.testing.assert_series_equal(m.val_top1, every.val_top1)
        pd.testing.assert_series_equal(m.train_loss, every.train_loss)
        assert m.test_top1.iloc[-1] == every.test_top1.iloc[-1]
        for name in ("predictions.csv", "config.yaml", "val_split.csv"):
            assert (d / name).read_text() == (runs[1] / name).read_text(), name
        a, b = np.load(d / "features.npz"), np.load(runs[1] / "features.npz")
        assert all(np.array_equal(a[f], b[f]) for f in a.files)
        ra, rb = (json.loads((x / "row.json").read_text()) for x in (d, runs[1]))
        for key in ("top1", "top5", "mean_class_acc", "val_top1"):
            assert ra[key] == rb[key], key
        assert json.loads((d / "provenance.json").read_text())["eval_every"] == k


def test_same_seed_same_batches_and_head(sparrow_dataset, tmp_path):
    """Seed pairing: CE and center runs of one seed start from the same head and see
    the same batches; the first epoch's CE differs only through the center term."""
    grid = dict(TINY, epochs=1, center_weight=1e-12)
    frame = run_benchmark(None, opts(sparrow_dataset, tmp_path, deterministic=True), grid, echo=lambda m: None)
    ce, center = (pd.read_csv(tmp_path / "runs" / r / "metrics.csv") for r in frame.sort_values("method").run_id)
    assert ce.train_ce.iloc[0] == pytest.approx(center.train_ce.iloc[0], rel=1e-5)


def test_nan_run_recorded_failed_grid_continues(sparrow_dataset, tmp_path, capsys):
    grid = dict(TINY, epochs=1, center_weight=1e38)  # lambda * L_C overflows to inf
    frame = run_benchmark(None, opts(sparrow_dataset, tmp_path), grid, echo=print)
    by = frame.set_index("method")
    assert by.loc["ce", "status"] == "ok"
    assert by.loc["center", "status"] == "failed"
    assert "non-finite loss" in by.loc["center", "error"]
    assert "FAILED" in capsys.readouterr().out


def test_cli_benchmark_and_bad_inputs(sparrow_dataset, tmp_path, capsys):
    base = ["benchmark", "--data", str(sparrow_dataset), "--out", str(tmp_path / "o"), "--no-progress"]
    y = tmp_path / "g.yaml"
    y.write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k != "benchmark"} | {"name": "g", "epochs": 1}))

    def err(argv):
        assert main(argv) == 2
        msg = capsys.readouterr().err.strip()
        assert msg.startswith("error: ") and "\n" not in msg
        return msg

    assert "unknown model 'test_resnett'" in err([*base[:1], str(y), *base[1:], "--set", "model=test_resnett"])
    assert "dataset folder not found" in err(["benchmark", str(y), "--data", str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    assert "no manifest.csv" in err(["benchmark", str(y), "--data", str(tmp_path / "empty")])
    assert "unknown key 'epoch'" in err([*base[:1], str(y), *base[1:], "--set", "epoch=3"])
    assert "invalid value lr=-0.1" in err([*base[:1], str(y), *base[1:], "--set", "lr=-0.1"])
    assert "center_weight=0.0" in err([*base[:1], str(y), *base[1:], "--set", "center_weight=0"])
    assert "larger than the training set" in err([*base[:1], str(y), *base[1:], "--set", "batch_size=100000"])
    assert "not found" in err([*base[:1], str(y), *base[1:], "--set", "pretrained=true",
                               "--pretrained-file", str(tmp_path / "missing.safetensors")])
    # nothing was trained by any of those
    assert not (tmp_path / "o" / "runs").exists()
    assert main([*base[:1], str(y), *base[1:]]) == 0
    assert len(pd.read_csv(tmp_path / "o" / "runs.csv")) == 2


def test_train_command_single_run(sparrow_dataset, tmp_path, capsys):
    argv = ["train", "--data", str(sparrow_dataset), "--out", str(tmp_path), "--no-progress",
            "--set", "model=test_resnet", "--set", "pretrained=false", "--set", "epochs=1",
            "--set", "batch_size=8", "--set", "image_size=32", "--set", "method=center"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "top1" in out and ": epoch 1/1 loss " in out  # the epoch line, also under --no-progress
    assert ", center " in out  # the auxiliary term is named by its method, and only by it
    assert main(argv[:-2] + ["--set", "method=feature_norm"]) == 0
    out = capsys.readouterr().out
    assert ", feature_norm " in out and ", center " not in out
    assert main(argv[:-2] + ["--set", "methods=[ce,center]"]) == 2
    assert "runs one configuration" in capsys.readouterr().err


def test_report_visualize_compare_on_runner_output(tiny_grid, tmp_path):
    """The reporting stage reads exactly what the runner wrote."""
    from fgvc.report.report import write_report
    from fgvc.report.visualize import visualize

    out, frame = tiny_grid
    pngs = visualize(out, embeddings=("tsne",))
    assert [p.name for p in pngs] == ["tsne_test_s0.png"] and pngs[0].stat().st_size < 1_000_000
    report = write_report(out).read_text()
    summary = pd.read_csv(out / "summary.csv")
    for row in frame.itertuples():
        s = summary[summary.method == row.method].iloc[0]
        assert s.n == 1 and s.top1_mean == pytest.approx(row.top1, abs=1e-3)
    assert "test_resnet" in report and "tsne_test_s0.png" in report
    assert main(["compare", str(out / "runs.csv"), str(out / "runs.csv"), "--out", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").is_file()
