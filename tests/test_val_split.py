"""The stratified validation split: counts, reproducibility, its use in a run, and bad
fractions caught before any training."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny import TINY

from fgvc.grid.benchmark import run_benchmark
from fgvc.cli import main
from fgvc.config import RunConfig
from fgvc.data.dataset import load_dataset_info, stratified_val_split
from fgvc.errors import FGVCError
from fgvc.runs.write import METRICS_COLUMNS, ROW_COLUMNS
from fgvc.config import RunOptions

SIZES = {0: 6, 1: 10, 2: 3, 3: 7, 4: 2}


def frame(sizes=SIZES) -> pd.DataFrame:
    """A training manifest, classes interleaved and image ids out of order."""
    rows = [(label, f"class_{label}") for label, n in sizes.items() for _ in range(n)]
    rng = np.random.default_rng(7)
    order = rng.permutation(len(rows))
    ids = rng.choice(np.arange(1, 10_000), size=len(rows), replace=False)
    return pd.DataFrame({"image_id": ids, "path": [f"img/{i}.jpg" for i in ids],
                         "label": [rows[i][0] for i in order], "class_name": [rows[i][1] for i in order],
                         "is_train": 1})


def expected_val(n: int, fraction: float) -> int:
    return max(1, math.floor(fraction * n + 0.5))  # half up, at least one


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25, 0.34, 0.5])
def test_every_class_on_both_sides_with_the_specified_counts(fraction):
    train = frame()
    tr, va = stratified_val_split(train, fraction, seed=3)
    assert set(tr.image_id).isdisjoint(va.image_id)
    assert sorted(pd.concat([tr, va]).image_id) == sorted(train.image_id)
    for label, n in SIZES.items():
        assert (va.label == label).sum() == expected_val(n, fraction), (label, n)
        assert (tr.label == label).sum() == n - expected_val(n, fraction)
        assert (tr.label == label).sum() >= 1
    # both parts keep the manifest order
    pos = {i: k for k, i in enumerate(train.image_id)}
    assert list(tr.image_id.map(pos)) == sorted(tr.image_id.map(pos))
    assert list(va.image_id.map(pos)) == sorted(va.image_id.map(pos))


def test_split_reproducible_for_a_val_seed_and_different_for_another():
    train = frame()
    a = stratified_val_split(train, 0.34, seed=0)[1]
    b = stratified_val_split(train.sample(frac=1, random_state=1), 0.34, seed=0)[1]  # row order does not matter
    assert sorted(a.image_id) == sorted(b.image_id)
    others = [set(stratified_val_split(train, 0.34, seed=s)[1].image_id) for s in (1, 2, 3)]
    assert all(o != set(a.image_id) for o in others)
    # a class's split depends on its own images only: dropping another class leaves it unchanged
    without = stratified_val_split(train[train.label != 1], 0.34, seed=0)[1]
    assert sorted(without.image_id) == sorted(a[a.label != 1].image_id)


def test_zero_fraction_is_no_split():
    train = frame()
    tr, va = stratified_val_split(train, 0.0, seed=0)
    assert len(va) == 0 and list(tr.image_id) == list(train.image_id)


@pytest.mark.parametrize("fraction, cls", [(0.75, "class_4"), (0.95, "class_0")])
def test_fraction_that_empties_a_class_names_it(fraction, cls):
    train = frame({0: 6, 4: 2}) if cls == "class_4" else frame({0: 6, 1: 10})
    with pytest.raises(FGVCError) as e:
        stratified_val_split(train, fraction, seed=0)
    msg = str(e.value)
    assert f"val_fraction={fraction:g}" in msg and repr(cls) in msg and "\n" not in msg


def test_config_accepts_fractions_below_one():
    RunConfig(val_fraction=0.2).validate()
    for bad in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(FGVCError, match="invalid value val_fraction"):
            RunConfig(val_fraction=bad).validate()


# --------------------------------------------------------------------------- in a run
@pytest.fixture(scope="module")
def split_runs(sparrow_dataset, tmp_path_factory):
    """CE with a 0.34 split for two seeds, plus one run without a split."""
    out = tmp_path_factory.mktemp("val")
    grid = dict(TINY, seeds=[0, 1], val_fraction=0.34, val_seed=5)
    frame_ = run_benchmark(None, RunOptions(data=sparrow_dataset, out=out, progress=False), grid,
                           echo=lambda m: None)
    plain = run_benchmark(None, RunOptions(data=sparrow_dataset, out=out / "plain", progress=False),
                          dict(TINY, seeds=[0]), echo=lambda m: None)
    return out, frame_, plain


@pytest.mark.slow
def test_run_trains_on_the_train_part_and_scores_the_validation_part(split_runs, sparrow_dataset):
    import torch

    from fgvc.data.per_sample import EvalImages
    from fgvc.data.decode import decode_all
    from fgvc.data.transforms import eval_resize_crop, normalize
    from fgvc.models import build_model, data_config
    from fgvc.engine.loop import evaluate_all

    out, runs, _ = split_runs
    assert (runs.status == "ok").all(), runs.error.tolist()
    assert list(runs.columns[: len(ROW_COLUMNS)]) == ROW_COLUMNS
    info = load_dataset_info(sparrow_dataset)
    train, val = stratified_val_split(info.split(True), 0.34, seed=5)
    assert len(val) == 4 * expected_val(6, 0.34)  # 4 classes x 6 training images in the fixture
    splits = []
    for row in runs.itertuples():
        d = out / "runs" / row.run_id
        split = pd.read_csv(d / "val_split.csv")
        assert list(split.columns) == ["image_id", "split"]
        splits.append(split)
        assert sorted(split[split.split == "val"].image_id) == sorted(val.image_id)
        assert sorted(split[split.split == "train"].image_id) == sorted(train.image_id)
        # features of the training images = the train part only; the test set is the official one
        feats = np.load(d / "features.npz")
        assert sorted(feats["train_ids"]) == sorted(train.image_id)
        assert sorted(feats["test_ids"]) == sorted(info.split(False).image_id)
        metrics = pd.read_csv(d / "metrics.csv")
        assert list(metrics.columns) == METRICS_COLUMNS and metrics.val_top1.notna().all()
        saved = json.loads((d / "row.json").read_text())
        assert saved["val_top1"] == pytest.approx(metrics.val_top1.iloc[-1])
        assert row.val_top1 == pytest.approx(saved["val_top1"])
        # recompute the final validation accuracy from the saved final weights
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        assert cfg["val_fraction"] == 0.34 and cfg["val_seed"] == 5
        model = build_model("test_resnet", info.num_classes, pretrained=False)
        model.load_state_dict(torch.load(d / "checkpoint.pt", weights_only=False)["model"])
        model = model.to(memory_format=torch.channels_last)
        dcfg = data_config(model)
        ds = EvalImages(decode_all(info, val), val.label.to_numpy(), eval_resize_crop(32, 0.875, dcfg["interpolation"]),
                        normalize(dcfg["mean"], dcfg["std"]))
        ev = evaluate_all(model, torch.utils.data.DataLoader(ds, batch_size=64), len(ds), torch.device("cpu"), progress=False)
        assert ev["top1"] == pytest.approx(saved["val_top1"])
    # the split is fixed by val_seed, not by the run's seed
    assert splits[0].equals(splits[1])
    assert sorted(runs.seed) == [0, 1]


@pytest.mark.slow
def test_run_without_split_has_empty_validation_columns(split_runs):
    out, _, plain = split_runs
    (rid,) = plain.run_id
    d = out / "plain" / "runs" / rid
    assert not (d / "val_split.csv").exists()
    metrics = pd.read_csv(d / "metrics.csv")
    assert list(metrics.columns) == METRICS_COLUMNS and metrics.val_top1.isna().all()
    assert json.loads((d / "row.json").read_text())["val_top1"] is None
    assert plain.val_top1.isna().all()


# --------------------------------------------------------------------------- bad input
def test_bad_val_fraction_fails_before_any_training(sparrow_dataset, tmp_path, capsys):
    y = tmp_path / "g.yaml"
    y.write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k != "benchmark"} | {"name": "g", "seeds": [0]}))

    def err(argv, out):
        assert main(argv) == 2
        msg = capsys.readouterr().err.strip()
        assert msg.startswith("error: ") and "\n" not in msg
        assert not out.exists(), "nothing may be written"
        return msg

    for cmd in ("benchmark", "train"):
        out = tmp_path / cmd
        base = [cmd, *([str(y)] if cmd == "benchmark" else ["--config", str(y)]), "--data", str(sparrow_dataset),
                "--out", str(out), "--no-progress"]
        # 6 training images per class: 0.99 leaves none to train on
        msg = err([*base, "--set", "val_fraction=0.99"], out)
        assert "val_fraction=0.99" in msg and "class '" in msg and "smaller val_fraction" in msg
        assert "invalid value val_fraction=1.0" in err([*base, "--set", "val_fraction=1.0"], out)
        assert "invalid value val_fraction=-0.2" in err([*base, "--set", "val_fraction=-0.2"], out)


def test_preflight_checks_every_split_of_a_grid(sparrow_dataset, tmp_path):
    def fail(*a):
        raise AssertionError("training started")

    opts = RunOptions(data=sparrow_dataset, out=tmp_path / "o", progress=False, on_epoch_end=fail)
    with pytest.raises(FGVCError, match=r"val_fraction=0\.95: class '"):
        run_benchmark(None, opts, dict(TINY, seeds=[0], val_fraction=[0.2, 0.95]), echo=lambda m: None)
    # the batch must fit in the train part: 24 training images, 0.5 held out -> 12
    with pytest.raises(FGVCError, match=r"batch_size=16: larger than the training set \(12 images"):
        run_benchmark(None, opts, dict(TINY, seeds=[0], batch_size=16, val_fraction=0.5), echo=lambda m: None)
    assert not (tmp_path / "o").exists()
