"""Feature compactness of one run's final-epoch last-conv features.

Center loss claims to pull each class together; these numbers say by how much, in
units that do not depend on the feature scale (a ratio, silhouettes, k-NN accuracy).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import pairwise_distances, silhouette_score
from sklearn.neighbors import KNeighborsClassifier

COMPACTNESS_COLUMNS = ["compactness_ratio", "silhouette_euclidean", "silhouette_cosine", "knn1_acc", "knn5_acc"]


def compactness_ratio(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean distance of each feature to its own class centre (the class's mean feature)
    divided by the mean distance over all pairs of class centres. Lower = more compact."""
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
    if not 2 <= len(np.unique(labels)) <= len(labels) - 1:
        return math.nan
    return float(silhouette_score(features, labels, metric=metric))


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int) -> float:
    """Percent of test features whose k nearest train features (cosine) vote their class."""
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


__all__ = ["COMPACTNESS_COLUMNS", "compactness_ratio", "silhouette", "knn_accuracy", "compactness"]
