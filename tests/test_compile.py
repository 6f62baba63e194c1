"""`--compile`: compiled once per grid. Every run compiles as a fresh process would, its code
loaded from inductor's on-disk cache under $FGVC_CACHE_DIR after the first run
(fgvc.engine.device.compile_model), and gets a fresh process's results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny import TINY

from fgvc.engine import device as device_mod

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = {"seconds", "train_seconds", "images_per_second"}
# 24 training images in batches of 5: each epoch ends with a batch of 4, which a compiled model
# compiles a second graph for (dynamic shapes); the order of the two graphs is what a run
# trained after another in the same process must not change.
GRID = dict(TINY, methods=["ce", "center"], epochs=2, batch_size=5, benchmark="compiled")


def test_compile_model_keeps_compiled_code_under_fgvc_cache(monkeypatch, tmp_path):
    import torch

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path))
    assert device_mod.compile_cache_dir() == tmp_path / "inductor"
    # importing torch._dynamo sets the variable to torch's default: that is not a user's choice
    for torch_default in (None, default_cache_dir()):
        if torch_default is None:
            monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        else:
            monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", torch_default)
        net = device_mod.compile_model(torch.nn.Linear(2, 2))  # lazy: nothing compiles before the first call
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
        assert hasattr(net, "_orig_mod")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's own setting wins
    device_mod.compile_model(torch.nn.Linear(2, 2))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def _benchmark(grid: Path, data: Path, out: Path, cache: Path, *extra: str) -> None:
    """`fgvc benchmark --compile --deterministic` in a fresh process whose caches are in `cache`."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(FGVC_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "fgvc", "benchmark", str(grid), "--data", str(data), "--out", str(out),
                        "--device", "cpu", "--deterministic", "--compile", "--no-progress", *extra],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_a_run_compiled_after_another_equals_it_in_a_fresh_process(sparrow_dataset, tmp_path):
    """One worker trains both runs (the second after torch.compiler.reset(), its code from the
    disk cache the first one filled); the second run alone, in a fresh process with an empty
    cache, compiles everything itself. Identical metrics and predictions (CPU, --deterministic)."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({("name" if k == "benchmark" else k): v for k, v in GRID.items()}))
    _benchmark(grid, sparrow_dataset, tmp_path / "worker", tmp_path / "cache-worker")
    assert any((tmp_path / "cache-worker" / "inductor").rglob("*.py")), "nothing compiled into fgvc's cache"
    runs = pd.read_csv(tmp_path / "worker" / "runs.csv")
    assert (runs.status == "ok").all(), runs.error.tolist()
    started = {rid: json.loads((tmp_path / "worker" / "runs" / rid / "provenance.json").read_text())["started"]
               for rid in runs.run_id}
    second = max(started, key=started.get)  # the run trained after the other
    method = runs.set_index("run_id").loc[second, "method"]
    _benchmark(grid, sparrow_dataset, tmp_path / "fresh", tmp_path / "cache-fresh", "--set", f"methods=[{method}]")
    a, b = tmp_path / "worker" / "runs" / second, tmp_path / "fresh" / "runs" / second
    ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    cols = [c for c in ma.columns if c not in TIMINGS]
    pd.testing.assert_frame_equal(ma[cols], mb[cols])
    assert (a / "predictions.csv").read_text() == (b / "predictions.csv").read_text()
