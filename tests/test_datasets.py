"""The other datasets' readers (data_prep/datasets/) on synthetic copies in each official layout
(data_prep/synthetic_layouts.py): carve and verify from a folder, its parent and the official
archives; agreement with torchvision's readers; class selection; FGVC-Aircraft's levels and
banner; every bad input as one line; prepare (make data) with and without a copy; the
benchmark YAMLs; a one-epoch tiny run per dataset (slow)."""

from __future__ import annotations

import ast
import csv
import dataclasses
import inspect
import io
import json
import shutil
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import data_prep.datasets as registry
from data_prep import prepare as prepare_mod
from data_prep import synthetic_layouts as S
from data_prep._cli import run
from data_prep.datasets import DATASETS, carve_dataset
from data_prep.datasets.spec import Download
from fgvc.data.manifest import WRITTEN_COLUMNS
from data_prep.verify import verify
from fgvc.errors import FGVCError

from conftest import ROOT
from tiny import TINY

OTHERS = ("aircraft", "cars", "flowers", "pets", "nabirds")
# (num_classes, num_train, num_test, class tokens, official names) of each synthetic copy, all classes
EXPECTED = {
    "aircraft": (5, 20, 10, ["737-200", "737-300", "A300B4", "F_A-18", "Cessna_172"],
                 ["737-200", "737-300", "A300B4", "F/A-18", "Cessna 172"]),
    "cars": (4, 16, 8, ["AM_General_Hummer_SUV_2000", "Acura_RL_Sedan_2012", "Ram_C_V_Cargo_Van_Minivan_2012",
                        "smart_fortwo_Convertible_2012"], list(S.CARS)),
    "flowers": (4, 16, 8, ["pink_primrose", "hard-leaved_pocket_orchid", "colt_s_foot", "passion_flower"],
                ["pink primrose", "hard-leaved pocket orchid", "colt's foot", "passion flower"]),
    "pets": (4, 16, 8, ["Abyssinian", "american_bulldog", "Bengal", "yorkshire_terrier"],
             ["Abyssinian", "american_bulldog", "Bengal", "yorkshire_terrier"]),
    "nabirds": (4, 16, 8, ["Song_Sparrow", "Chipping_Sparrow", "Red-tailed_Hawk_Adult", "Red-tailed_Hawk_Immature"],
                [name for _, name, _ in S.NABIRDS_LEAVES]),
}
SPLIT = {"aircraft": "trainval/test", "cars": "train/test", "flowers": "train+val/test", "pets": "trainval/test",
         "nabirds": "train/test"}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    """Each dataset's synthetic copy (read-only by convention: copy before damaging)."""
    base = tmp_path_factory.mktemp("layouts")
    return {name: getattr(S, f"make_{name}_tree")(base / name) for name in OTHERS}


@pytest.fixture(scope="module")
def archives(trees, tmp_path_factory) -> dict[str, Path]:
    """Each dataset's official archives (and loose files), in one folder per dataset."""
    base = tmp_path_factory.mktemp("archives")
    return {name: S.make_archives(tree, name, base / name) for name, tree in trees.items()}


def copy(tree: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / "src" / tree.name))


