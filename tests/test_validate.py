"""`fgvc validate` on a tiny run trained by the real runner on the synthetic fixture."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tiny import tiny_config

from fgvc.cli.tools import add_validate_parser
from fgvc.config import RunConfig
from fgvc.errors import FGVCError
from fgvc.runs.write import ROW_COLUMNS
from fgvc.config import RunOptions
from fgvc.train import run
from fgvc.validate import validate

# every test here trains a model or reads one trained by a module fixture
pytestmark = pytest.mark.slow

RUN = tiny_config(method="center", epochs=2, lr=0.05)


@pytest.fixture(scope="module")
def tiny_run(sparrow_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = RunConfig(**RUN)
    run(cfg, RunOptions(data=sparrow_dataset, out=out, progress=False, deterministic=True))
    torch.use_deterministic_algorithms(False)
    return out / "runs" / cfg.run_id


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fgvc")
    add_validate_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _same_outputs(run_dir, val_dir) -> None:
    a, b = pd.read_csv(run_dir / "predictions.csv"), pd.read_csv(val_dir / "predictions.csv")
    assert list(b.columns) == list(a.columns)
    assert np.array_equal(a.image_id, b.image_id) and np.array_equal(a.label, b.label)
    assert np.array_equal(a.pred, b.pred)
    np.testing.assert_allclose(a.prob, b.prob, atol=1e-5)
    pa = np.array([[float(p) for p in s.split(";")] for s in a.top5_probs])
    pb = np.array([[float(p) for p in s.split(";")] for s in b.top5_probs])
    np.testing.assert_allclose(pa, pb, atol=1e-5)
    fa, fb = np.load(run_dir / "features.npz"), np.load(val_dir / "features.npz")
    assert set(fb.files) == set(fa.files)
    for k in fa.files:
        assert fb[k].dtype == fa[k].dtype, k
        if k.endswith("_features"):
            np.testing.assert_allclose(fa[k].astype(np.float32), fb[k].astype(np.float32), rtol=2e-3, atol=2e-3)
        else:
            assert np.array_equal(fa[k], fb[k]), k


def test_validate_run_folder_reproduces_the_run(tiny_run, sparrow_dataset):
    # no --data: the dataset the run was trained on
    args = _parse(["validate", str(tiny_run), "--device", "cpu", "--no-progress"])
    assert args.func(args) == 0
    out = tiny_run / "validate"
    _same_outputs(tiny_run, out)
    # metrics agree with the run's row, recomputed independently from the predictions
    preds = pd.read_csv(out / "predictions.csv")
    metrics = json.loads((out / "metrics.json").read_text())
    own = json.loads((tiny_run / "row.json").read_text())
    assert metrics["top1"] == pytest.approx(100 * (preds.pred == preds.label).mean())
    assert metrics["top1"] == pytest.approx(own["top1"])
    assert own["top1"] > 50  # a trained model (4 classes): agreement is not a chance match
    assert metrics["mean_class_acc"] == pytest.approx(own["mean_class_acc"])
    row = json.loads((out / "row.json").read_text())
    assert set(ROW_COLUMNS) <= set(row) and row["status"] == "ok" and row["method"] == "center"
    assert row["top5"] == pytest.approx(own["top5"])
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["checkpoint_sha256"] and prov["source_run_id"] == own["run_id"]
    assert prov["dataset_content_sha256"] and prov["dataset_content_sha256"] == prov["source_dataset_content_sha256"]
    assert yaml.safe_load((out / "config.yaml").read_text()) == yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert json.loads((out / "classes.json").read_text()) == json.loads((tiny_run / "classes.json").read_text())


def test_bare_checkpoint_into_a_benchmark(tiny_run, sparrow_dataset, tmp_path):
    # a foreign checkpoint: a plain state dict under 'state_dict', with DDP prefixes
    sd = torch.load(tiny_run / "checkpoint.pt", weights_only=True)["model"]
    ckpt = tmp_path / "elsewhere.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, ckpt)
    bench = tmp_path / "bench"
    args = _parse(["validate", str(ckpt), "--data", str(sparrow_dataset), "--model", "test_resnet",
                   "--image-size", "32", "--out", str(bench / "runs" / "foreign"), "--device", "cpu",
                   "--no-progress"])
    assert args.func(args) == 0
    _same_outputs(tiny_run, bench / "runs" / "foreign")
    runs = pd.read_csv(bench / "runs.csv")  # rebuilt: the report sees the new row
    assert runs.run_id.tolist() == ["foreign"] and runs.method.tolist() == ["external"]
    assert yaml.safe_load((bench / "runs" / "foreign" / "config.yaml").read_text())["model"] == "test_resnet"


def test_default_out_for_a_bare_checkpoint(tiny_run, sparrow_dataset, tmp_path, monkeypatch):
    ckpt = tmp_path / "weights.pt"
    torch.save(torch.load(tiny_run / "checkpoint.pt", weights_only=True)["model"], ckpt)
    monkeypatch.chdir(tmp_path)
    out = validate(ckpt, sparrow_dataset, model="test_resnet", image_size=32, device="cpu", progress=False)
    assert out == tmp_path / "results" / "validate" / "weights" or out.resolve() == (tmp_path / "results/validate/weights")
    assert (out.resolve() / "predictions.csv").is_file()


def _fails(match: str, *args, **kw) -> None:
    with pytest.raises(FGVCError, match=match) as e:
        validate(*args, device="cpu", progress=False, **kw)
    assert "\n" not in str(e.value)


def test_bad_input_fails_before_work(tiny_run, sparrow_dataset, cub_tree, tmp_path, monkeypatch):
    # never decode an image when the input is bad
    import fgvc.data.loaders
    from data_prep.carve import carve

    monkeypatch.setattr(fgvc.data.loaders, "decode_all", lambda *a: pytest.fail("decoded images on bad input"))
    two = tmp_path / "two"
    carve(cub_tree, two, classes="1,113")
    _fails(r"trained on 4 classes but dataset .*two has 2", tiny_run, two)
    ckpt = tmp_path / "c.pt"
    torch.save(torch.load(tiny_run / "checkpoint.pt", weights_only=True)["model"], ckpt)
    _fails(r"has 4 classes \(fc.weight \(4, .*\) but dataset .*two has 2", ckpt, two, model="test_resnet")
    other = tmp_path / "other"
    carve(cub_tree, other, classes="1,113,118,125")
    _fails(r"other classes .* label 0 is 'Baird_Sparrow'", tiny_run, other)
    _fails(r"does not match test_efficientnet: .*missing keys", ckpt, sparrow_dataset, model="test_efficientnet")
    _fails(r"--model NAME", ckpt, sparrow_dataset)
    _fails(r"pass --data DIR", ckpt, None, model="test_resnet")
    _fails(r"not found", tmp_path / "nope.pt", sparrow_dataset, model="test_resnet")
    _fails(r"no manifest.csv", tiny_run, tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    _fails(r"cannot read checkpoint", junk, sparrow_dataset, model="test_resnet")
    _fails(r"run folder itself", tiny_run, sparrow_dataset, out=tiny_run)
    with pytest.raises(FGVCError, match="--device"):
        validate(tiny_run, sparrow_dataset, device="tpu", progress=False)
    no_ckpt = tmp_path / "run"
    no_ckpt.mkdir()
    (no_ckpt / "config.yaml").write_text((tiny_run / "config.yaml").read_text())
    _fails(r"has no checkpoint.pt", no_ckpt, sparrow_dataset)
    # an interrupted run's checkpoint (not final) is refused with how to finish it
    (no_ckpt / "checkpoint.pt").write_bytes(b"")
    torch.save(dict(run_id="x", epoch=0, model=torch.load(ckpt, weights_only=True)), no_ckpt / "checkpoint.pt")
    _fails(r"unfinished run", no_ckpt, sparrow_dataset)
