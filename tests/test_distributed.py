"""DDP: the batch deal, gathered evaluation, and a real 2-process torchrun (gloo, CPU)
against one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny import tiny_config

from fgvc.engine import distributed as dist_
from fgvc.errors import FGVCError
from fgvc.data.sampling import drop_last_batch

ROOT = Path(__file__).resolve().parents[1]


def test_deal_gives_each_process_its_share_of_every_global_batch():
    order = list(range(10))
    parts = [dist_.deal_batches(order, 4, dist_.Dist(r, 2), drop_last=False) for r in range(2)]
    # global batches [0..3], [4..7], [8, 9]: each process takes a contiguous half of each
    assert parts == [[0, 1, 4, 5, 8], [2, 3, 6, 7, 9]]
    # an uneven last batch is padded with its own first images: both processes step 3 times
    parts = [dist_.deal_batches(list(range(9)), 4, dist_.Dist(r, 2), drop_last=False) for r in range(2)]
    assert parts == [[0, 1, 4, 5, 8], [2, 3, 6, 7, 8]]
    assert dist_.deal_batches(list(range(9)), 4, dist_.Dist(1, 2), drop_last=True) == [2, 3, 6, 7]
    assert dist_.deal_batches(order, 4, dist_.Dist(), drop_last=False) == order
    # a last batch smaller than the number of processes still gives each one a step
    parts = [dist_.deal_batches(list(range(9)), 8, dist_.Dist(r, 4), drop_last=False) for r in range(4)]
    assert parts == [[0, 1, 8], [2, 3, 8], [4, 5, 8], [6, 7, 8]]


def test_every_image_is_evaluated_exactly_once():
    for n in (1, 7, 8, 615):
        for world in (1, 2, 3, 8):
            covered = []
            for r in range(world):
                covered.extend(range(n)[dist_.eval_chunk(n, dist_.Dist(r, world))])
            assert covered == list(range(n)), (n, world)


def test_global_batch_must_split_evenly():
    assert dist_.local_batch_size(32, dist_.Dist(0, 4)) == 8
    with pytest.raises(FGVCError, match="batch_size=30.*divisible by the 4 processes"):
        dist_.local_batch_size(30, dist_.Dist(0, 4))


def test_last_batch_rule_keeps_two_images_per_process():
    assert not drop_last_batch(64, 32, 1) and drop_last_batch(33, 32, 1) and not drop_last_batch(34, 32, 1)
    assert drop_last_batch(34, 32, 2) and not drop_last_batch(35, 32, 2)


def _train(cmd_prefix: list[str], cfg: Path, data: Path, out: Path, pipeline: str) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = cmd_prefix + ["-m", "fgvc", "train", "--config", str(cfg), "--data", str(data), "--out", str(out),
                        "--device", "cpu", "--no-progress", "--pipeline", pipeline,
                        "--precision", "fp32"]  # the tolerance below is for fp32 sums
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((out / "runs").iterdir())
    assert len(runs) == 1
    return runs[0]


@pytest.mark.slow
@pytest.mark.parametrize("update,augment,pipeline", [("learned", "none", "per-sample"),
                                                     ("ema", "standard", "batched")])
def test_torchrun_two_processes_match_one_process(sparrow_dataset, tmp_path, update, augment, pipeline):
    """GroupNorm model (no BatchNorm: SyncBatchNorm does not run on CPU), the seeded batch
    order: 2 gloo processes with 4 images each follow the 1-process run with batch 8. With
    no augmentation, or with the batched pipeline, whose crops depend only on (seed, epoch,
    image) and not on which process draws them. Stated tolerance: 1e-4 relative on per-epoch
    losses, 1e-3 on probabilities (only the order of floating-point sums differs)."""
    cfg = tiny_config(benchmark="ddp", model="test_efficientnet_gn", method="center", center_update=update,
                      center_weight=0.01, epochs=2, lr=0.05, seed=3, augment=augment)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    one = _train([sys.executable], path, sparrow_dataset, tmp_path / "one", pipeline)
    two = _train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
                 path, sparrow_dataset, tmp_path / "two", pipeline)
    m1, m2 = pd.read_csv(one / "metrics.csv"), pd.read_csv(two / "metrics.csv")
    for col in ("train_ce", "train_center", "train_loss"):
        np.testing.assert_allclose(m2[col], m1[col], rtol=1e-4, err_msg=col)
    assert (m1.train_center > 0).all()
    p1, p2 = pd.read_csv(one / "predictions.csv"), pd.read_csv(two / "predictions.csv")
    assert list(p2.image_id) == list(p1.image_id)  # every test image once, in manifest order
    np.testing.assert_allclose(p2.prob, p1.prob, atol=1e-3)
    f1, f2 = np.load(one / "features.npz"), np.load(two / "features.npz")
    assert np.array_equal(f1["train_ids"], f2["train_ids"])
    np.testing.assert_allclose(f2["test_features"].astype(float), f1["test_features"].astype(float), atol=2e-2, rtol=1e-2)
    # rank 0 alone wrote the run folder and says how it ran
    prov = yaml.safe_load((two / "provenance.json").read_text())
    assert prov["world_size"] == 2 and yaml.safe_load((one / "provenance.json").read_text())["world_size"] == 1
    assert prov["pipeline"] == pipeline


def test_benchmark_refuses_torchrun(monkeypatch, capsys):
    from fgvc.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["benchmark", "benchmarks/smoke.yaml", "--dry-run"]) == 2
    assert "torchrun --nproc_per_node N -m fgvc train" in capsys.readouterr().err