def manifest(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(FGVCError) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", OTHERS)
def test_carve_folder_parent_and_archives_agree(name, trees, archives, tmp_path):
    infos = {kind: carve_dataset(name, src, tmp_path / kind)
             for kind, src in (("folder", trees[name]), ("parent", trees[name].parent), ("archives", archives[name]))}
    k, n_train, n_test, tokens, official = EXPECTED[name]
    for kind, info in infos.items():
        out = tmp_path / kind
        assert (info["num_classes"], info["num_train"], info["num_test"]) == (k, n_train, n_test)
        assert info["classes"] == tokens and info["source_classes"] == official
        assert (info["dataset"], info["split"], info["selection"]) == (name, SPLIT[name], "all")
        assert json.loads((out / "dataset.json").read_text()) == info
        assert verify(out)[1] == []
        rows = manifest(out)
        assert tuple(rows[0]) == WRITTEN_COLUMNS
        assert all(r["source_class_id"] == r["cub_class_id"] for r in rows)
        assert [int(r["image_id"]) for r in rows] == sorted(int(r["image_id"]) for r in rows)
    assert {p.name for p in tmp_path.iterdir()} == set(infos)  # no temporary folder left beside them
    assert len({info["content_sha256"] for info in infos.values()}) == 1  # the same dataset, whatever the source
    assert infos["archives"]["archives_md5"] and "archives_md5" not in infos["folder"]


@pytest.mark.parametrize("name", ["aircraft", "nabirds"])
def test_single_archive_file_as_source(name, archives, trees, tmp_path):
    (archive,) = archives[name].glob("*.tar.gz")
    renamed = tmp_path / "renamed.tgz"
    shutil.copy(archive, renamed)
    info = carve_dataset(name, renamed, tmp_path / "out")
    assert info["source_md5"] == info["archives_md5"][archive.name]
    assert info["content_sha256"] == carve_dataset(name, trees[name], tmp_path / "ref")["content_sha256"]


def test_image_ids_follow_each_datasets_rule(trees, tmp_path):
    ids = {}
    for name in OTHERS:
        carve_dataset(name, trees[name], tmp_path / name)
        ids[name] = [int(r["image_id"]) for r in manifest(tmp_path / name)]
    aircraft_files = {p.stem for p in (trees["aircraft"] / "data" / "images").iterdir()}
    assert {f"{i:07d}" for i in ids["aircraft"]} == aircraft_files
    assert ids["cars"] == list(range(1, 17)) + list(range(10_001, 10_009))
    assert ids["flowers"] == list(range(1, 25)) and ids["pets"] == list(range(1, 25))
    assert ids["nabirds"] == list(range(1, 25))
    rows = manifest(tmp_path / "cars")
    assert rows[0]["path"].endswith("/train_00001.jpg") and rows[-1]["path"].endswith("/test_00008.jpg")


def test_aircraft_banner_cropped_and_levels(trees, tmp_path):
    info = carve_dataset("aircraft", trees["aircraft"], tmp_path / "variant")
    assert info["crop_bottom_px"] == S.BANNER and info["level"] == "variant"
    for row in manifest(tmp_path / "variant"):
        with Image.open(tmp_path / "variant" / row["path"]) as im:
            assert im.format == "JPEG" and im.size == (48, 40)
            bottom = np.asarray(im.convert("RGB"))[-3:].mean()
        assert bottom > 40  # the drawn image's background, not the black banner
    family = carve_dataset("aircraft", trees["aircraft"], tmp_path / "family", level="family")
    assert family["classes"] == ["Boeing_737", "A300", "F_A-18", "Cessna_172"] and family["level"] == "family"
    maker = carve_dataset("aircraft", trees["aircraft"], tmp_path / "maker", level="manufacturer")
    assert maker["source_classes"] == ["Boeing", "Airbus", "McDonnell Douglas", "Cessna"]
    assert maker["content_sha256"] != family["content_sha256"]
    msg = one_line_error(carve_dataset, "aircraft", trees["aircraft"], tmp_path / "bad", level="model")
    assert "--level 'model'" in msg and "variant, family, manufacturer" in msg
    assert "level 'species'" in one_line_error(carve_dataset, "cars", trees["cars"], tmp_path / "bad", level="species")
    assert "write 737-200*" in one_line_error(carve_dataset, "aircraft", trees["aircraft"], tmp_path / "bad", "737-200")


def test_flowers_keeps_the_official_val_ids(trees, tmp_path):
    from scipy.io import loadmat

    info = carve_dataset("flowers", trees["flowers"], tmp_path / "out")
    valid = sorted(loadmat(trees["flowers"] / "setid.mat", squeeze_me=True)["valid"].tolist())
    assert info["source_val_ids"] == valid
    train = {int(r["image_id"]) for r in manifest(tmp_path / "out") if r["is_train"] == "1"}
    assert set(valid) < train  # train + val is the training split


# ----------------------------------------------------------------------------- torchvision agrees


def _ours(out: Path) -> dict[tuple[str, int], str]:
    """{(source file name, is_train): official class name} from a carved folder."""
    info = json.loads((out / "dataset.json").read_text())
    official = dict(zip(info["class_ids"], info["source_classes"]))
    name = (lambda p: p.split("_", 1)[1]) if info["dataset"] == "cars" else (lambda p: p)  # train_00001.jpg
    return {(name(Path(r["path"]).name), int(r["is_train"])): official[int(r["source_class_id"])]
            for r in manifest(out)}


@pytest.mark.parametrize("name, level", [("aircraft", "variant"), ("aircraft", "family"), ("cars", "model")])
def test_same_labels_as_torchvision(name, level, trees, tmp_path):
    """torchvision's FGVCAircraft / StanfordCars read the same synthetic layout to the same labels:
    the synthetic files are in the format torchvision (and the real data) uses, and we read it alike."""
    from torchvision.datasets import FGVCAircraft, StanfordCars

    cls = FGVCAircraft if name == "aircraft" else StanfordCars
    if "loader" not in inspect.signature(cls).parameters:
        pytest.skip("this torchvision cannot list files without decoding them")
    carve_dataset(name, trees[name], tmp_path / "out", level=level)
    splits = (("trainval", 1), ("test", 0)) if name == "aircraft" else (("train", 1), ("test", 0))
    theirs = {}
    for split, is_train in splits:
        kw = {"annotation_level": level} if name == "aircraft" else {}
        ds = cls(trees[name].parent, split=split, loader=str, **kw)
        theirs.update({(Path(path).name, is_train): ds.classes[label] for path, label in (ds[i] for i in range(len(ds)))})
    assert theirs == _ours(tmp_path / "out")


def test_pets_same_labels_as_torchvision(trees, tmp_path):
    """torchvision's OxfordIIITPet lists no files, so its samples are matched to ours by pixels."""
    from torchvision.datasets import OxfordIIITPet

    carve_dataset("pets", trees["pets"], tmp_path / "out")
    ours = {}
    for r in manifest(tmp_path / "out"):
        with Image.open(tmp_path / "out" / r["path"]) as im:
            ours[np.asarray(im.convert("RGB")).tobytes()] = (int(r["source_class_id"]), r["class_name"], int(r["is_train"]))
    matched = 0
    for split, is_train in (("trainval", 1), ("test", 0)):
        ds = OxfordIIITPet(trees["pets"].parent, split=split)
        samples = [ds[i] for i in range(len(ds))]
        present = sorted({label for _, label in samples})  # its classes list holds the labels present, in order
        for image, label in samples:
            cid, name, flag = ours[np.asarray(image).tobytes()]
            assert (cid, name.replace("_", " ").title(), flag) == (label + 1, ds.classes[present.index(label)], is_train)
            matched += 1
    assert matched == len(ours)


# ----------------------------------------------------------------------------- selection


@pytest.mark.parametrize("name, spec, ids", [
    ("aircraft", "737-*,5", [1, 2, 5]),
    ("aircraft", "004.*", [4]),
    ("aircraft", "737-200*", [1]),  # a name that reads like an id range, written as a pattern
    ("cars", "*_2012", [2, 3, 4]),
    ("cars", "1", [1]),
    ("flowers", "colt*,1-2", [1, 2, 12]),
    ("pets", "[A-Z]*", [1, 6]),  # the cats: their names are capitalised
    ("pets", "2-37", [2, 6, 37]),
    ("nabirds", "sparrows", [295, 296]),
    ("nabirds", "Red-tailed_Hawk_*", [400, 401]),
])
def test_class_subsets_by_name_or_id(name, spec, ids, trees, tmp_path):
    info = carve_dataset(name, trees[name], tmp_path / "out", spec)
    assert info["class_ids"] == ids and info["selection"] == spec
    rows = manifest(tmp_path / "out")
    assert sorted({int(r["source_class_id"]) for r in rows}) == ids
    assert sorted({int(r["label"]) for r in rows}) == list(range(len(ids)))
    assert verify(tmp_path / "out")[1] == []


@pytest.mark.parametrize("name, file", [("aircraft", "variants.txt"), ("cars", "cars_meta.mat"),
                                        ("flowers", "imagelabels.mat"), ("pets", "trainval.txt"),
                                        ("nabirds", "classes.txt")])
def test_selection_matching_nothing_names_the_class_list(name, file, trees, tmp_path):
    msg = one_line_error(carve_dataset, name, trees[name], tmp_path / "out", "*_Warbler")
    assert "--classes '*_Warbler' matches no class in" in msg and file in msg
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- bad input


MISSING = {"aircraft": "data/images_variant_test.txt", "cars": "cars_test_annos_withlabels.mat",
           "flowers": "setid.mat", "pets": "annotations/test.txt", "nabirds": "train_test_split.txt"}


@pytest.mark.parametrize("name", OTHERS)
def test_missing_split_file(name, trees, tmp_path):
    src = copy(trees[name], tmp_path)
    (src / MISSING[name]).unlink()
    out = tmp_path / "out"
    out.mkdir()
    msg = one_line_error(carve_dataset, name, src, out / "ds")
    assert Path(MISSING[name]).name in msg and "missing" in msg
    assert list(out.iterdir()) == []


def test_missing_parts_named_at_once(trees, tmp_path):
    src = copy(trees["cars"], tmp_path)
    shutil.rmtree(src / "cars_test")
    (src / "cars_test_annos_withlabels.mat").unlink()
    msg = one_line_error(carve_dataset, "cars", src, tmp_path / "out")
    assert "missing cars_test (or its archive cars_test.tgz), cars_test_annos_withlabels.mat" in msg
    assert "no public download" in msg and "fetch" in msg


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _unknown_class(name: str, src: Path) -> str:
    """Damage `src` so that one image names a class that is not defined; return the file named in the error."""
    from scipy.io import loadmat, savemat

    if name == "aircraft":
        rel = "data/images_variant_trainval.txt"
        _edit(src / rel, " 737-200\n", " Concorde\n")
        return "'Concorde' is not in"
    if name == "cars":
        mat = loadmat(src / "devkit" / "cars_train_annos.mat")
        mat["annotations"][0, 0]["class"] = np.array([[99]], dtype=np.uint16)
        savemat(src / "devkit" / "cars_train_annos.mat", {"annotations": mat["annotations"]})
        return "has class 99, but"
    if name == "flowers":
        labels = loadmat(src / "imagelabels.mat")["labels"]
        labels[0, 3] = 103
        savemat(src / "imagelabels.mat", {"labels": labels})
        return "image 4 has label 103"
    if name == "pets":
        _edit(src / "annotations" / "test.txt", "Abyssinian_", "Persian_")
        return "class 1 holds both"
    first = (src / "image_class_labels.txt").read_text().splitlines()[0].split()[0]
    _edit(src / "image_class_labels.txt", f"{first} 295", f"{first} 2")  # an inner node of the taxonomy
    return "has class '2', which is not a leaf class"


@pytest.mark.parametrize("name", OTHERS)
def test_unknown_class_in_the_metadata(name, trees, tmp_path):
    src = copy(trees[name], tmp_path)
    expected = _unknown_class(name, src)
    msg = one_line_error(carve_dataset, name, src, tmp_path / "out")
    assert expected in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", OTHERS)
def test_truncated_image(name, trees, tmp_path):
    src = copy(trees[name], tmp_path)
    victim = sorted(p for p in src.rglob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    out = tmp_path / "out"
    out.mkdir()
    msg = one_line_error(carve_dataset, name, src, out / "ds")
    assert victim.name in msg and "does not decode" in msg
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["nabirds", "pets"])
def test_listed_image_absent(name, trees, tmp_path):
    src = copy(trees[name], tmp_path)
    victim = sorted(src.rglob("*.jpg"))[-1]
    victim.unlink()
    msg = one_line_error(carve_dataset, name, src, tmp_path / "out")
    assert f"{victim} (id " in msg and "is listed in" in msg and "but absent" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["aircraft", "pets"])
