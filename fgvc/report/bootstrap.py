"""Hierarchical bootstrap of a paired difference in accuracy over seeds and test images.

One resample draws as many seeds as there are, with replacement; within each drawn seed
it draws that seed's test images with replacement, the per-image correctness of both
runs of the seed together, and takes the accuracy difference (b minus a, points); the
resample's value is the mean over its drawn seeds. The interval therefore covers both
seed-to-seed and test-sample variation (the t interval over seeds covers only the
first). Because each drawn seed redraws its images on its own, test-image noise that the
seed differences already carry is counted again: the interval errs on the wide side.

Resampling images with replacement only changes how many images of each kind (a right
and b wrong, both the same, a wrong and b right) a seed contributes, so each seed's draw
is made as one multinomial over those three counts: the same distribution as drawing
image indices, at a fraction of the cost (tests/test_report.py checks it against a plain
loop over drawn indices). A fixed RNG seed makes the result identical on every rerun,
and each call starts from it, so one comparison's interval never depends on the others.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

BOOT_RESAMPLES = 10_000
BOOT_SEED = 0


def paired_correctness(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a correct, b correct, label) per test image present in both predictions frames
    (image_id, label, pred), aligned on image_id in a's order."""
    m = a[["image_id", "label", "pred"]].merge(b[["image_id", "label", "pred"]], on="image_id",
                                               suffixes=("_a", "_b"))
    return ((m.pred_a == m.label_a).to_numpy(), (m.pred_b == m.label_b).to_numpy(),
            m.label_a.to_numpy())


def hierarchical_bootstrap(pairs: Sequence[tuple[np.ndarray, np.ndarray]], resamples: int = BOOT_RESAMPLES,
                           seed: int = BOOT_SEED) -> np.ndarray:
    """The bootstrap distribution (`resamples` values, accuracy points) of the mean over
    seeds of b's minus a's accuracy; `pairs` holds one (a correct, b correct) pair of
    boolean arrays per seed. Seeds without images are left out; empty when none is left."""
    pairs = [(np.asarray(a, bool), np.asarray(b, bool)) for a, b in pairs if len(a)]
    if not pairs:
        return np.empty(0)
    counts = np.array([[np.sum(a & ~b), np.sum(a == b), np.sum(~a & b)] for a, b in pairs])  # -1, 0, +1
    n = counts.sum(axis=1)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
    k = rng.multinomial(n[drawn], counts[drawn] / n[drawn][..., None])
    return 100.0 * ((k[..., 2] - k[..., 0]) / n[drawn]).mean(axis=1)


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central `confidence` percentile interval of `values`; NaN when empty."""
    if not len(values):
        return math.nan, math.nan
    lo, hi = np.percentile(values, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def bootstrap_interval(pairs: Sequence[tuple[np.ndarray, np.ndarray]], confidence: float = 0.95,
                       resamples: int = BOOT_RESAMPLES, seed: int = BOOT_SEED) -> tuple[float, float]:
    """The hierarchical bootstrap's percentile interval of the mean paired difference."""
    return percentile_interval(hierarchical_bootstrap(pairs, resamples, seed), confidence)


def class_intervals(pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], num_classes: int,
                    confidence: float = 0.95, resamples: int = BOOT_RESAMPLES,
                    seed: int = BOOT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: (mean over seeds of b's minus a's class accuracy, interval low, high),
    the bootstrap over seeds and that class's images; `pairs` holds one (a correct,
    b correct, label) triple per seed. NaN for a class without test images."""
    diff, low, high = (np.full(num_classes, math.nan) for _ in range(3))
    for c in range(num_classes):
        sub = [(a[lab == c], b[lab == c]) for a, b, lab in pairs if np.any(lab == c)]
        if not sub:
            continue
        diff[c] = 100.0 * np.mean([b.mean() - a.mean() for a, b in sub])
        low[c], high[c] = bootstrap_interval(sub, confidence, resamples, seed)
    return diff, low, high


__all__ = ["BOOT_RESAMPLES", "BOOT_SEED", "paired_correctness", "hierarchical_bootstrap", "percentile_interval",
           "bootstrap_interval", "class_intervals"]
