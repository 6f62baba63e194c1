"""The report's "Runs under way" section (fgvc.report.progress): a sweep's standings before its runs end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fgvc.report.progress import progress_section, progress_table, under_way


def run(out: Path, name: str, vals: list[float], ended: bool = False, **cfg) -> None:
    d = out / "runs" / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(dict(dict(benchmark="b", model="m", lr=0.01, seed=0), **cfg)))
    (d / "metrics.csv").write_text("epoch,train_loss,val_top1\n" + "".join(
        f"{i + 1},1.0,{v}\n" for i, v in enumerate(vals)))
    if ended:
        (d / "row.json").write_text(json.dumps({"status": "pruned"}))


def test_standings_per_setting_at_the_latest_epoch_all_seeds_reached(tmp_path):
    run(tmp_path, "ce-a0", [10, 50], method="ce", seed=0)
    run(tmp_path, "ce-a1", [20, 60, 70], method="ce", seed=1)          # ahead: scored at epoch 2 with seed 0
    run(tmp_path, "ce-b0", [30, 40, 90], method="ce", lr=0.02, seed=0)
    run(tmp_path, "c-a0", [5], method="center", center_weight=0.01, seed=0)
    run(tmp_path, "c-b0", [7], method="center", center_weight=0.03, seed=0)
    run(tmp_path, "c-x0", [99, 99], method="center", center_weight=0.1, seed=0, ended=True)  # ended: in runs.csv
    assert [p.name for p in under_way(tmp_path)] == ["c-a0", "c-b0", "ce-a0", "ce-a1", "ce-b0"]
    t = progress_table(under_way(tmp_path))
    assert t[["method", "setting", "seeds", "epoch"]].values.tolist() == [
        ["ce", "lr 0.02", 1, 3], ["ce", "lr 0.01", 2, 2], ["center", "λ 0.03", 1, 1], ["center", "λ 0.01", 1, 1]]
    assert t.val_mean.tolist() == [90, 55, 7, 5]
    assert t.val_std[1] == pytest.approx(7.0710678)
    text = "\n".join(progress_section(tmp_path))
    assert "## Runs under way" in text and "5 run folder(s)" in text
    assert "| ce | lr 0.01 | 2 | 2 | 55.0 ± 7.1 |" in text and "| center | λ 0.01 | 1 | 1 | 5.0 |" in text


def test_no_section_when_every_run_has_ended(tmp_path):
    assert progress_section(tmp_path) == []
    run(tmp_path, "done", [50], method="ce", ended=True)
    assert progress_section(tmp_path) == []


def test_one_setting_per_method_is_named_by_what_sets_it_apart(tmp_path):
    """A confirmation: each method at its own setting; the table names it (not "—"), CE without λ."""
    run(tmp_path, "ce", [50], method="ce", lr=0.005, center_weight=0.001)
    run(tmp_path, "c", [60], method="center", lr=0.005, center_weight=0.03)
    run(tmp_path, "f", [55], method="feature_norm", lr=0.01, center_weight=0.01)
    t = progress_table(under_way(tmp_path))
    assert t.set_index("method").setting.to_dict() == {
        "ce": "lr 0.005", "center": "λ 0.03, lr 0.005", "feature_norm": "λ 0.01, lr 0.01"}


def test_halving_standings_show_every_setting_at_each_rung(tmp_path):
    """A halved sweep: each setting's mean validation top-1 at the rung (epoch 3, where every
    setting of a method stands) and at the end; pruned settings have no end score; λ in numeric
    order (300 before 1000); a sweep halving did not prune has no such section."""
    from fgvc.report.load import load_runs
    from fgvc.report.progress import standings_section, standings_table
    from test_protocol import fabricate

    runs = [dict(method="contrastive_center", lr=0.01, center_weight=lam, seed=s, val=val + s,
                 status="ok" if lam == 300.0 else "pruned") for lam, val in ((1000.0, 40.0), (300.0, 60.0)) for s in (0, 1)]
    runs += [dict(method="ce", lr=0.01, label_smoothing=ls, seed=s, val=50.0, status="ok" if ls == 0.1 else "pruned")
             for ls in (0.0, 0.1) for s in (0, 1)]
    out = fabricate(tmp_path / "sweep", runs)
    table_, epochs = standings_table(load_runs(out))
    assert epochs == [3, 10]
    assert table_[["method", "setting", "stopped"]].values.tolist() == [
        ["ce", "label_smoothing 0", "pruned at epoch 3"], ["ce", "label_smoothing 0.1", "ended"],
        ["contrastive_center", "λ 300", "ended"], ["contrastive_center", "λ 1000", "pruned at epoch 3"]]
    assert table_["epoch 3"].tolist() == [50.0, 50.0, 60.5, 40.5] and pd.isna(table_["epoch 10"][3])
    text = "\n".join(standings_section(load_runs(out), out / "figures", out))
    assert "| contrastive_center | λ 300 | 2 | 60.5 | 60.5 | ended |" in text
    assert "![Successive halving, setting by setting](figures/halving_standings.png)" in text
    assert (out / "figures" / "halving_standings.png").stat().st_size > 0
    full = fabricate(tmp_path / "full", [dict(method="ce", lr=0.01, seed=0)])
    assert standings_section(load_runs(full), full / "figures", full) == []
    assert not (full / "figures" / "halving_standings.png").exists()
