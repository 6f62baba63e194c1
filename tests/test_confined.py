"""Files stay inside their folders (issue 30, item 1): a manifest path, a grid name or a
runs.csv run_id that would lead out of its folder (dataset folder, `results/`, OUT/runs/) is
one error naming the row and the rule, before anything is read or any run starts, also
under --dry-run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fgvc.cli import main
from fgvc.config import RunConfig
from fgvc.data.dataset import load_dataset_info
from fgvc.errors import FGVCError
from fgvc.grid.benchmark import default_out
from report_fixtures import make_out
from tiny import TINY

ROOT = Path(__file__).resolve().parents[1]


def _dataset(src: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(src, data)
    return data


def _set_path(data: Path, row: int, path: str) -> str:
    """Give manifest row `row` (0-based) the path `path`; returns the one it had."""
    m = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    old = m.at[row, "path"]
    m.at[row, "path"] = path
    m.to_csv(data / "manifest.csv", index=False)
    return old


@pytest.mark.parametrize("path, rule", [("../../../etc/passwd", "climbs out with '..'"),
                                        ("/etc/passwd", "is an absolute path"),
                                        ("/dev/zero", "is an absolute path"),
                                        ("images/../../outside.jpg", "climbs out with '..'")])
def test_a_manifest_path_out_of_the_dataset_folder_is_refused(sparrow_dataset, tmp_path, path, rule):
    data = _dataset(sparrow_dataset, tmp_path)
    _set_path(data, 3, path)
    with pytest.raises(FGVCError) as e:
        load_dataset_info(data)
    msg = str(e.value)
    assert "\n" not in msg and f"row 5: path {path!r} {rule}" in msg and str(data) in msg


def test_links_out_of_the_dataset_folder_and_non_files_are_refused(sparrow_dataset, tmp_path):
    data = _dataset(sparrow_dataset, tmp_path)
    outside = tmp_path / "secret.jpg"
    first = _set_path(data, 0, "images/link.jpg")
    shutil.copy(data / first, outside)
    (data / "images" / "link.jpg").symlink_to(outside)  # a link to an image outside: read before, trained on
    (data / "images" / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    _set_path(data, 1, "images/elsewhere/secret.jpg")
    os.mkfifo(data / "images" / "pipe.jpg")
    _set_path(data, 2, "images/pipe.jpg")
    inside = data / "images" / "inside-link.jpg"  # a link that stays inside is fine
    third = _set_path(data, 4, "images/inside-link.jpg")
    inside.symlink_to(data / third)
    with pytest.raises(FGVCError) as e:
        load_dataset_info(data)
    msg = str(e.value)
    assert f"row 2: path 'images/link.jpg' leads out of the dataset folder (to {outside})" in msg
    assert "row 3: path 'images/elsewhere/secret.jpg' leads out of the dataset folder" in msg
    assert "row 4: path 'images/pipe.jpg' is not a regular file" in msg and "row 6" not in msg


def _grid(tmp_path: Path, **over) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(dict(TINY, **over)))
    return path


def test_dev_zero_in_the_manifest_stops_a_dry_run_at_once(sparrow_dataset, tmp_path):
    """It used to hang in the dataset checksum, even under --dry-run (hence a process with a timeout)."""
    data = _dataset(sparrow_dataset, tmp_path)
    _set_path(data, 0, "/dev/zero")
    (data / "images" / "zero.jpg").symlink_to("/dev/zero")
    _set_path(data, 1, "images/zero.jpg")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        r = subprocess.run([sys.executable, "-m", "fgvc", "benchmark", str(_grid(tmp_path)), "--data", str(data),
                            "--out", str(tmp_path / "out"), "--dry-run"], env=env, capture_output=True, text=True,
                           timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("fgvc benchmark --dry-run hangs on a manifest that lists /dev/zero")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "row 2: path '/dev/zero' is an absolute path" in r.stderr
    assert "row 3: path 'images/zero.jpg' leads out of the dataset folder (to /dev/zero)" in r.stderr


@pytest.mark.parametrize("name", ["../../escape", "/tmp/escape", "..", "a/../../b"])
def test_a_grid_name_cannot_put_the_default_output_folder_out_of_results(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(dict(TINY, benchmark=name)))
    code = main(["benchmark", str(tmp_path / "grid.yaml"), "--data", str(tmp_path / "nodata"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and f"grid name {name!r}" in err and "--out" in err and err.count("\n") == 1
    cfg = dict(TINY, method="ce", seed=0, benchmark=name)
    cfg.pop("methods"), cfg.pop("seeds")
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(cfg))
    code = main(["train", "--config", str(tmp_path / "one.yaml"), "--data", str(tmp_path / "nodata")])
    assert code == 2 and f"grid name {name!r}" in capsys.readouterr().err
    assert not (tmp_path.parent / "escape").exists() and not Path("/tmp/escape").exists()


def test_a_plain_grid_name_is_a_folder_of_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_out("sparrows-lite0") == Path("results") / "sparrows-lite0"
    assert default_out("cub/448") == Path("results") / "cub" / "448"
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "link").symlink_to(tmp_path)
    with pytest.raises(FGVCError, match="leads out of results through a link"):
        default_out("link/x")


def test_a_run_id_in_runs_csv_cannot_open_files_out_of_runs(tmp_path, capsys):
    out = make_out(tmp_path / "bench")
    shutil.rmtree(out / "runs")  # a runs.csv without its run folders is read as it is
    runs = pd.read_csv(out / "runs.csv")
    runs.loc[2, "run_id"] = "../../../../etc"
    runs.to_csv(out / "runs.csv", index=False)
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row 4: run_id '../../../../etc' is not a run id" in err


def test_every_run_id_fits_the_pattern():
    from fgvc.names import is_run_id

    ids = [RunConfig(model=m, method=meth, seed=s, center_weight=lam, label_smoothing=ls).run_id
           for m in ("resnet50.tv_in1k", "timm/vit_base_patch16_224.augreg_in21k", "test_resnet")
           for meth in ("ce", "center") for s in (0, -1, 12) for lam in (0.001, 1e-5, 10.0) for ls in (0.0, 0.1)]
    assert all(is_run_id(i) for i in ids), [i for i in ids if not is_run_id(i)]
    root = Path(__file__).resolve().parents[1] / "results"
    assert all(is_run_id(d.name) for d in root.glob("*/runs/*"))
    assert not any(is_run_id(x) for x in ("..", ".", ".hidden", "a/b", "", "../../../../etc", "a\\b", "x y"))
