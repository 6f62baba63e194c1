"""tools/same_runs.py: two folders' runs compared file by file (does a commit train as another does?)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from fgvc.config import expand_grid, load_grid

ROOT = Path(__file__).resolve().parents[1]
RID = "tf_efficientnet_lite0-ce-lam0-s5-62686c34"


@pytest.fixture()
def tool(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    return importlib.import_module("same_runs")


def make_folder(root: Path, commit: str, seconds: float = 60.0) -> Path:
    run = root / "runs" / RID
    run.mkdir(parents=True)
    (run / "row.json").write_text(json.dumps({"run_id": RID, "git_commit": commit, "device": "cpu:test x1 threads"}))
    (run / "metrics.csv").write_text("epoch,train_loss,test_top1,seconds,val_top1\n"
                                     f"1,3.4694,,{seconds},\n2,2.2475,29.9187,{seconds + 1},\n")
    (run / "predictions.csv").write_text("image_id,label,pred\n1,0,0\n2,1,0\n")
    np.savez(run / "features.npz", test_features=np.arange(6, dtype=np.float32).reshape(2, 3), test_ids=np.array([1, 2]))
    return root


def test_identical_runs_from_two_commits_pass_and_the_clock_is_ignored(tool, tmp_path, capsys):
    a, b = make_folder(tmp_path / "a", "aaaaaaa1"), make_folder(tmp_path / "b", "bbbbbbb2", seconds=75.5)
    out = tmp_path / "same.md"
    assert tool.main([str(a), str(b), "--out", str(out)]) == 0
    text = out.read_text()
    assert "identical (4 columns x 2 epochs) | identical | identical (2 arrays) |" in text  # NaN cells on both sides
    assert "| aaaaaaa, cpu:test x1 threads, fp32 (not recorded) |" in text and "bbbbbbb" in text
    assert "**Every shared run is identical in every file compared.**" in text
    assert capsys.readouterr().out == text


def test_a_difference_anywhere_is_named_with_its_size_and_fails(tool, tmp_path):
    a, b = make_folder(tmp_path / "a", "a"), make_folder(tmp_path / "b", "b")
    run = b / "runs" / RID
    (run / "metrics.csv").write_text((run / "metrics.csv").read_text().replace("2.2475", "2.2476"))
    np.savez(run / "features.npz", test_features=np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5,
             test_ids=np.array([1, 2]))
    (run / "predictions.csv").write_text("image_id,label,pred\n1,0,0\n2,1,1\n")
    text, same = tool.report([a, b])
    assert not same and "**Some shared runs differ**" in text
    assert "train_loss: max abs diff 0.0001" in text
    assert "test_features: max abs diff 0.5" in text and "pred: max abs diff 1" in text


def test_the_kind_of_cpu_is_shown_where_recorded(tool, tmp_path):
    """Same code and config on two kinds of CPU train differently: the table says which ran where."""
    a, b = make_folder(tmp_path / "a", "a"), make_folder(tmp_path / "b", "b")
    (b / "runs" / RID / "provenance.json").write_text(json.dumps(
        {"cpu_id": "AuthenticAMD family 25 model 17 stepping 1", "cpu_capability": "AVX512", "precision": "fp32"}))
    text, _ = tool.report([a, b])
    assert "| b, cpu:test x1 threads (AuthenticAMD family 25 model 17 stepping 1, AVX512), fp32 |" in text
    assert "| a, cpu:test x1 threads, fp32 (not recorded) |" in text


def test_runs_in_one_folder_only_are_listed(tool, tmp_path):
    a, b = make_folder(tmp_path / "a", "a"), tmp_path / "b"
    (b / "runs").mkdir(parents=True)
    text, same = tool.report([a, b])
    assert not same and f"In some folders only: {RID}." in text and "**No run is in every folder.**" in text
    with pytest.raises(SystemExit, match="no runs/ folder"):
        tool.report([a, tmp_path / "nowhere"])


def test_the_check_grid_names_the_runs_the_older_commits_trained():
    """benchmarks/commit-check.yaml's run ids are the ones 10ea888, 9470783 and c49e5dc give it
    (their dry runs): same_runs.py pairs runs by id, so a change to how ids hash shows here."""
    ids = sorted(c.run_id for c in expand_grid(load_grid(ROOT / "benchmarks" / "commit-check.yaml")))
    assert ids == [RID, "tf_efficientnet_lite0-center-lam0.01-s5-004c8a74"]
