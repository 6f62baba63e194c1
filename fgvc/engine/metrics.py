"""What a run measures, kept out of the loops: accuracy from predicted probabilities
(percent), and the compactness of its final features (a run writes them to
feature_metrics.json from its full features; the report and `fgvc visualize` read them)."""

from __future__ import annotations

import math

import numpy as np


def accuracy_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, top-5 and mean per-class accuracy, in percent."""
    k = min(5, probs.shape[1])
    topk = np.argsort(-probs, axis=1)[:, :k]
    top1 = topk[:, 0] == labels
    top5 = (topk == labels[:, None]).any(1)
    per_class = [top1[labels == c].mean() for c in np.unique(labels)]
    return dict(top1=100.0 * top1.mean(), top5=100.0 * top5.mean(), mean_class_acc=100.0 * float(np.mean(per_class)))


COMPACTNESS_COLUMNS = ["compactness_ratio", "silhouette_euclidean", "silhouette_cosine", "knn1_acc", "knn5_acc"]


def compactness_ratio(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean distance of each feature to its own class centre (the class's mean feature)
    divided by the mean distance over all pairs of class centres. Lower = more compact."""
    from sklearn.metrics import pairwise_distances

    classes = np.unique(labels)
    if len(classes) < 2:
        return math.nan
    centres = np.stack([features[labels == k].mean(0) for k in classes])
    idx = np.searchsorted(classes, labels)
    intra = np.linalg.norm(features - centres[idx], axis=1).mean()
    d = pairwise_distances(centres)
    inter = d[np.triu_indices(len(classes), k=1)].mean()
    return float(intra / inter) if inter > 0 else math.nan


def silhouette(features: np.ndarray, labels: np.ndarray, metric: str = "euclidean") -> float:
    """Mean silhouette of the features by class; NaN unless 2 <= classes <= n - 1."""
    from sklearn.metrics import silhouette_score

    if not 2 <= len(np.unique(labels)) <= len(labels) - 1:
        return math.nan
    return float(silhouette_score(features, labels, metric=metric))


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int) -> float:
    """Percent of test features whose k nearest train features (cosine) vote their class."""
    from sklearn.neighbors import KNeighborsClassifier

    if len(train_y) < k:
        return math.nan
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train_x, train_y)
    return 100.0 * float(knn.score(test_x, test_y))


def compactness(feats: dict[str, np.ndarray]) -> dict[str, float]:
    """All compactness numbers of one run from its features.npz arrays (float32)."""
    x, y = feats["test_features"].astype(np.float32), np.asarray(feats["test_labels"])
    tx, ty = feats["train_features"].astype(np.float32), np.asarray(feats["train_labels"])
    return dict(
        compactness_ratio=compactness_ratio(x, y),
        silhouette_euclidean=silhouette(x, y, "euclidean"),
        silhouette_cosine=silhouette(x, y, "cosine"),
        knn1_acc=knn_accuracy(tx, ty, x, y, 1),
        knn5_acc=knn_accuracy(tx, ty, x, y, 5),
    )


def feature_metrics(feats: dict[str, np.ndarray]) -> dict[str, float]:
    """A run's feature_metrics.json: the compactness numbers, and the mean L2 norm of its test
    and train features (center loss and the feature-norm penalty shrink them)."""
    norms = {f"{split}_feature_norm": float(np.linalg.norm(feats[f"{split}_features"].astype(np.float32), axis=1).mean())
             for split in ("test", "train")}
    return {**compactness(feats), **norms}


__all__ = ["accuracy_metrics", "COMPACTNESS_COLUMNS", "compactness_ratio", "silhouette", "knn_accuracy", "compactness",
           "feature_metrics"]
