"""The *flips* figure: which test images a method gets right that CE gets wrong, and the
reverse, for one seed pair, shown as the photos themselves with the true and both predicted
class names. Statistics say how many images flip; this shows which.

It needs the dataset the runs were trained on (`fgvc report --data`, default the prepared
folder `make data` writes); a folder whose dataset.json records another content checksum than
the runs did is not used, and the report says why no figure was drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fgvc.io import save_figure, tight_layout
from fgvc.report.figures import short_names
from fgvc.report.inputs import Inputs
from fgvc.report.markdown import image
from fgvc.report.paired import pairs_of
from fgvc.report.panels import Panel
from fgvc.report.stats import sort_key
from fgvc.report.style import BETTER, DOUBLE, WORSE, styled

PER_ROW = 8  # images shown per direction
THUMB_PX = 160  # thumbnails are made this small before drawing: the figure stays small


def dataset_for(data: Path | None, runs_sha: set[str]) -> tuple[Path | None, str]:
    """(the dataset folder to draw images from, or None; why not)."""
    if data is None or not (Path(data) / "manifest.csv").is_file():
        return None, f"no dataset at {data} (`fgvc report --data DIR` names the one the runs used)"
    try:
        sha = json.loads((Path(data) / "dataset.json").read_text()).get("content_sha256")
    except (OSError, ValueError):
        sha = None
    if not runs_sha:
        return None, "the runs recorded no dataset checksum to check a dataset folder against"
    if sha not in runs_sha:
        return None, f"the dataset at {data} is not the one the runs were trained on (content checksum differs)"
    return Path(data), ""


def flipped(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images b gets right and a wrong, images a gets right and b wrong), each with
    image_id, label, pred_a, pred_b, in image_id order."""
    m = a[["image_id", "label", "pred"]].merge(b[["image_id", "pred"]], on="image_id", suffixes=("_a", "_b"))
    m = m.sort_values("image_id", kind="stable")
    right_a, right_b = m.pred_a == m.label, m.pred_b == m.label
    return m[right_b & ~right_a], m[right_a & ~right_b]


def flips_section(x: Inputs, data: Path | None) -> list[str]:
    """One flips figure per CE/method pair, at the first seed both runs have predictions for."""
    pairs = [p for p in pairs_of(x) if p.paired is not None and p.paired.n]
    if not pairs:
        return []
    shas = {str(x.prov.by_run.get(r, {}).get("dataset_content_sha256") or "") for r in x.ok.run_id} - {""}
    folder, why = dataset_for(data, shas)
    lines = ["## Flips: which images change", ""]
    if folder is None:
        return lines + [f"Not drawn: {why}.", ""]
    manifest = pd.read_csv(folder / "manifest.csv").set_index("image_id")
    for p in pairs:
        lines += _pair_flips(x, p, folder, manifest)
    return lines


def _pair_flips(x: Inputs, p: Panel, folder: Path, manifest: pd.DataFrame) -> list[str]:
    ce, other = p.groups
    runs = [g.runs.set_index("seed").run_id for g in (ce, other)]
    seed = next((s for s in sorted(p.seeds, key=sort_key)
                 if x.preds.get(runs[0][s]) is not None and x.preds.get(runs[1][s]) is not None), None)
    if seed is None:
        return []
    both = flipped(x.preds[runs[0][seed]], x.preds[runs[1][seed]])
    gained, lost = (f[f.image_id.isin(manifest.index)] for f in both)
    path = flips_figure(folder, manifest, x.names, (gained, lost), (ce.label, other.label), seed,
                        x.fig_dir / f"flips_{p.slug}.png")
    return [f"### {other.label} vs {ce.label}, seed {seed}", "",
            image(f"flips {p.slug}", path, x.out_dir), "",
            f"*Figure: of the {len(gained) + len(lost)} test images only one of the two runs of seed {seed} gets "
            f"right, {len(gained)} are right only with {other.label} (top row, the first {PER_ROW} by image id) and "
            f"{len(lost)} only with {ce.label} (bottom row). Over each photo: its true class and, after ✗, the "
            "wrong run's prediction.*", ""]


@styled
def flips_figure(folder: Path, manifest: pd.DataFrame, names: Sequence[str], rows: tuple[pd.DataFrame, pd.DataFrame],
                 labels: tuple[str, str], seed: str, path: Path) -> Path:
    """Two rows of photos: right only with labels[1] (top), right only with labels[0] (bottom)."""
    from matplotlib.figure import Figure

    short, _ = short_names(names)
    fig = Figure(figsize=(DOUBLE, 3.3))
    axes = fig.subplots(2, PER_ROW, squeeze=False)
    heads = (f"right only with {labels[1]}\n({len(rows[0])}); ✗: CE's guess",
             f"right only with {labels[0]}\n({len(rows[1])}); ✗: the other's")
    for r, (frame, head, color, wrong) in enumerate(zip(rows, heads, (BETTER, WORSE), ("pred_a", "pred_b"))):
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if c >= len(frame):
                continue
            img = frame.iloc[c]
            ax.imshow(_thumbnail(folder / manifest.loc[img.image_id, "path"]))
            ax.set_title(f"{short[img.label]}\n✗ {short[img[wrong]]}", fontsize=6, color=color)
        axes[r][0].text(-0.08, 0.5, head, transform=axes[r][0].transAxes, rotation=90, va="center", ha="right",
                        fontsize=6.5, color=color)
    fig.suptitle(f"Test images only one run of seed {seed} gets right (true class; ✗ the wrong run's guess)")
    tight_layout(fig)  # texts as written, not mathtext
    return save_figure(fig, path)


def _thumbnail(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((THUMB_PX, THUMB_PX))
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        return np.asarray(im.crop((left, top, left + side, top + side)))


__all__ = ["flips_section", "flipped", "flips_figure", "dataset_for", "PER_ROW"]
