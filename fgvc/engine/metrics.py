"""Accuracy from predicted probabilities (percent), kept out of the loops."""

from __future__ import annotations

import numpy as np


def accuracy_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, top-5 and mean per-class accuracy, in percent."""
    k = min(5, probs.shape[1])
    topk = np.argsort(-probs, axis=1)[:, :k]
    top1 = topk[:, 0] == labels
    top5 = (topk == labels[:, None]).any(1)
    per_class = [top1[labels == c].mean() for c in np.unique(labels)]
    return dict(top1=100.0 * top1.mean(), top5=100.0 * top5.mean(), mean_class_acc=100.0 * float(np.mean(per_class)))


__all__ = ["accuracy_metrics"]
