"""`fgvc visualize OUT`: UMAP and t-SNE of the saved last-conv features, CE and center
loss side by side, without retraining.

Each panel is fitted on its own run's features (an embedding has no meaningful shared
axes), with a fixed random_state so reruns give the same coordinates, which are saved
next to the PNG for checking and for users' own plots.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fgvc.errors import FGVCError
from fgvc.io import atomic_path, save_figure, tight_layout
from fgvc.engine.metrics import knn_accuracy, silhouette
from fgvc.report.figures import display_name
from fgvc.report.embedding_pick import pick_embeddings
from fgvc.report.load import CENTER_KEYS, GROUP_KEYS, canon, group_keys, load_runs
from fgvc.report.style import DOUBLE, class_style, styled
from fgvc.runs.read import class_names, read_feature_metrics, read_features, read_provenance

EMBEDDINGS = ("umap", "tsne")
SPLITS = ("test", "train")
TITLES = {"umap": "UMAP", "tsne": "t-SNE"}


def embed(name: str, x: np.ndarray) -> np.ndarray:
    """2-D coordinates of `x` (n, d) by UMAP or t-SNE, deterministic (random_state=0)."""
    n = len(x)
    if n < 5:
        raise FGVCError(f"only {n} feature vectors: too few for a {TITLES[name]} embedding (need at least 5)")
    if name == "umap":
        import umap

        with warnings.catch_warnings():
            # random_state forces a single thread; umap says so in a warning on every call
            warnings.simplefilter("ignore")
            return umap.UMAP(n_neighbors=min(15, n - 1), min_dist=0.1, random_state=0).fit_transform(x)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(30.0, (n - 1) / 3)  # must stay below n
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=0)
    # Once numba (umap) is loaded, sklearn's OpenMP threads in t-SNE can crawl (20x slower
    # measured on 2 busy cores); one thread takes ~2 s for 615 images, so limit it here only.
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(x)


def _matches(runs: pd.DataFrame, key: str, value: str) -> pd.Series:
    """String compare (canonical for numeric keys); center-only keys leave CE rows in."""
    want = canon(value) if key in GROUP_KEYS or key == "seed" else str(value).strip()
    hit = runs[key].astype(str) == want
    if key in CENTER_KEYS:
        hit |= runs.method == "ce"
    return hit


def select_runs(runs: pd.DataFrame, seed: int, where: dict[str, str] | None, source: Path) -> list[pd.Series]:
    """The CE run and the auxiliary-loss run (CE first) of `seed` after `where`; ambiguity is an error."""
    ok = runs[runs.status == "ok"]
    sel = ok[ok.seed == canon(seed)]
    for key, value in (where or {}).items():
        if key not in runs.columns:
            cols = ", ".join(c for c in runs.columns if c != "run_dir")
            raise FGVCError(f"--where {key}={value}: {source} has no column {key!r}; columns: {cols}")
        sel = sel[_matches(sel, key, value)]
    cond = "".join(f", {k}={v}" for k, v in (where or {}).items())
    if not len(sel):
        seeds = sorted(set(ok.seed), key=lambda s: (len(s), s))
        raise FGVCError(f"no successful run with seed={seed}{cond} in {source}; seeds with ok runs: "
                        f"{', '.join(seeds) or 'none'}")
    out = []
    aux = sorted(set(sel.method) - {"ce"})
    if len(aux) > 1:
        raise FGVCError(f"runs of several auxiliary losses match seed={seed}{cond} ({', '.join(aux)}); "
                        f"pick one with --where method={aux[0]}")
    for method in ("ce", *aux):
        cand = sel[sel.method == method]
        if len(cand) > 1:
            keys = [k for k in group_keys(runs) if cand[k].nunique() > 1]
            hint = f"--where {keys[0]}={cand.iloc[0][keys[0]]}" if keys else "--where run_id=<run>"
            raise FGVCError(f"{len(cand)} {method} runs match seed={seed}{cond}: {', '.join(cand.run_id)}; "
                            f"pick one with {hint} (they differ in {', '.join(keys) or 'run_id'})")
        if len(cand):
            out.append(cand.iloc[0])
    return out


def _panel_title(r: pd.Series, split: str) -> str:
    if r.method != "ce":
        update = f" ({r.center_update})" if r.method == "center" else ""
        method = f"CE + {r.method.replace('_', '-')}, λ={r.center_weight}{update}"
    else:
        method = "CE"
    return f"{r.model} · {method}\nseed {r.seed} · {split} split"


def visualize(out_dir: Path, *, seed: int | None = None, split: str = "test", embeddings: Sequence[str] = EMBEDDINGS,
              where: dict[str, str] | None = None, figures_dir: Path | None = None) -> list[Path]:
    """Write `figures/<embedding>_<split>_s<seed>.png` (+ `.csv` coordinates) per embedding;
    with `where`, the filter is appended to the file name. Without a seed or a filter the
    runs are picked as the report picks them (fgvc.report.embedding_pick), one figure per
    compared pair. Returns the PNG paths."""
    out_dir = Path(out_dir)
    embeddings = check_choices(split, embeddings)
    runs = load_runs(out_dir)
    if seed is None and not where:
        picks, missing = pick_embeddings(runs)
        if not picks:
            raise FGVCError(f"{out_dir}: nothing to draw: " + ("; ".join(missing) or "no successful run"))
        return [p for pick in picks for p in draw_embeddings(pick.runs, split, embeddings, out_dir, figures_dir,
                                                             f"{split}_s{pick.seed}{pick.suffix}")]
    seed = 0 if seed is None else seed
    chosen = select_runs(runs, seed, where, out_dir / "runs.csv")
    return draw_embeddings(chosen, split, embeddings, out_dir, figures_dir, f"{split}_s{seed}{_where_suffix(where)}")


def draw_embeddings(chosen: list[pd.Series], split: str, embeddings: Sequence[str], out_dir: Path,
                    figures_dir: Path | None, stem: str) -> list[Path]:
    """One figure per embedding, `<embedding>_<stem>.png`, a panel per run of `chosen`."""
    data = [_split_features(r, split) for r in chosen]
    k = max(int(d[2].max()) + 1 for d in data)
    names = class_names([Path(r.run_dir) for r in chosen], k)
    fig_dir = Path(figures_dir) if figures_dir is not None else Path(out_dir) / "figures"
    return [_embedding_figure(emb, data, names, split, fig_dir, f"{emb}_{stem}") for emb in embeddings]


def check_choices(split: str, embeddings: Sequence[str]) -> list[str]:
    """The embeddings asked for, normalised; an unknown split or embedding is an error."""
    if split not in SPLITS:
        raise FGVCError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    embeddings = [e.strip().lower() for e in embeddings]
    bad = [e for e in embeddings if e not in EMBEDDINGS]
    if bad or not embeddings:
        raise FGVCError(f"unknown embedding {', '.join(bad) or '(none)'}: choose from {', '.join(EMBEDDINGS)}")
    return embeddings


def _split_features(r: pd.Series, split: str) -> tuple[pd.Series, np.ndarray, np.ndarray, np.ndarray, dict]:
    """(run, features, labels, image ids, numbers) of one split of a run's features.npz;
    numbers: `panel_numbers` of the split."""
    feats = read_features(Path(r.run_dir))
    need = (f"{split}_features", f"{split}_labels")
    if feats is None or any(k not in feats for k in need):
        raise FGVCError(f"{Path(r.run_dir) / 'features.npz'}: missing or without {', '.join(need)}; "
                        "rerun the run (fgvc benchmark skips finished runs, so delete its folder first)")
    ids = feats.get(f"{split}_ids", np.arange(len(feats[f"{split}_labels"])))
    return (r, feats[f"{split}_features"], np.asarray(feats[f"{split}_labels"]), np.asarray(ids),
            _recorded_numbers(Path(r.run_dir), split) or panel_numbers(feats, split))


def _recorded_numbers(run_dir: Path, split: str) -> dict[str, float] | None:
    """The test split's panel numbers from feature_metrics.json (computed at the end of the
    run on its full features), so a committed copy whose features.npz was reduced to fewer
    dimensions (tools/lean_results.py) still shows the numbers of the features themselves."""
    recorded = read_feature_metrics(run_dir)
    if split != "test" or recorded is None:
        return None
    return {"silhouette_cosine": recorded["silhouette_cosine"], "knn5_acc": recorded["knn5_acc"]}


def panel_numbers(feats: dict, split: str) -> dict[str, float]:
    """What an embedding panel should show in numbers, measured on the features themselves
    (not on the 2-D map): the cosine silhouette of the split by class and, for the test
    split, 5-NN top-1 (%) of the test features against the train features (cosine), as in
    the report's compactness table."""
    x, y = feats[f"{split}_features"].astype(np.float32), np.asarray(feats[f"{split}_labels"])
    out = {"silhouette_cosine": silhouette(x, y, "cosine")}
    if split == "test" and "train_features" in feats and "train_labels" in feats:
        out["knn5_acc"] = knn_accuracy(feats["train_features"].astype(np.float32), np.asarray(feats["train_labels"]),
                                       x, y, 5)
    return out


