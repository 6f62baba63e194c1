"""The fair comparison's controls: label smoothing (the CE term of every method) and the
feature-norm penalty (center loss with its centres held at zero)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from fgvc.grid.benchmark import run_benchmark
from fgvc.config import RunConfig, config_from_dict
from fgvc.errors import FGVCError
from fgvc.losses import CenterLoss, FeatureNormLoss, build_aux_loss
from fgvc.config import RunOptions
from tiny import TINY


def test_feature_norm_is_center_loss_with_centres_at_zero():
    x = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    fn = build_aux_loss(RunConfig(method="feature_norm", center_weight=0.01), 3, 4)
    assert isinstance(fn, FeatureNormLoss) and fn.weight == 0.01
    assert fn.model_parameters() == [] and fn.make_optimizer() is None
    center = CenterLoss(3, 4, 0.01)
    with torch.no_grad():
        center.centers.zero_()
    value = fn(x, y)
    assert value.item() == pytest.approx(center(x, y).item())
    assert value.item() == pytest.approx((x.detach() ** 2).sum(1).mean().item())
    value.backward()
    assert torch.allclose(x.grad, 2 * x.detach() / 6)  # d/dx mean ||x||^2
    with pytest.raises(ValueError, match=r"shape \(B, 4\)"):
        fn(torch.zeros(2, 3), y[:2])


def test_feature_norm_reads_lambda_only():
    a = RunConfig(method="feature_norm", center_weight=0.01, center_lr=0.3, center_update="ema").validate()
    b = RunConfig(method="feature_norm", center_weight=0.01).validate()
    assert a.run_id == b.run_id and "-feature_norm-lam0.01-" in a.run_id
    ident = a.identity()
    assert (ident["center_update"], ident["center_lr"], ident["center_alpha"]) == ("none", 0.0, 0.0)
    assert config_from_dict(ident).validate().run_id == a.run_id  # its saved config.yaml reads back
    with pytest.raises(FGVCError, match="center_weight.*must be > 0 for method 'feature_norm'"):
        RunConfig(method="feature_norm", center_weight=0.0).validate()


def test_label_smoothing_names_the_run_and_is_checked():
    assert RunConfig(label_smoothing=0.1).run_id != RunConfig().run_id
    assert "-ce-lam0-ls0.1-s0-" in RunConfig(method="ce", label_smoothing=0.1).run_id
    assert "-ls" not in RunConfig().run_id
    for bad in (-0.1, 1.0):
        with pytest.raises(FGVCError, match="label_smoothing"):
            RunConfig(label_smoothing=bad).validate()


@pytest.mark.slow
def test_label_smoothing_changes_the_trained_ce_term(sparrow_dataset, tmp_path):
    opts = RunOptions(data=sparrow_dataset, out=tmp_path, progress=False, deterministic=True)
    frame = run_benchmark(None, opts, dict(TINY, label_smoothing=[0.0, 0.5]), echo=lambda m: None)
    assert list(frame.status) == ["ok", "ok"]
    ce = {rid: pd.read_csv(tmp_path / "runs" / rid / "metrics.csv").train_ce.iloc[0] for rid in frame.run_id}
    smooth = next(r for r in ce if "-ls0.5-" in r)
    plain = next(r for r in ce if "-ls" not in r)
    # The first batch is the same; a smoothed target can never reach zero loss, a plain one
    # falls below it: the two terms differ.
    assert ce[smooth] != pytest.approx(ce[plain], rel=1e-3)
