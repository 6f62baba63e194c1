"""Fabricate a benchmark output folder exactly as the runner writes it (DESIGN.md,
"Contracts"), without training: the report's tests then check its numbers against
independent computations on these same files.

Features have class structure (center-loss runs more compact); predictions carry
probabilities consistent with the predicted class; runs.csv is built from row.json.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fgvc.config import RunConfig, save_config
from fgvc.report.load import RUNS_COLUMNS

SPARROWS = ["Baird_Sparrow", "Black_throated_Sparrow", "Brewer_Sparrow", "Chipping_Sparrow", "Clay_colored_Sparrow",
            "House_Sparrow", "Field_Sparrow", "Fox_Sparrow", "Grasshopper_Sparrow", "Harris_Sparrow"]
DATA_SHA = "d" * 64
WEIGHTS_SHA = "a1b2c3d4" * 8


def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(repr(parts).encode()).hexdigest()[:12], 16))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _split(num_classes: int, n: int, start_id: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % num_classes
    _rng("split", seed).shuffle(labels)
    return np.arange(start_id, start_id + n), labels


def make_out(root: Path, *, seeds: Sequence[int] = (0, 1, 2), methods: Sequence[str] = ("ce", "center"),
             lambdas: Sequence[float] = (0.001,), num_classes: int = 5, n_test: int = 40, n_train: int = 40,
             epochs: int = 3, model: str = "resnet50.tv_in1k", dim: int = 16, failed: bool = True,
             commits: Sequence[str] = ("0123abcd" * 5,), classes: bool = True, benchmark: str = "sparrows",
             accuracy: dict | None = None) -> Path:
    """Write OUT = `root` with runs.csv and runs/<run_id>/ for every (method, lambda, seed).

    `accuracy` maps method -> target test accuracy (fraction); commits are cycled over
    runs (give two to fabricate a mixed-commit report). With `failed`, one extra center
    run (seed 99) is recorded as failed.
    """
    root = Path(root)
    accuracy = accuracy or {"ce": 0.55, "center": 0.68}
    test_ids, test_labels = _split(num_classes, n_test, 1, 0)
    train_ids, train_labels = _split(num_classes, n_train, 10_000, 1)
    centres = _rng("centres").normal(0, 3.0, (num_classes, dim)) + 4.0
    names = SPARROWS[:num_classes] + [f"Sparrow_{k}" for k in range(len(SPARROWS), num_classes)]
    configs = []
    for seed in seeds:
        for method in methods:
            for lam in (lambdas if method == "center" else (0.001,)):
                configs.append(RunConfig(benchmark=benchmark, model=model, method=method, center_weight=lam,
                                         seed=seed, epochs=epochs, batch_size=8, lr=0.001))
    if failed:
        configs.append(RunConfig(benchmark=benchmark, model=model, method="center", center_weight=lambdas[0],
                                 seed=99, epochs=epochs, batch_size=8, lr=0.001))
    rows = []
    for i, cfg in enumerate(dict.fromkeys(configs)):
        run_dir = root / "runs" / cfg.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        commit = commits[i % len(commits)]
        ident = cfg.identity()
        row = {c: None for c in RUNS_COLUMNS}
        row.update(run_id=cfg.run_id, benchmark=cfg.benchmark, model=cfg.model, weights=f"timm:{cfg.model}",
                   weights_sha256=WEIGHTS_SHA, method=cfg.method, center_weight=ident["center_weight"],
                   center_update=ident["center_update"], seed=cfg.seed, epochs=cfg.epochs,
                   batch_size=cfg.batch_size, lr=cfg.lr, image_size=cfg.image_size, device="cpu (fixture)",
                   git_commit=commit, status="ok", error="")
        if cfg.seed == 99:
            row.update(status="failed", error="non-finite loss (nan) at epoch 2, step 3; lower lr or center_weight")
            (run_dir / "row.json").write_text(json.dumps(row, indent=2))
            rows.append(row)
            continue
        rng = _rng("run", cfg.run_id)
        # predictions: correct with the method's accuracy (+ seed noise), else a random other class
        p_acc = accuracy[cfg.method] + rng.normal(0, 0.04)
        correct = rng.random(n_test) < p_acc
        pred = np.where(correct, test_labels, (test_labels + rng.integers(1, num_classes, n_test)) % num_classes)
        logits = rng.normal(0, 1, (n_test, num_classes))
        logits[np.arange(n_test), pred] = logits.max(1) + rng.uniform(0.2, 2.0, n_test)
        probs = _softmax(logits)
        k = min(5, num_classes)
        topk = np.argsort(-probs, axis=1)[:, :k]
        topp = np.take_along_axis(probs, topk, axis=1)
        assert (topk[:, 0] == pred).all()
        pd.DataFrame({"image_id": test_ids, "label": test_labels, "pred": pred, "prob": topp[:, 0].round(6),
                      "top5": [";".join(map(str, r)) for r in topk],
                      "top5_probs": [";".join(f"{p:.6f}" for p in r) for r in topp]}
                     ).to_csv(run_dir / "predictions.csv", index=False)
        top1 = 100.0 * (pred == test_labels).mean()
        top5 = 100.0 * (topk == test_labels[:, None]).any(1).mean()
        mca = 100.0 * np.mean([(pred == test_labels)[test_labels == c].mean() for c in range(num_classes)])
        # features: class centres + noise; center loss pulls them tighter
        spread = 0.8 if cfg.method == "center" else 2.0
        test_x = centres[test_labels] + rng.normal(0, spread, (n_test, dim))
        train_x = centres[train_labels] + rng.normal(0, spread, (n_train, dim))
        np.savez_compressed(run_dir / "features.npz", test_features=test_x.astype(np.float16),
                            test_labels=test_labels.astype(np.int64), test_ids=test_ids.astype(np.int64),
                            train_features=train_x.astype(np.float16),
                            train_labels=train_labels.astype(np.int64), train_ids=train_ids.astype(np.int64))
        # metrics: a plausible history ending at the final accuracy
        hist = []
        for e in range(1, epochs + 1):
            frac = e / epochs
            ce_loss = 1.6 - 1.0 * frac + rng.normal(0, 0.02)
            center = (5.0 - 3.0 * frac) if cfg.method == "center" else 0.0
            hist.append(dict(epoch=e, train_ce=ce_loss, train_center=center,
                             train_loss=ce_loss + (cfg.center_weight if cfg.method == "center" else 0) * center,
                             train_top1=40 + 50 * frac, test_top1=top1 if e == epochs else top1 * frac,
                             test_top5=top5 if e == epochs else min(100.0, top5 * (0.5 + frac / 2)),
                             lr=cfg.lr, seconds=10.0 + rng.uniform(0, 1)))
        pd.DataFrame(hist).to_csv(run_dir / "metrics.csv", index=False, float_format="%.6g")
        if classes:
            (run_dir / "classes.json").write_text(json.dumps(names))
        seconds = float(sum(h["seconds"] for h in hist))
        prov = dict(git_commit=commit, git_dirty=False, fgvc_version="0.1.0", host="fixture-host",
                    device="cpu (fixture)", python="3.12.0", torch="2.14.1", torchvision="0.29.1", timm="1.0.31",
                    numpy=np.__version__, scikit_learn="1.9.1", model=cfg.model, weights=f"timm:{cfg.model}",
                    weights_sha256=WEIGHTS_SHA, dataset=str(root.parent / "data" / "cub_sparrows"),
                    dataset_source="CUB_200_2011.tgz", dataset_content_sha256=DATA_SHA, deterministic=True,
                    started=f"2026-01-01T00:{i:02d}:00+00:00", finished=f"2026-01-01T00:{i:02d}:30+00:00")
        (run_dir / "provenance.json").write_text(json.dumps(prov, indent=2))
        row.update(top1=top1, top5=top5, mean_class_acc=mca, best_epoch_top1=max(h["test_top1"] for h in hist),
                   train_seconds=seconds, images_per_second=n_train * epochs / seconds)
        (run_dir / "row.json").write_text(json.dumps(row, indent=2))
        rows.append(row)
    frame = pd.DataFrame(sorted(rows, key=lambda r: r["run_id"]))[RUNS_COLUMNS]
    frame.to_csv(root / "runs.csv", index=False)
    return root


__all__ = ["make_out", "SPARROWS", "DATA_SHA", "WEIGHTS_SHA"]
