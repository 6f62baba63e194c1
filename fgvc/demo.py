"""`fgvc demo`: the 2-D picture from the center-loss paper (Wen et al., ECCV 2016, Fig. 3)
and KaiyangZhou/pytorch-center-loss, in about a minute on a CPU.

A small CNN whose last hidden layer has 2 units is trained twice from the same init and
batch order, with cross-entropy alone and with CE + lambda * center loss, and the 2-D
features of both are drawn side by side: CE spreads each class along a ray from the
origin, center loss pulls it into a tight blob around its center.

Choices (differences from the port, which trains 100 epochs on MNIST):
- Data: scikit-learn's bundled 8x8 digits (1797 images, no download), a stratified 80/20
  train/test split with a fixed seed (0, whatever `seed` is, so seeds share one split),
  pixels scaled to [0, 1] and standardised with the training mean/std. `dataset="mnist"`
  uses torchvision's MNIST (downloaded to `data_root`) with its official split.
- Network: the port's LeNet++ with 3x3 kernels for 8x8 inputs: three stages of two
  conv3x3 + PReLU and a 2x2 max-pool (32, 64, 128 channels), FC to 2 + PReLU (the
  features), FC to 10.
- Optimiser: Adam, lr 3e-3, cosine decay to 0 over the run, batch 64 (the port's SGD at
  lr 0.001 does not get off the ground in a minute on 1437 images).
- Center loss: `fgvc.losses.center.CenterLoss`, `learned` update with the port's center lr 0.5,
  lambda 0.1 by default: Wen et al.'s MNIST lambda 0.003 (half-sum form) at batch 64 in
  this module's mean form (0.003 * 64 / 2 = 0.096; see fgvc/losses/center.py). The port's lambda 1
  merges classes here. With lambda 0.1, 30+ epochs gave the picture for seeds 0-2; shorter
  runs can leave two classes merged (use --center-weight 0.01 for runs of ~10 epochs).
- Compactness (the CSV's `compactness`): on the test features, the mean squared distance
  of a sample to its class mean divided by the mean squared distance between class means
  (scale-free; smaller = tighter classes relative to their separation).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fgvc.cli.defaults import DEMO_CENTER_WEIGHT, DEMO_DATASETS, DEMO_EPOCHS, DEMO_OUT
from fgvc.errors import FGVCError
from fgvc.report.style import DOUBLE, class_style, styled

CENTER_LR = 0.5
LR = 3e-3
BATCH_SIZE = 64
SPLIT_SEED = 0
CSV_COLUMNS = ["method", "lambda", "epochs", "seed", "train_acc", "test_acc", "dataset", "compactness"]
MAX_POINTS = 5000  # per panel: more only hides the shape


# --------------------------------------------------------------------------- data
def load_digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): 8x8 digits, stratified 80/20 split, seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=SPLIT_SEED)
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte)


def load_mnist_split(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST's official train/test split through torchvision (downloads once into `root`)."""
    from torchvision.datasets import MNIST

    try:
        sets = [MNIST(str(root), train=t, download=True) for t in (True, False)]
    except Exception as e:  # URLError, RuntimeError, OSError, ...: all mean "no MNIST here"
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FGVCError(f"cannot download MNIST into {root} ({detail}); use the bundled digits instead "
                        "(--dataset digits, no download), or put MNIST's files there by hand") from None
    (xtr, ytr), (xte, yte) = [(s.data[:, None].float() / 255.0, s.targets.long()) for s in sets]
    return xtr, ytr, xte, yte


def load_data(dataset: str, root: Path) -> tuple[torch.Tensor, ...]:
    """Standardised with the training set's mean and std."""
    if dataset not in DEMO_DATASETS:
        raise FGVCError(f"unknown demo dataset {dataset!r}: choose one of {', '.join(DEMO_DATASETS)}")
    xtr, ytr, xte, yte = load_digits_split() if dataset == "digits" else load_mnist_split(root)
    mean, std = xtr.mean(), xtr.std()
    return (xtr - mean) / std, ytr.long(), (xte - mean) / std, yte.long()


