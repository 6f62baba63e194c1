"""Preflight: everything a run will read is checked before any training, with one-line errors."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
import yaml
from PIL import Image

from fgvc.grid.benchmark import run_benchmark
from fgvc.cli import main
from fgvc.config import load_grid, parse_overrides
from fgvc.errors import FGVCError
from fgvc.config import RunOptions

TINY = {"model": "test_resnet", "pretrained": False, "epochs": 1, "batch_size": 8, "image_size": 32,
        "seeds": [0], "methods": ["ce"], "lr": 0.01, "benchmark": "preflight"}


def _never(*a):
    raise AssertionError("trained although the input is bad")


def _bench(data, out, grid=None):
    return run_benchmark(None, RunOptions(data=data, out=out, progress=False, on_epoch_end=_never),
                         dict(grid or TINY), echo=lambda m: None)


@pytest.fixture
def dataset(sparrow_dataset, tmp_path):
    """A copy of the synthetic dataset to damage."""
    ds = tmp_path / "ds"
    shutil.copytree(sparrow_dataset, ds)
    return ds


def _edit_manifest(ds, edit) -> None:
    m = pd.read_csv(ds / "manifest.csv", dtype=str, keep_default_na=False)
    edited = edit(m)
    (m if edited is None else edited).to_csv(ds / "manifest.csv", index=False)


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.__setitem__("label", m.label.where(m.index != 3, "abc")), "row 5: label 'abc' is not an integer"),
    (lambda m: m.__setitem__("label", m.label.where(m.index != 0, "")), "row 2: label '' is not an integer"),
    (lambda m: m.iloc[:0], "lists no images (only a header)"),
    (lambda m: m.__setitem__("image_id", m.image_id.where(m.index != 4, m.image_id[3])), "row 6: image_id"),
    (lambda m: m.__setitem__("is_train", m.is_train.where(m.index != 2, "2")), "row 4: is_train 2 is not 0 or 1"),
    (lambda m: m.__setitem__("label", m.label.where(m.index != 1, "7")), "labels must be in 0..3"),
], ids=["label-text", "label-empty", "header-only", "duplicate-image_id", "is_train-2", "label-range"])
def test_bad_manifest_is_refused_before_training(dataset, tmp_path, edit, expected):
    _edit_manifest(dataset, edit)
    with pytest.raises(FGVCError) as e:
        _bench(dataset, tmp_path / "out")
    assert expected in str(e.value) and "manifest.csv" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out" / "runs").exists()


def _first_image(ds):
    return ds / pd.read_csv(ds / "manifest.csv").path.iloc[0]


@pytest.mark.parametrize("damage, expected", [
    (lambda p: p.unlink(), "is listed in manifest.csv but missing"),
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "does not decode"),
    (lambda p: Image.new("RGB", (4, 5)).save(p, format="JPEG"), "is 4x5 pixels, smaller than 8 on a side"),
], ids=["missing", "truncated", "tiny"])
def test_bad_images_are_found_before_any_run(dataset, tmp_path, damage, expected):
    image = _first_image(dataset)
    damage(image)
    with pytest.raises(FGVCError) as e:
        _bench(dataset, tmp_path / "out")
    assert str(image) in str(e.value) and expected in str(e.value) and "data_prep.verify" in str(e.value)
    assert not list((tmp_path / "out").glob("runs/*"))


def test_checked_images_are_not_decoded_again(dataset, monkeypatch):
    from fgvc.data import check

    paths = pd.read_csv(dataset / "manifest.csv").path
    assert check.image_problems(dataset, paths, "f" * 64) == []  # all sound: remembered for this checksum
    monkeypatch.setattr(check, "image_problem", lambda p: pytest.fail("decoded again"))
    assert check.image_problems(dataset, paths, "f" * 64) == []


def test_unwritable_output_folder_is_refused_before_training(sparrow_dataset, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(FGVCError, match=r"output folder .*file/out is not writable .*choose another --out"):
        _bench(sparrow_dataset, blocker / "out")
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:
        out.chmod(0o500)
    else:  # root writes anywhere: make the write itself fail as it does on a read-only folder
        import tempfile

        def refuse(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    try:
        with pytest.raises(FGVCError, match="is not writable .*Permission denied"):
            _bench(sparrow_dataset, out)
    finally:
        out.chmod(0o700)


def test_yaml_exponent_floats_are_floats(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("lr: 1e-4\nweight_decay: [5e-4, 1E-3]\ncenter_weight: -1.5e+2\n")
    grid = load_grid(path, parse_overrides(["center_lr=2e-1"]))
    assert grid["lr"] == [1e-4] and grid["weight_decay"] == [5e-4, 1e-3] and grid["center_lr"] == [0.2]
    assert grid["center_weight"] == [-150.0]
    with pytest.raises(FGVCError, match="expected float, got str"):
        load_grid(None, parse_overrides(["lr=1e-4x"]))
    assert yaml.safe_load("1e-4") == "1e-4"  # why: YAML 1.1 wants a dot in exponent floats


def test_image_size_below_the_minimum_is_a_one_line_error(sparrow_dataset, tmp_path, capsys):
    argv = ["benchmark", "--data", str(sparrow_dataset), "--out", str(tmp_path), "--no-progress",
            "--set", "model=test_resnet", "--set", "pretrained=false", "--set", "image_size=1"]
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"epochs": 1, "methods": ["ce"], "seeds": [0]}))
    assert main([argv[0], str(path), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: invalid value image_size=1: must be >= 16 (pixels of the square input)"
    # fp32: under bf16 this random-init net, whose last BatchNorm sees 1x1 maps of 8 images, diverges
    assert main([argv[0], str(path), *argv[1:-1], "image_size=16", "--set", "lr=1e-2", "--set", "batch_size=8",
                 "--precision", "fp32"]) == 0
