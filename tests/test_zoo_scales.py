"""tools/zoo_scales.py: every registered loss measured against CE, and the λ grid around its scale."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from fgvc.losses.registry import registered_losses


@pytest.fixture()
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    return importlib.import_module("zoo_scales")


def test_series_grid_is_the_nearest_1_3_10_value_and_its_neighbours(tool):
    assert tool.series_grid(0.01) == [0.003, 0.01, 0.03]
    assert tool.series_grid(0.004) == [0.001, 0.003, 0.01]
    assert tool.series_grid(0.0065) == [0.003, 0.01, 0.03]  # log-nearest: 0.0065 is nearer 0.01 than 0.003
    assert tool.series_grid(2.0) == [1.0, 3.0, 10.0]
    assert tool.series_grid(150.0) == [30.0, 100.0, 300.0]
    assert tool.series_grid(0.0) == [] and tool.series_grid(math.nan) == []


def test_every_registered_loss_is_measured_against_ce(tool, sparrow_dataset, tmp_path):
    out = tmp_path / "scales"
    assert tool.main(["--data", str(sparrow_dataset), "--model", "test_resnet", "--no-pretrained", "--image-size", "32",
                      "--batch-size", "8", "--epochs", "1", "--batches", "2", "--out", str(out)]) == 0
    table = pd.read_csv(out / "zoo-scales.csv")
    assert list(table.columns) == tool.COLUMNS
    assert sorted(table.method) == sorted(registered_losses())
    assert (table.ce_value > 0).all() and (table.ce_grad_norm > 0).all() and (table.batches == 2).all()
    assert set(table.inputs) == {"features", "logits"}
    measured = table[table.grad_norm > 0]
    assert len(measured) >= len(table) - 2  # supcon / triplet may find no positives in two tiny batches
    for _, r in measured.iterrows():
        assert r.lam_grad == pytest.approx(r.ce_grad_norm / r.grad_norm, rel=1e-3)
        assert [float(v) for v in r.grid.split()] == tool.series_grid(r.lam_grad)
    prov = json.loads((out / "zoo-scales.json").read_text())
    assert "git_commit" in prov and "dataset_content_sha256" in prov


def test_an_unknown_loss_is_one_line_and_writes_nothing(tool, sparrow_dataset, tmp_path):
    out = tmp_path / "scales"
    with pytest.raises(SystemExit, match="zoo_scales.py: .*no_such_loss"):
        tool.main(["--data", str(sparrow_dataset), "--model", "test_resnet", "--no-pretrained", "--image-size", "32",
                   "--batch-size", "8", "--epochs", "0", "--methods", "no_such_loss", "--out", str(out)])
    assert not out.exists()


def test_warm_trains_only_the_losses_own_parameters(tool):
    """--warm: the term adds 0 to the trunk's loss and no gradient to the features; the centres move."""
    import torch

    from fgvc.config import RunConfig
    from fgvc.losses.registry import build_aux_loss

    losses = {name: build_aux_loss(RunConfig(method=name, center_weight=1.0).validate(), 3, 4)
              for name in ["center", "contrastive_center", "max_entropy"]}
    term = tool.warm_term(losses)
    assert len(term.optimizer.optimizers) == 2  # max_entropy reads the logits and has no parameters
    before = {n: losses[n].centers.detach().clone() for n in ["center", "contrastive_center"]}
    feats, labels = torch.randn(6, 4, requires_grad=True), torch.tensor([0, 0, 1, 1, 2, 2])
    value = term.module(feats, labels)
    assert float(value.detach()) == 0.0
    term.optimizer.zero_grad()
    value.backward()
    assert feats.grad is None or float(feats.grad.abs().sum()) == 0.0
    term.module.before_step()
    term.optimizer.step()
    for n, c in before.items():
        assert not torch.equal(losses[n].centers.detach(), c), n
    assert tool.warm_term({"max_entropy": losses["max_entropy"]}) is None


def test_provenance_names_the_code_that_began_the_measurement():
    """A commit made while a long measurement runs is not credited with it (the code state is taken at the start)."""
    import torch

    from fgvc.engine.provenance import environment, git_state

    begun = environment(torch.device("cpu"), ("0" * 40, False))
    assert (begun["git_commit"], begun["git_dirty"]) == ("0" * 40, False)
    assert environment(torch.device("cpu"))["git_commit"] == git_state()[0]