def test_truncated_or_corrupt_archive(name, archives, tmp_path):
    src = Path(shutil.copytree(archives[name], tmp_path / "src"))
    archive = sorted(src.glob("*.tar.gz"))[0]
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    msg = one_line_error(carve_dataset, name, src, tmp_path / "out")
    assert archive.name in msg and "truncated, corrupt or not a tar archive" in msg and "download it again" in msg
    assert list(tmp_path.iterdir()) == [src]


def test_archive_member_escaping_is_refused(archives, tmp_path):
    evil = tmp_path / "fgvc-aircraft-2013b.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("fgvc-aircraft-2013b/data/../../../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    msg = one_line_error(carve_dataset, "aircraft", evil, tmp_path / "out")
    assert "would escape" in msg and "refusing" in msg
    assert not list(tmp_path.rglob("evil.txt"))


def test_cars_test_labels_inside_devkit_and_the_unlabelled_file(trees, tmp_path):
    src = copy(trees["cars"], tmp_path)
    (src / "cars_test_annos_withlabels.mat").rename(src / "devkit" / "cars_test_annos_withlabels.mat")
    assert carve_dataset("cars", src, tmp_path / "ok")["num_test"] == 8  # copies that keep it in devkit/
    shutil.copy(src / "devkit" / "cars_test_annos.mat", src / "devkit" / "cars_test_annos_withlabels.mat")
    msg = one_line_error(carve_dataset, "cars", src, tmp_path / "bad")
    assert "not 'fname' and 'class'" in msg and "cars_test_annos_withlabels.mat" in msg