def _numbers_text(numbers: dict[str, float], xy: np.ndarray, y: np.ndarray) -> str:
    """The numbers under a panel: k-NN and silhouette of the features, and the silhouette of the 2-D map."""
    first = [f"5-NN top-1 {numbers['knn5_acc']:.1f}% (features vs train, cosine)"] if "knn5_acc" in numbers else []
    return "\n".join(first + [f"silhouette {numbers['silhouette_cosine']:.3f} (features, cosine) · "
                               f"{silhouette(xy, y):.3f} (this 2-D map)"])


def _where_suffix(where: dict[str, str] | None) -> str:
    """`_key-value` per filter, for the file name; other characters than letters, digits
    and `_ . = -` become `-`."""
    suffix = "".join(f"_{k}-{v}" for k, v in (where or {}).items())
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", suffix)


@styled
def _embedding_figure(emb: str, data: list[tuple], names: list[str], split: str, fig_dir: Path, stem: str) -> Path:
    """One figure of embedding `emb`, a panel per run of `data` (from `_split_features`),
    written to fig_dir/<stem>.png with the coordinates in <stem>.csv (`write_coordinates`); returns the PNG's path."""
    from matplotlib.figure import Figure

    style = class_style(len(names))
    n_images = len(data[0][2])
    side = (DOUBLE - 1.6) / len(data)
    fig = Figure(figsize=(DOUBLE, side + 1.6))
    axes = np.atleast_1d(fig.subplots(1, len(data)))
    coords = [_scatter(ax, emb, d, style, split, size=14 if n_images < 300 else 7) for ax, d in zip(axes, data)]
    _class_legend(fig, names, style, sorted(set(np.concatenate([d[2] for d in data]).tolist())))
    fig.suptitle(f"{TITLES[emb]} of final-epoch pooled last-conv features ({split}, {n_images} images, "
                 f"each panel fitted on its own)\nweights {data[0][0].weights}; data {_data_label(data[0][0])}")
    tight_layout(fig)  # texts as written, not mathtext
    png = save_figure(fig, fig_dir / f"{stem}.png")
    write_coordinates(coords, fig_dir / f"{stem}.csv")
    return png