# --------------------------------------------------------------------------- model
class LeNetPP(nn.Module):
    """LeNet++ (Wen et al.; KaiyangZhou's ConvNet) with 3x3 kernels: a 2-unit feature layer."""

    def __init__(self, in_size: int = 8, num_classes: int = 10, width: int = 32):
        super().__init__()

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.PReLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
                    nn.PReLU(), nn.MaxPool2d(2)]

        self.conv = nn.Sequential(*stage(1, width), *stage(width, 2 * width), *stage(2 * width, 4 * width))
        side = in_size // 8
        self.fc1 = nn.Linear(4 * width * side * side, 2)
        self.prelu_fc1 = nn.PReLU()
        self.fc2 = nn.Linear(2, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, 2-D features)."""
        feats = self.prelu_fc1(self.fc1(self.conv(x).flatten(1)))
        return self.fc2(feats), feats


def squared_compactness(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance to the class mean / mean squared distance between class means."""
    classes = np.unique(labels)
    means = np.stack([features[labels == k].mean(0) for k in classes])
    intra = np.mean([((features[labels == k] - m) ** 2).sum(1).mean() for k, m in zip(classes, means)])
    d = ((means[:, None] - means[None]) ** 2).sum(-1)
    return float(intra / d[np.triu_indices(len(classes), 1)].mean())


