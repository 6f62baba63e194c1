"""How many samples of a training batch have no other sample of their class in it: the
anchors that supervised contrastive and triplet losses cannot use (issue 27's measurement,
quoted in docs/losses.md).

    python tools/positives_per_batch.py --data data/cub_sparrows [--batch-size 32] [--val-fraction 0.2]

Uses fgvc's own batch order (fgvc.data.sampling.EpochSampler, seeds 0-4, 30 epochs each) on the
training split a run with that validation split trains on, and prints the share of anchors
without a positive and the mean number of positives per anchor, per batch and overall.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fgvc.data.dataset import load_dataset_info, stratified_val_split  # noqa: E402
from fgvc.data.sampling import EpochSampler  # noqa: E402


def measure(labels: np.ndarray, batch_size: int, seeds=range(5), epochs: int = 30) -> tuple[float, float]:
    """(share of anchors without a positive, mean positives per anchor) over full batches."""
    lonely, positives, anchors = 0, 0, 0
    for seed in seeds:
        sampler = EpochSampler(len(labels), seed)
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            order = np.array(list(sampler))
            for start in range(0, len(order) - batch_size + 1, batch_size):  # the loader drops a partial last batch
                y = labels[order[start:start + batch_size]]
                same = (y[:, None] == y[None, :]).sum(1) - 1
                lonely += int((same == 0).sum())
                positives += int(same.sum())
                anchors += len(y)
    return lonely / anchors, positives / anchors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/cub_sparrows"))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    args = ap.parse_args(argv)
    info = load_dataset_info(args.data)
    train = info.split(True)
    if args.val_fraction:
        train, _ = stratified_val_split(train, args.val_fraction, 0)
    share, mean = measure(train.label.to_numpy(), args.batch_size)
    print(f"{args.data}: {len(train)} training images, {info.num_classes} classes, batch {args.batch_size}: "
          f"{100 * share:.1f}% of anchors have no positive in their batch; {mean:.2f} positives per anchor on average")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
