"""Make a results folder lean enough to commit and to send to a GPU machine.

    python tools/lean_results.py results/confirm-lite0-cpu [--keep-seeds 5] [--dims 64]

For every finished run that still has its full features.npz:
- feature_metrics.json is written from it first, where the run has none (runs made before
  every run wrote it at its end): the compactness numbers and feature norms of the FULL
  features, exactly what the report computed from this file;
- then features.npz is dropped, except for the runs of the seeds the folder's UMAP / t-SNE
  figures draw (default: the seeds in figures/umap_*_s<seed>.png and tsne_*; where no figure
  names a seed yet it stops, so run `fgvc report` first or pass --keep-seeds): theirs is
  reduced to the first `--dims` principal components (PCA fitted on the run's train features,
  applied to train and test) in float16, as t-SNE / UMAP practice does before embedding, and
  feature_metrics.json records `features_npz: "pca<dims>-float16"`.

`fgvc report` reads the numbers from feature_metrics.json; `fgvc visualize` draws from the
reduced features and shows the recorded numbers under each panel. The coordinate CSVs beside
the folder's UMAP / t-SNE figures that older reports wrote a row per run and image (`run_id`
repeated on every row, 7 decimals) are rewritten as current reports write them (a row per image,
`x_<run_id>,y_<run_id>` per panel, 3 decimals: a quarter of the size). Idempotent: a run whose
features are already reduced (or gone), and a CSV already in the current form, are left as
they are.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fgvc.engine.metrics import feature_metrics  # noqa: E402
from fgvc.io import atomic_path, atomic_write_json  # noqa: E402
from fgvc.report.visualize import EMBEDDINGS, write_coordinates  # noqa: E402
from fgvc.runs.read import FEATURE_METRICS, read_config, read_feature_metrics  # noqa: E402

REDUCED_KEY = "features_npz"  # feature_metrics.json: how features.npz was reduced


def drawn_seeds(out: Path) -> set[str]:
    """The seeds whose features the folder's embedding figures draw."""
    found = set()
    for p in (out / "figures").glob("*.png"):
        m = re.match(r"^(umap|tsne)_\w+?_s(\d+)", p.stem)
        if m:
            found.add(m.group(2))
    return found


def reduce(feats: dict, dims: int) -> dict:
    """features.npz's arrays with the features projected on the first `dims` principal
    components of the train features (float16); labels and ids unchanged."""
    from sklearn.decomposition import PCA

    train = feats["train_features"].astype(np.float32)
    pca = PCA(n_components=min(dims, *train.shape), svd_solver="full").fit(train)
    out = dict(feats)
    for split in ("train", "test"):
        out[f"{split}_features"] = pca.transform(feats[f"{split}_features"].astype(np.float32)).astype(np.float16)
    return out


def full_features(run_dir: Path) -> bool:
    """Whether the run still has its features.npz as training wrote it (not reduced, not dropped)."""
    return (run_dir / "features.npz").is_file() and not (read_feature_metrics(run_dir) or {}).get(REDUCED_KEY)


def lean_run(run_dir: Path, keep: bool, dims: int) -> str:
    npz = run_dir / "features.npz"
    if not full_features(run_dir):
        return "left as it is"
    metrics = read_feature_metrics(run_dir)
    with np.load(npz, allow_pickle=False) as z:
        feats = {k: z[k] for k in z.files}
    if metrics is None:
        metrics = feature_metrics(feats)
    if keep:
        reduced = reduce(feats, dims)
        with atomic_path(npz) as tmp:
            np.savez_compressed(tmp, **reduced)
        metrics = {**metrics, REDUCED_KEY: f"pca{reduced['test_features'].shape[1]}-float16"}
    atomic_write_json(run_dir / FEATURE_METRICS, metrics)
    if not keep:
        npz.unlink()
    return f"reduced to {metrics[REDUCED_KEY]}" if keep else "features.npz dropped (numbers kept)"


def compact_coordinates(out: Path) -> list[Path]:
    """Rewrite the embedding figures' coordinate CSVs still in the old long form (a `run_id`
    column) in the current one; returns the files rewritten."""
    import pandas as pd

    done = []
    for csv in sorted((out / "figures").glob("*.csv")) if (out / "figures").is_dir() else []:
        if csv.stem.split("_", 1)[0] not in EMBEDDINGS or not (csv.with_suffix(".png")).is_file():
            continue
        old = pd.read_csv(csv)
        if "run_id" not in old.columns:
            continue
        write_coordinates([g for _, g in old.groupby("run_id", sort=False)], csv)
        done.append(csv)
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="results folder (holds runs/)")
    ap.add_argument("--keep-seeds", default=None, help="comma-separated seeds whose features are kept, reduced "
                                                          "(default: those the folder's UMAP / t-SNE figures draw)")
    ap.add_argument("--dims", type=int, default=64, help="principal components kept (default 64)")
    args = ap.parse_args(argv)
    keep = set(args.keep_seeds.split(",")) if args.keep_seeds is not None else drawn_seeds(args.out)
    ended = [d for d in sorted((args.out / "runs").iterdir()) if (d / "row.json").is_file()]
    if args.keep_seeds is None and not keep and any(full_features(d) for d in ended):
        print(f"lean_results: no UMAP / t-SNE figure in {args.out / 'figures'} names a seed, so every features.npz "
              f"would be dropped: run `fgvc report {args.out}` first (it draws them), or pass --keep-seeds "
              f"(e.g. --keep-seeds 5; --keep-seeds '' keeps none)", file=sys.stderr)
        return 2
    for run_dir in ended:
        seed = str(read_config(run_dir).get("seed", ""))
        print(f"{run_dir.name}: {lean_run(run_dir, seed in keep, args.dims)}")
    for csv in compact_coordinates(args.out):
        print(f"{csv.relative_to(args.out)}: coordinates rewritten, a row per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
