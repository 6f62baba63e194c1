"""The dataset folder, as every reader writes it: `images/<NNN.Class>/<file>`, `manifest.csv`
and `dataset.json` (the contract in DESIGN.md and fgvc/data/manifest.py).

Why one module: CUB's reader (data_prep/carve.py) and the other datasets' readers
(data_prep/datasets/) differ only in how they read their source; what they write, and how
it is checked on the way (every image decodes once, fully), must not differ.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

import fgvc
from fgvc.data.checksum import content_sha256, files_fingerprint
from fgvc.data.manifest import MANIFEST_COLUMNS, WRITTEN_COLUMNS
from fgvc.errors import FGVCError


@dataclass(frozen=True)
class Row:
    """One image of the dataset folder (one manifest.csv row)."""

    image_id: int
    rel: str  # `<NNN.Class_Name>/<file>`, relative to `images/`
    class_id: int  # the source's own class id (CUB: 1..200); written as cub_class_id and source_class_id
    class_name: str  # the class's token (data_prep.classes.class_token)
    is_train: int


@dataclass(frozen=True)
class Described:
    """What dataset.json says about where the rows came from, beside the counts."""

    source: Path
    source_md5: str | None
    selection: str
    dataset: str  # the registry name: cub, aircraft, cars, flowers, pets, nabirds
    level: str  # which labels: species, variant, family, manufacturer, model, breed, leaf
    split: str  # which official split is is_train: train/test, trainval/test, train+val/test
    extra: dict  # keys only this dataset writes (e.g. crop_bottom_px)


def check_out(out: Path, force: bool) -> None:
    """Refuse an output that is a file, or a non-empty folder without `force`, before any reading."""
    if out.exists():
        if not out.is_dir():
            raise FGVCError(f"output {out} exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not force:
            raise FGVCError(f"output folder {out} exists and is not empty; pass --force to replace it")


def check_decodes(data: bytes, where: str) -> None:
    """Decode fully once: a corrupt or truncated JPEG fails here, not in epoch 7 of a training run."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:  # PIL raises several types (OSError, SyntaxError, ValueError, ...)
        raise FGVCError(f"image {where} does not decode ({type(e).__name__}: {e}); the copy is corrupt or truncated") from None


def manifest_text(rows: list[Row], labels: dict[int, int], twin: bool = True) -> str:
    """manifest.csv's text, one row per image in `rows`' order: WRITTEN_COLUMNS, or without
    the source_class_id twin (`twin=False`: CUB, whose cub_class_id is its source id, keeps the
    six columns it always had, so a fresh carve has the content_sha256 committed runs record)."""
    columns = WRITTEN_COLUMNS if twin else MANIFEST_COLUMNS
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([r.image_id, f"images/{r.rel}", labels[r.class_id], r.class_id, r.class_name, r.is_train,
                    r.class_id][:len(columns)])
    return buf.getvalue()


def write_outputs(tmp: Path, rows: list[Row], classes: list[tuple[int, str, str]], about: Described) -> dict:
    """Write manifest.csv and dataset.json into `tmp` (its images/ already written); return
    dataset.json's dict. `classes`: (class id, token, official name) of the classes present,
    in class-id order: label k is the k-th."""
    labels = {cid: k for k, (cid, _, _) in enumerate(classes)}
    (tmp / "manifest.csv").write_text(manifest_text(rows, labels, twin=about.dataset != "cub"), encoding="utf-8")
    info = {
        "source": str(about.source.resolve()),
        "source_md5": about.source_md5,
        "content_sha256": content_sha256(tmp),
        "files_fingerprint": files_fingerprint(tmp),  # see fgvc/data/checksum.py
        "num_classes": len(classes),
        "num_train": sum(r.is_train for r in rows),
        "num_test": sum(1 - r.is_train for r in rows),
        "classes": [token for _, token, _ in classes],
        "class_ids": [cid for cid, _, _ in classes],
        "selection": about.selection,
        "tool_version": fgvc.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": about.dataset,
        "level": about.level,
        "split": about.split,
        "source_classes": [official for _, _, official in classes],
        **about.extra,
    }
    (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


__all__ = ["Row", "Described", "check_out", "check_decodes", "manifest_text", "write_outputs"]
