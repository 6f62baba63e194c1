"""The flips figure (issue 28): the test images one method gets right and the other wrong,
for one seed pair, drawn from the dataset the runs used, and left out with a reason otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fgvc.report.flips import flipped
from fgvc.report.report import write_report
from report_fixtures import make_out


def test_flipped_splits_the_images_only_one_run_gets_right():
    a = pd.DataFrame({"image_id": [1, 2, 3, 4], "label": [0, 1, 2, 3], "pred": [0, 0, 2, 1]})
    b = pd.DataFrame({"image_id": [4, 3, 2, 1], "label": [3, 2, 1, 0], "pred": [3, 0, 1, 0]})
    gained, lost = flipped(a, b)
    assert list(gained.image_id) == [2, 4] and list(lost.image_id) == [3]
    assert list(gained.pred_a) == [0, 1] and list(lost.pred_b) == [0]


def _dataset(root: Path, out: Path) -> Path:
    """A dataset folder holding a small photo for every test image of `out`'s runs, with the
    content checksum the runs recorded."""
    prov = json.loads(next((out / "runs").glob("*/provenance.json")).read_text())
    sha = prov.get("dataset_content_sha256", "")
    preds = pd.read_csv(next((out / "runs").glob("*/predictions.csv")))
    (root / "images").mkdir(parents=True)
    rows = []
    for i, (image_id, label) in enumerate(zip(preds.image_id, preds.label)):
        path = f"images/{image_id}.jpg"
        Image.fromarray(np.full((40, 30, 3), 20 * (label + 1), np.uint8)).save(root / path)
        rows.append(dict(image_id=image_id, path=path, label=label, cub_class_id=label + 1, class_name=f"c{label}",
                         is_train=0))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "dataset.json").write_text(json.dumps({"content_sha256": sha}))
    return root


def test_report_draws_flips_from_the_dataset_or_says_why_not(tmp_path):
    out = make_out(tmp_path / "o", seeds=(0, 1), failed=False)
    md = write_report(out).read_text()
    assert "## Flips" in md and "Not drawn: no dataset at None" in md
    data = _dataset(tmp_path / "data", out)
    md = write_report(out, data=data).read_text()
    assert "![flips center-lam0.001_vs_ce](figures/flips_center-lam0.001_vs_ce.png)" in md
    assert (out / "figures" / "flips_center-lam0.001_vs_ce.png").stat().st_size > 0
    for prov in (out / "runs").glob("*/provenance.json"):  # runs that recorded another dataset
        prov.write_text(json.dumps(json.loads(prov.read_text()) | {"dataset_content_sha256": "f" * 64}))
    assert "is not the one the runs were trained on" in write_report(out, data=data).read_text()