def test_not_a_mat_file(trees, tmp_path):
    src = copy(trees["flowers"], tmp_path)
    (src / "imagelabels.mat").write_bytes(b"<html>404 Not Found</html>")
    msg = one_line_error(carve_dataset, "flowers", src, tmp_path / "out")
    assert "imagelabels.mat cannot be read as a MATLAB file" in msg


def test_unknown_dataset_and_missing_source(tmp_path):
    assert "use one of cub, aircraft, cars, flowers, pets, nabirds" in one_line_error(
        carve_dataset, "imagenet", tmp_path, tmp_path / "out")
    msg = one_line_error(carve_dataset, "pets", tmp_path / "nowhere", tmp_path / "out")
    assert "nowhere does not exist" in msg and "images.tar.gz" in msg


# ----------------------------------------------------------------------------- prepare (make data)


@pytest.mark.parametrize("name", OTHERS)
def test_prepare_cli_from_a_local_copy_then_reuse(name, trees, tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["--dataset", name, "--out", str(out), "--source", str(trees[name])]
    assert run(prepare_mod.main, argv) == 0
    assert "verified" in capsys.readouterr().out
    assert run(prepare_mod.main, argv) == 0
    assert "already prepared" in capsys.readouterr().out
    other = "pets" if name != "pets" else "cars"
    assert run(prepare_mod.main, ["--dataset", other, "--out", str(out), "--source", str(trees[other])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"holds dataset {name!r}, not {other!r}" in err


def test_prepare_cli_bad_source_is_one_line_exit_2(tmp_path, capsys):
    assert run(prepare_mod.main, ["--dataset", "nabirds", "--out", str(tmp_path / "ds"),
                                  "--source", str(tmp_path / "nabirds.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: source ") and err.count("\n") == 1 and "nabirds.tar.gz does not exist" in err


@pytest.mark.parametrize("name", ["aircraft", "flowers", "pets"])
def test_prepare_downloads_every_official_file(name, archives, tmp_path, monkeypatch):
    calls = []

    def fake_download(url, dest, md5, **kw):
        calls.append((url, md5))
        target = Path(dest) / Path(url).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(archives[name] / target.name, target)
        return target

    monkeypatch.setattr(prepare_mod, "download", fake_download)
    assert run(prepare_mod.main, ["--dataset", name, "--out", str(tmp_path / "ds"), "--dest", str(tmp_path / "dl")]) == 0
    assert calls == [(d.url, d.md5) for d in DATASETS[name].downloads]
    assert sorted(p.name for p in (tmp_path / "dl" / "sources" / name).iterdir()) == \
        sorted(d.name for d in DATASETS[name].downloads)
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["num_classes"] == EXPECTED[name][0]


@pytest.mark.parametrize("name", ["cars", "nabirds"])
def test_prepare_without_copy_names_the_files_to_fetch(name, tmp_path, capsys):
    assert run(prepare_mod.main, ["--dataset", name, "--out", str(tmp_path / "ds"), "--dest", str(tmp_path / "dl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no public download" in err and f"DATASET={name} SOURCE=" in err
    wanted = ["car_devkit.tgz", "cars_train.tgz", "cars_test.tgz", "cars_test_annos_withlabels.mat"] \
        if name == "cars" else ["nabirds.tar.gz", "dl.allaboutbirds.org"]
    assert all(w in err for w in wanted)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["aircraft", "flowers", "pets"])
def test_prepare_offline_names_what_to_fetch(name, tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connecting is refused at once
    spec = DATASETS[name]
    local = tuple(Download(f"http://127.0.0.1:{port}/{d.name}", d.md5) for d in spec.downloads)
    monkeypatch.setitem(registry.DATASETS, name, dataclasses.replace(spec, downloads=local))
    assert run(prepare_mod.main, ["--dataset", name, "--out", str(tmp_path / "ds"), "--dest", str(tmp_path / "dl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach") and err.count("\n") == 1
    assert all(d.name in err for d in spec.downloads) and f"make data DATASET={name} SOURCE=" in err
    assert not (tmp_path / "ds").exists()


def test_preflight_suggests_source_for_other_datasets(tmp_path, monkeypatch, capsys):
    from data_prep.preflight import main as preflight_main

    monkeypatch.setattr(prepare_mod, "reachable", lambda url: False)
    assert run(preflight_main, ["--data", str(tmp_path / "d"), "--dataset", "aircraft", "--bench",
                                "benchmarks/aircraft-lite0.yaml", "--weights", str(ROOT / "pyproject.toml"),
                                "--typed", "DATASET=aircraft"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data: no dataset in" in err and "www.robots.ox.ac.uk is unreachable" in err
    assert err.endswith("run: make benchmark DATASET=aircraft SOURCE=/path/to/fgvc-aircraft-2013b.tar.gz")
    assert run(preflight_main, ["--data", str(tmp_path / "d"), "--dataset", "cars", "--bench",
                                "benchmarks/cars-lite0.yaml", "--weights", str(ROOT / "pyproject.toml")]) == 2
    assert "no public download" in capsys.readouterr().err


# ----------------------------------------------------------------------------- benchmarks, docs, layout


@pytest.mark.parametrize("name", OTHERS)
def test_benchmark_yaml_is_the_lite0_recipe(name):
    from fgvc.config import expand_grid, load_grid

    ref = yaml.safe_load((ROOT / "benchmarks" / "sparrows-lite0.yaml").read_text())
    grid = yaml.safe_load((ROOT / "benchmarks" / f"{name}-lite0.yaml").read_text())
    assert list(grid) == list(ref) and grid["name"] == f"{name}-lite0"
    assert {k: v for k, v in grid.items() if k != "name"} == {k: v for k, v in ref.items() if k != "name"}
    assert len(expand_grid(load_grid(ROOT / "benchmarks" / f"{name}-lite0.yaml"))) == 10


def test_docs_table_lists_every_dataset():
    text = (ROOT / "docs" / "datasets.md").read_text()
    for name, spec in DATASETS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, name
        assert spec.title in row
        if name != "cub":
            assert "not yet run on the real data here" in row


def _data_prep_modules() -> dict[str, Path]:
    mods = {}
    for path in sorted((ROOT / "data_prep").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def test_data_prep_layout_rules():
    """data_prep keeps the house rules fgvc's tests/test_layout.py checks: no import cycle (lazy
    imports included), no private name imported from another module, functions under 80 lines."""
    mods = _data_prep_modules()
    graph: dict[str, set[str]] = {}
    problems = []
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in mods:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names} & set(mods)
                problems += [f"{name} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names} & set(mods)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                problems.append(f"{name}.{node.name} is {node.end_lineno - node.lineno + 1} lines")
        graph[name] = deps - {name, "data_prep"}
    assert not problems, problems
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for dep in sorted(graph[m]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(stack[stack.index(dep):] + [m, dep])
            if dep not in state:
                visit(dep, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


# ----------------------------------------------------------------------------- a tiny run on each


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_one_epoch_tiny_run(name, trees, tmp_path):
    from fgvc.grid.benchmark import run_benchmark
    from fgvc.config import RunOptions

    carve_dataset(name, trees[name], tmp_path / "ds")
    frame = run_benchmark(None, RunOptions(data=tmp_path / "ds", out=tmp_path / "out", progress=False),
                          dict(TINY, benchmark=f"tiny-{name}"), echo=lambda m: None)
    assert list(frame.status) == ["ok"]
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    predictions = (run_dir / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + EXPECTED[name][2]
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["dataset_content_sha256"] == json.loads((tmp_path / "ds" / "dataset.json").read_text())["content_sha256"]