def write_coordinates(panels: list[pd.DataFrame], path: Path) -> None:
    """A figure's coordinates (`run_id,image_id,label,x,y` per panel) as one row per image, two
    columns per panel (`x_<run_id>`, `y_<run_id>`), three decimals (far below a point of the
    figure): the panels embed the same images, so naming each run once, not on every row, keeps
    the file a quarter of the size, and committed results stay small."""
    wide = pd.concat([c.set_index(["image_id", "label"])[["x", "y"]].add_suffix(f"_{c.run_id.iloc[0]}")
                      for c in panels], axis=1, sort=False)
    with atomic_path(path) as tmp:
        wide.reset_index().to_csv(tmp, index=False, float_format="%.3f")


def _scatter(ax, emb: str, run_data: tuple, style: tuple[list, list[str]], split: str, size: float) -> pd.DataFrame:
    """Embed one run's features and draw them on `ax`, coloured and shaped by class
    (`style` from `class_style`); returns the coordinates."""
    r, x, y, ids, numbers = run_data
    colors, markers = style
    xy = embed(emb, x)
    for c in range(len(colors)):
        m = y == c
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=size, color=colors[c], marker=markers[c], alpha=0.85, linewidths=0)
    ax.set_title(_panel_title(r, split))
    ax.grid(False)
    ax.set_xlabel(f"{TITLES[emb]} 1\n\n{_numbers_text(numbers, xy, y)}")
    ax.set_ylabel(f"{TITLES[emb]} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    return pd.DataFrame({"run_id": r.run_id, "image_id": ids, "label": y, "x": xy[:, 0], "y": xy[:, 1]})


def _class_legend(fig, names: list[str], style: tuple[list, list[str]], present: list[int]) -> None:
    """A legend of the classes present, to the right of the panels."""
    from matplotlib.lines import Line2D

    colors, markers = style
    handles = [Line2D([], [], marker=markers[c], ls="", color=colors[c], label=display_name(names[c]))
               for c in present]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), title="class",
               ncol=1 if len(handles) <= 25 else 2, markerscale=1.2)


def _data_label(r: pd.Series) -> str:
    """The run's data folder, for the figure title (its content hash is in the report's
    provenance, not in a title)."""
    prov = read_provenance(Path(r.run_dir))
    return Path(str(prov["dataset"])).name if prov.get("dataset") else "unknown"


__all__ = ["visualize", "draw_embeddings", "check_choices", "embed", "select_runs", "write_coordinates", "EMBEDDINGS",
           "SPLITS"]
