"""data_prep.verify: a sound dataset passes; every kind of damage is reported, all at once."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import verify as verify_mod
from data_prep._cli import run
from data_prep.verify import verify

from conftest import ROOT


@pytest.fixture
def ds(sparrow_dataset, tmp_path) -> Path:
    """A private copy of the carved synthetic sparrows, free to damage."""
    return Path(shutil.copytree(sparrow_dataset, tmp_path / "ds"))


def rows(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def write_rows(folder: Path, data: list[dict]) -> None:
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(data[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(data)


def test_sound_dataset_passes(sparrow_dataset):
    summary, problems = verify(sparrow_dataset)
    assert problems == []
    assert (summary["num_classes"], summary["num_train"], summary["num_test"]) == (4, 24, 16)
    h = hashlib.sha256((sparrow_dataset / "manifest.csv").read_bytes())
    for r in rows(sparrow_dataset):
        h.update((sparrow_dataset / r["path"]).read_bytes())
    assert summary["content_sha256"] == h.hexdigest()


def test_cli_ok_prints_summary(sparrow_dataset, capsys):
    assert run(verify_mod.main, [str(sparrow_dataset)]) == 0
    out = capsys.readouterr().out
    assert "4 classes, 24 train, 16 test" in out and "OK" in out


def test_missing_image(ds):
    victim = rows(ds)[3]["path"]
    (ds / victim).unlink()
    _, problems = verify(ds)
    assert any(victim in p and "missing" in p for p in problems)


def test_unlisted_file(ds):
    extra = ds / "images" / "113.Baird_Sparrow" / "stray.jpg"
    shutil.copy(ds / rows(ds)[0]["path"], extra)
    _, problems = verify(ds)
    assert problems == [f"{extra} is not listed in manifest.csv"]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_undecodable_image(ds, damage):
    victim = ds / rows(ds)[5]["path"]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a jpeg" * 20)
    _, problems = verify(ds)
    assert any(str(victim) in p and "does not decode" in p for p in problems)
    assert any("content_sha256" in p for p in problems)  # the bytes changed, so the identity does too


def test_changed_image_bytes_change_identity(ds):
    from PIL import Image

    victim = ds / rows(ds)[0]["path"]
    with Image.open(victim) as im:
        im.save(victim, format="JPEG", quality=50)  # still decodes, different bytes
    _, problems = verify(ds)
    assert len(problems) == 1 and "content_sha256" in problems[0]


def test_labels_out_of_range_and_inconsistent(ds):
    data = rows(ds)
    data[0]["label"] = "7"  # out of 0..3
    data[-1]["label"] = "0"  # a White_throated_Sparrow image labelled as class 0 (Baird)
    write_rows(ds, data)
    _, problems = verify(ds)
    text = "\n".join(problems)
    assert "expected 0..4" in text or "expected 0..3" in text
    assert "label 0 maps to several cub_class_id values" in text
    assert "label 0 maps to several class_name values" in text


def test_counts_and_classes_against_dataset_json(ds):
    info = json.loads((ds / "dataset.json").read_text())
    info["num_train"] += 1
    info["classes"][0] = "Song_Sparrow"
    (ds / "dataset.json").write_text(json.dumps(info))
    _, problems = verify(ds)
    assert any(p.startswith("dataset.json: num_train is 25") for p in problems)
    assert any(p.startswith("dataset.json: classes") for p in problems)


def test_bad_rows(ds):
    data = rows(ds)
    data[1]["is_train"] = "2"
    data[2]["image_id"] = "x"
    data[3]["path"] = "../outside.jpg"
    data[4], data[5] = data[5], data[4]
    write_rows(ds, data)
    _, problems = verify(ds)
    text = "\n".join(problems)
    for needle in ("is_train '2' is not 0 or 1", "image_id 'x' is not an integer", "'../outside.jpg' is not relative",
                   "not sorted by image_id", "is not listed in manifest.csv"):
        assert needle in text


def test_every_problem_listed_and_cli_exit_1(ds, capsys):
    r = rows(ds)
    (ds / r[0]["path"]).unlink()
    (ds / r[1]["path"]).write_bytes(b"broken")
    (ds / "dataset.json").unlink()
    assert run(verify_mod.main, [str(ds)]) == 1
    out = capsys.readouterr().out
    assert r[0]["path"] in out and r[1]["path"] in out and "dataset.json is missing" in out
    assert "3 problem(s)" in out


def test_not_a_dataset(tmp_path, capsys):
    _, problems = verify(tmp_path / "nope")
    assert problems and "data_prep.carve" in problems[0]
    (tmp_path / "empty").mkdir()
    _, problems = verify(tmp_path / "empty")
    assert "manifest.csv is missing" in problems[0]
    (tmp_path / "empty" / "manifest.csv").write_text("a,b\n1,2\n")
    _, problems = verify(tmp_path / "empty")
    assert any("lacks columns" in p for p in problems) and any("dataset.json is missing" in p for p in problems)


def test_cli_module_runs(sparrow_dataset):
    r = subprocess.run([sys.executable, "-m", "data_prep.verify", str(sparrow_dataset)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "4 classes, 24 train, 16 test" in r.stdout


@pytest.mark.slow
@pytest.mark.real_data
def test_real_dataset_verifies(real_cub, tmp_path, capsys):
    from data_prep.carve import carve

    carve(real_cub, tmp_path / "cub_sparrows")
    assert run(verify_mod.main, [str(tmp_path / "cub_sparrows")]) == 0
    assert "21 classes, 629 train, 615 test" in capsys.readouterr().out
