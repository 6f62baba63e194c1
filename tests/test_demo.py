"""`fgvc demo` on the bundled 8x8 digits, end to end with few epochs.

The bounds below were checked over seeds 0-4 at 8 epochs (test accuracy 50-93% for CE,
50-67% for center loss; compactness ratio center/CE 0.29-0.42), so they hold with margin.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch

from fgvc.cli.tools import add_demo_parser
from fgvc.demo import CSV_COLUMNS, LeNetPP, squared_compactness, demo, load_data
from fgvc.errors import FGVCError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fgvc")
    add_demo_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _ratio(f: np.ndarray, y: np.ndarray) -> float:
    """Independent intra/inter computation: pairwise, via the identity
    mean_{i,j in k} ||x_i - x_j||^2 = 2 * mean_i ||x_i - mu_k||^2."""
    intra = []
    for k in np.unique(y):
        x = f[y == k].astype(np.float64)
        intra.append(((x[:, None] - x[None]) ** 2).sum(-1).mean() / 2)
    mus = np.stack([f[y == k].mean(0) for k in np.unique(y)]).astype(np.float64)
    inter = [((mus[a] - mus[b]) ** 2).sum() for a in range(len(mus)) for b in range(a + 1, len(mus))]
    return float(np.mean(intra) / np.mean(inter))


@pytest.mark.slow
def test_digits_demo_end_to_end(tmp_path):
    res = demo(tmp_path / "demo", epochs=8, seed=0)
    png, csv = tmp_path / "demo" / "demo_features.png", tmp_path / "demo" / "demo_accuracy.csv"
    assert res["png"] == png and res["csv"] == csv
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < png.stat().st_size < 1_000_000
    frame = pd.read_csv(csv)
    assert list(frame.columns) == CSV_COLUMNS
    assert frame.method.tolist() == ["ce", "center"] and frame["lambda"].tolist() == [0.0, 0.1]
    assert (frame.epochs == 8).all() and (frame.seed == 0).all() and (frame.dataset == "digits").all()
    # well above chance (10%) on 360 held-out digits
    assert (frame.test_acc > 30).all() and (frame.train_acc > 30).all(), frame
    ce, center = res["results"]["ce"], res["results"]["center"]
    # the stratified split: 1437 / 360, every digit on both sides
    assert len(ce["train_labels"]) == 1437 and len(ce["test_labels"]) == 360
    assert set(np.unique(ce["test_labels"])) == set(range(10))
    assert ce["train_features"].shape == (1437, 2) and center["centers"].shape == (10, 2)
    # the CSV's accuracies, recounted from the trained models on the same split
    _, _, xte, yte = load_data("digits", tmp_path)
    assert np.array_equal(yte.numpy(), ce["test_labels"])
    with torch.no_grad():
        recount = [100 * (r["model"].eval()(xte)[0].argmax(1) == yte).float().mean().item() for r in (ce, center)]
        feats = ce["model"](xte)[1].numpy()
    assert frame.test_acc.tolist() == pytest.approx(recount, abs=0.01)
    np.testing.assert_allclose(feats, ce["test_features"], rtol=1e-5, atol=1e-5)
    # center loss makes the 2-D test features more compact relative to their separation
    r_ce = _ratio(ce["test_features"], ce["test_labels"])
    r_center = _ratio(center["test_features"], center["test_labels"])
    assert squared_compactness(ce["test_features"], ce["test_labels"]) == pytest.approx(r_ce, rel=1e-4)
    assert frame.compactness.tolist() == pytest.approx([r_ce, r_center], rel=1e-3, abs=1e-5)
    assert r_center < 0.7 * r_ce, (r_center, r_ce)


@pytest.mark.slow
def test_same_seed_same_csv_and_figure(tmp_path):
    args = _parse(["demo", "--out", str(tmp_path / "a"), "--epochs", "1", "--seed", "3"])
    assert args.func(args) == 0
    demo(tmp_path / "b", epochs=1, seed=3)
    for name in ("demo_accuracy.csv", "demo_features.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    demo(tmp_path / "c", epochs=1, seed=4)
    assert (tmp_path / "c" / "demo_accuracy.csv").read_text() != (tmp_path / "a" / "demo_accuracy.csv").read_text()


def test_lenet_has_a_2d_feature_layer():
    for size in (8, 28):
        logits, feats = LeNetPP(in_size=size)(torch.zeros(3, 1, size, size))
        assert logits.shape == (3, 10) and feats.shape == (3, 2)


def test_bad_input(tmp_path, monkeypatch):
    for kw, match in ((dict(dataset="cifar"), "unknown demo dataset 'cifar'"), (dict(epochs=0), "--epochs"),
                      (dict(center_weight=0.0), "--center-weight"), (dict(seed=-1), "--seed")):
        with pytest.raises(FGVCError, match=match):
            demo(tmp_path / "x", **kw)
    import torchvision.datasets

    def offline(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(FGVCError, match=r"cannot download MNIST .*--dataset digits") as e:
        demo(tmp_path / "x", dataset="mnist", epochs=1, data_root=tmp_path / "mnist")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()