@torch.no_grad()
def _features(net: nn.Module, x: torch.Tensor, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    outs = [net(x[i:i + batch]) for i in range(0, len(x), batch)]
    return (torch.cat([o[0] for o in outs]).argmax(1).numpy(), torch.cat([o[1] for o in outs]).numpy())


def train_one(data: tuple[torch.Tensor, ...], *, center_weight: float, epochs: int, seed: int) -> dict:
    """One model (CE if center_weight == 0); the same seed gives the same init and batch order
    for both methods. The global RNG is left as it was."""
    from fgvc.engine.loop import optimizer_step
    from fgvc.losses.center import CenterLoss

    xtr, ytr, xte, yte = data
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = LeNetPP(in_size=xtr.shape[-1], num_classes=int(ytr.max()) + 1)
    center = None
    if center_weight > 0:
        center = CenterLoss(net.fc2.out_features, 2, center_weight, update="learned", lr=CENTER_LR, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    center_opt = center.make_optimizer() if center is not None else None
    steps_per_epoch = math.ceil(len(ytr) / BATCH_SIZE)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(perm), BATCH_SIZE):
            idx = perm[i:i + BATCH_SIZE]
            x, y = xtr[idx], ytr[idx]
            logits, feats = net(x)
            loss = F.cross_entropy(logits, y)
            if center is not None:
                loss = loss + center_weight * center(feats, y)
            if not torch.isfinite(loss):
                raise FGVCError(f"the demo's loss became {loss.item()} (center_weight={center_weight:g}): "
                                "use a smaller --center-weight")
            optimizer_step(loss, opt, center, center_opt, feats, y)
            sched.step()
    pred_tr, f_tr = _features(net, xtr)
    pred_te, f_te = _features(net, xte)
    return dict(train_features=f_tr, train_labels=ytr.numpy(), test_features=f_te, test_labels=yte.numpy(),
                train_acc=100.0 * float((pred_tr == ytr.numpy()).mean()),
                test_acc=100.0 * float((pred_te == yte.numpy()).mean()),
                centers=center.centers.detach().numpy().copy() if center is not None else None, model=net)


# --------------------------------------------------------------------------- figure
@styled
def plot_features(results: dict[str, dict], titles: dict[str, str], path: Path, seed: int = 0) -> Path:
    """Rows train / test, one column per method; class k has the same colour and marker everywhere."""
    from matplotlib.figure import Figure

    from fgvc.io import save_figure

    colors, markers = class_style(10)
    fig = Figure(figsize=(DOUBLE, DOUBLE * 1.05))
    axes = fig.subplots(2, len(results), squeeze=False)
    rng = np.random.default_rng(seed)
    for col, (method, res) in enumerate(results.items()):
        for row, split in enumerate(("train", "test")):
            ax = axes[row][col]
            f, y = res[f"{split}_features"], res[f"{split}_labels"]
            if len(y) > MAX_POINTS:
                keep = np.sort(rng.choice(len(y), MAX_POINTS, replace=False))
                f, y = f[keep], y[keep]
            for k in range(int(y.max()) + 1):
                ax.scatter(f[y == k, 0], f[y == k, 1], s=4, color=colors[k % 10], marker=markers[k % 10],
                           label=str(k), alpha=0.8, linewidths=0, rasterized=True)
            if res.get("centers") is not None:
                c = res["centers"]
                ax.scatter(c[:, 0], c[:, 1], marker="+", s=30, color="black", linewidths=0.8, zorder=3)
            where = ", +: learned centers" if res.get("centers") is not None else ""
            ax.set_title(f"{titles[method]}\n{split}: top-1 {res[f'{split}_acc']:.1f}%{where}")
            ax.set_xlabel("feature 1")
            ax.set_ylabel("feature 2")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", title="digit", markerscale=2.5)
    fig.subplots_adjust(right=0.9, hspace=0.3, wspace=0.25)
    return save_figure(fig, path, dpi=90)


# --------------------------------------------------------------------------- main
def demo(out: Path = DEMO_OUT, *, dataset: str = "digits", epochs: int | None = None, seed: int = 0,
         center_weight: float = DEMO_CENTER_WEIGHT, data_root: Path = Path("data") / "mnist") -> dict:
    """Train CE and CE + center loss, write OUT/demo_features.png and OUT/demo_accuracy.csv.

    Returns dict(png, csv, rows (the CSV's rows), results (method -> features, labels,
    accuracies, centers, the trained model)). `epochs` defaults to 40 for digits (about a minute on 2 CPU
    cores) and 5 for MNIST.
    """
    from fgvc.io import atomic_path

    if dataset not in DEMO_DATASETS:
        raise FGVCError(f"unknown demo dataset {dataset!r}: choose one of {', '.join(DEMO_DATASETS)}")
    epochs = DEMO_EPOCHS[dataset] if epochs is None else epochs
    if not (isinstance(epochs, int) and epochs >= 1):
        raise FGVCError(f"invalid --epochs {epochs!r}: must be an integer >= 1")
    if not (math.isfinite(center_weight) and center_weight > 0):
        raise FGVCError(f"invalid --center-weight {center_weight!r}: must be > 0")
    if seed < 0:
        raise FGVCError(f"invalid --seed {seed!r}: must be >= 0")
    out = Path(out)
    data = load_data(dataset, Path(data_root))
    results = {"ce": train_one(data, center_weight=0.0, epochs=epochs, seed=seed),
               "center": train_one(data, center_weight=center_weight, epochs=epochs, seed=seed)}
    rows = [dict(method=m, **{"lambda": center_weight if m == "center" else 0.0}, epochs=epochs, seed=seed,
                 train_acc=round(r["train_acc"], 2), test_acc=round(r["test_acc"], 2), dataset=dataset,
                 compactness=round(squared_compactness(r["test_features"], r["test_labels"]), 5))
            for m, r in results.items()]
    titles = {"ce": "softmax (cross-entropy) only",
              "center": f"cross-entropy + center loss (lambda={center_weight:g})"}
    png = plot_features(results, titles, out / "demo_features.png", seed=seed)
    csv = out / "demo_accuracy.csv"
    with atomic_path(csv) as tmp:
        pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(tmp, index=False)
    return dict(png=png, csv=csv, rows=rows, results=results)


__all__ = ["demo", "LeNetPP", "squared_compactness", "train_one", "load_data", "plot_features"]
