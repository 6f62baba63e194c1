"""Identity of inputs: a run folder is reused only for the data and weights it was trained
on, and the loader and data_prep.verify agree on the dataset's checksum (stale dataset.json
detected cheaply)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import fgvc.data.checksum
from data_prep.carve import carve
from data_prep.verify import verify
from fgvc.grid.benchmark import run_benchmark
from fgvc.data.dataset import load_dataset_info
from fgvc.errors import FGVCError
from fgvc.models import build_model
from fgvc.config import RunOptions

TINY = {"model": "test_resnet", "pretrained": False, "epochs": 1, "batch_size": 8, "image_size": 32,
        "seeds": [0], "methods": ["ce", "center"], "lr": 0.01, "benchmark": "inputs"}


def _never(*a):
    raise AssertionError("trained although the inputs differ")


def _run(data, out, grid=None, **kw):
    messages = []
    frame = run_benchmark(None, RunOptions(data=data, out=out, progress=False, **kw), dict(grid or TINY),
                          echo=messages.append)
    return frame, messages


@pytest.fixture(scope="module")
def other_dataset(cub_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("other") / "ds"
    carve(cub_tree, out, classes="sparrows,1")  # one more class: other content, same run ids
    return out


def test_other_dataset_into_the_same_out_is_refused_before_training(sparrow_dataset, other_dataset, tmp_path):
    frame, _ = _run(sparrow_dataset, tmp_path)
    before = (tmp_path / "runs.csv").read_text()
    a = load_dataset_info(sparrow_dataset).content_sha256
    b = load_dataset_info(other_dataset).content_sha256
    with pytest.raises(FGVCError) as e:
        _run(other_dataset, tmp_path, on_epoch_end=_never)
    msg = str(e.value)
    assert "\n" not in msg and "use another --out" in msg and "(and 1 more run(s))" in msg
    assert sorted(frame.run_id)[0] in msg and a[:12] in msg and b[:12] in msg
    assert (tmp_path / "runs.csv").read_text() == before
    # an unfinished run (only its checkpoint) is not resumed on other data either
    grid = dict(TINY, methods=["ce"], epochs=2)
    with pytest.raises(KeyboardInterrupt):
        _run(sparrow_dataset, tmp_path / "cut", grid, on_epoch_end=lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(FGVCError, match="use another --out"):
        _run(other_dataset, tmp_path / "cut", grid, on_epoch_end=_never)
    # the same inputs again: reused as before
    _, messages = _run(sparrow_dataset, tmp_path, on_epoch_end=_never)
    assert "2 done, 0 to do" in messages[0]


def _weights(path, seed):
    torch.manual_seed(seed)
    torch.save(build_model("test_resnet", 3, pretrained=False, seed=seed).state_dict(), path)
    return path


def test_other_weights_into_the_same_out_are_refused(sparrow_dataset, tmp_path):
    grid = dict(TINY, pretrained=True, methods=["ce"])
    w1, w2 = _weights(tmp_path / "w1.pt", 1), _weights(tmp_path / "w2.pt", 2)
    _run(sparrow_dataset, tmp_path / "out", grid, pretrained_file=w1)
    with pytest.raises(FGVCError) as e:
        _run(sparrow_dataset, tmp_path / "out", grid, pretrained_file=w2, on_epoch_end=_never)
    assert "weights sha256" in str(e.value) and "w1.pt" in str(e.value) and "w2.pt" in str(e.value)
    _, messages = _run(sparrow_dataset, tmp_path / "out", grid, pretrained_file=w1, on_epoch_end=_never)
    assert "1 done, 0 to do" in messages[0]


def test_loader_and_verify_agree_on_a_changed_dataset(sparrow_dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(sparrow_dataset, ds)
    recorded = json.loads((ds / "dataset.json").read_text())["content_sha256"]
    assert load_dataset_info(ds).content_sha256 == recorded and load_dataset_info(ds).stale is None
    image = ds / load_dataset_info(ds).manifest.path.iloc[0]
    data = bytearray(image.read_bytes())
    data[-3] ^= 0xFF  # same size; a new mtime
    image.write_bytes(bytes(data))
    info = load_dataset_info(ds)
    summary, problems = verify(ds)
    assert info.content_sha256 == summary["content_sha256"] != recorded
    assert "changed since carving" in info.stale and any("content_sha256" in p for p in problems)
    _, messages = _run(ds, tmp_path / "out", dict(TINY, methods=["ce"]))
    assert any(m.startswith("warning: ") and "changed since carving" in m for m in messages)
    prov = json.loads(next((tmp_path / "out" / "runs").glob("*/provenance.json")).read_text())
    assert prov["dataset_content_sha256"] == summary["content_sha256"]


def test_a_fresh_dataset_is_not_rehashed(sparrow_dataset, tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    shutil.copytree(sparrow_dataset, ds)  # copytree keeps mtimes: the recorded fingerprint holds

    def no_hashing(folder):
        raise AssertionError("every image was read")

    monkeypatch.setattr("fgvc.data.identity.content_sha256", no_hashing)
    assert load_dataset_info(ds).content_sha256 == json.loads((ds / "dataset.json").read_text())["content_sha256"]
    # a copy with new mtimes is hashed once, then remembered by its fingerprint
    monkeypatch.undo()
    for p in (ds / "images").rglob("*.jpg"):
        p.touch()
    assert load_dataset_info(ds).stale is None
    monkeypatch.setattr("fgvc.data.identity.content_sha256", no_hashing)
    assert load_dataset_info(ds).stale is None
    assert fgvc.data.checksum.files_fingerprint(ds) != json.loads((ds / "dataset.json").read_text())["files_fingerprint"]


def test_train_does_not_resume_a_checkpoint_of_other_data(sparrow_dataset, other_dataset, tmp_path, capsys):
    from fgvc.cli import main

    argv = ["train", "--out", str(tmp_path), "--no-progress", "--set", "model=test_resnet", "--set",
            "pretrained=false", "--set", "epochs=1", "--set", "batch_size=8", "--set", "image_size=32"]
    assert main([*argv, "--data", str(sparrow_dataset)]) == 0
    assert main([*argv, "--data", str(other_dataset)]) == 2
    assert "use another --out" in capsys.readouterr().err
    assert main([*argv, "--data", str(other_dataset), "--no-resume"]) == 0  # starting over is allowed
