"""data_prep.carve (and data_prep.prepare): output contract, class selection, both source kinds,
and every bad input with a clear error and nothing left behind."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from data_prep import carve as carve_mod
from data_prep import prepare as prepare_mod
from data_prep._cli import run
from data_prep.carve import carve, content_sha256, parse_classes
from data_prep.synthetic import make_cub_tgz
from data_prep.verify import verify
from fgvc.errors import FGVCError

from conftest import ROOT


# ----------------------------------------------------------------------------- helpers


def _table(path: Path) -> dict[int, str]:
    return {int(a): b for a, b in (line.split(" ", 1) for line in path.read_text().splitlines() if line)}


def expected_manifest(tree: Path, class_ids: list[int]) -> list[dict]:
    """The manifest computed independently from the metadata files."""
    images, labels = _table(tree / "images.txt"), _table(tree / "image_class_labels.txt")
    split = _table(tree / "train_test_split.txt")
    order = sorted(class_ids)
    rows = []
    for i in sorted(images):
        cid = int(labels[i])
        if cid in order:
            rows.append({"image_id": str(i), "path": f"images/{images[i]}", "label": str(order.index(cid)),
                         "cub_class_id": str(cid), "class_name": images[i].split("/")[0].split(".", 1)[1],
                         "is_train": split[i], "source_class_id": str(cid)})
    return rows


def read_manifest(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def copy_tree(cub_tree: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cub_tree, tmp_path / "src" / "CUB_200_2011"))


def assert_nothing_left(parent: Path, before: set[str] | None = None) -> None:
    """No DIR, no temporary folder beside it: the parent holds exactly what it held before."""
    assert {p.name for p in parent.iterdir()} == (before or set())


def tgz_with(cub_tree: Path, path: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]],
             skip: set[str] = frozenset(), replace: dict[str, bytes] | None = None) -> Path:
    """A tgz of the tree (official member names) plus `extra` members, minus `skip`."""
    replace = replace or {}
    with tarfile.open(path, "w:gz") as tar:
        for p in sorted(cub_tree.rglob("*")):
            name = f"CUB_200_2011/{p.relative_to(cub_tree).as_posix()}"
            if name in skip or p.is_dir():
                continue
            data = replace.get(name, p.read_bytes())
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, data: bytes | None = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if data is not None and kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


# ----------------------------------------------------------------------------- contract


def test_folder_carve_matches_independent_manifest(cub_tree, tmp_path):
    out = tmp_path / "ds"
    info = carve(cub_tree, out)
    sparrows = [113, 118, 125, 133]
    assert read_manifest(out) == expected_manifest(cub_tree, sparrows)
    # the original columns first, in their order; extensions after them (never renamed)
    assert (out / "manifest.csv").read_text().splitlines()[0] == \
        "image_id,path,label,cub_class_id,class_name,is_train,source_class_id"
    for row in read_manifest(out):  # byte-for-byte copies
        assert (out / row["path"]).read_bytes() == (cub_tree / "images" / row["path"][len("images/"):]).read_bytes()
    assert sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.jpg")) == \
        sorted(r["path"] for r in read_manifest(out))

    h = hashlib.sha256((out / "manifest.csv").read_bytes())
    for row in read_manifest(out):
        h.update((out / row["path"]).read_bytes())
    on_disk = json.loads((out / "dataset.json").read_text())
    assert on_disk == info
    assert info["content_sha256"] == h.hexdigest() == content_sha256(out)
    assert info["source"] == str(cub_tree.resolve()) and info["source_md5"] is None
    assert (info["num_classes"], info["num_train"], info["num_test"]) == (4, 24, 16)
    assert info["classes"] == ["Baird_Sparrow", "House_Sparrow", "Lincoln_Sparrow", "White_throated_Sparrow"]
    assert info["class_ids"] == sparrows
    import fgvc

    assert info["tool_version"] == fgvc.__version__ and info["created"].endswith("+00:00")
    assert {p.name for p in tmp_path.iterdir()} == {"ds"}  # no temporary folder left beside it
    assert verify(out)[1] == []


@pytest.mark.parametrize("metadata_first", [False, True])
def test_tgz_carve_equals_folder_carve(cub_tree, cub_tgz, tmp_path, metadata_first):
    tgz = make_cub_tgz(cub_tree, tmp_path / "m.tgz") if not metadata_first else \
        make_cub_tgz(cub_tree, tmp_path / "m.tgz", metadata_first=True)
    a = carve(cub_tree, tmp_path / "a")
    b = carve(tgz, tmp_path / "b")
    assert (tmp_path / "a" / "manifest.csv").read_bytes() == (tmp_path / "b" / "manifest.csv").read_bytes()
    assert a["content_sha256"] == b["content_sha256"]
    assert b["source_md5"] == hashlib.md5(tgz.read_bytes()).hexdigest()
    # only the selected classes' images were written
    assert sorted(p.name for p in (tmp_path / "b" / "images").iterdir()) == \
        ["113.Baird_Sparrow", "118.House_Sparrow", "125.Lincoln_Sparrow", "133.White_throated_Sparrow"]


def test_archive_reader_is_one_streaming_pass(cub_tgz, tmp_path, monkeypatch):
    """The archive is opened once, as a stream (no seeking back)."""
    opened = []
    real_open = tarfile.open

    def spy(*args, **kwargs):
        opened.append(kwargs.get("mode", args[1] if len(args) > 1 else "r"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(carve_mod.tarfile, "open", spy)
    carve(cub_tgz, tmp_path / "ds")
    assert opened == ["r|"]


@pytest.mark.parametrize("spec, ids", [
    ("sparrows", [113, 118, 125, 133]),
    ("*_Sparrow", [113, 118, 125, 133]),
    ("all", [1, 113, 118, 125, 133, 200]),
    ("113-118,1", [1, 113, 118]),
    ("200", [200]),
    ("Common_*,001.*", [1, 200]),
    ("sparrows,1-5", [1, 113, 118, 125, 133]),
])
def test_class_selection(cub_tree, cub_tgz, tmp_path, spec, ids):
    info = carve(cub_tree, tmp_path / "f", spec)
    assert info["class_ids"] == ids
    assert read_manifest(tmp_path / "f") == expected_manifest(cub_tree, ids)
    assert carve(cub_tgz, tmp_path / "t", spec)["content_sha256"] == info["content_sha256"]


@pytest.mark.parametrize("spec", ["", " , ", "5-3", "0", "bad name!", "1-x"])
def test_bad_class_spec(spec):
    with pytest.raises(FGVCError, match="--classes"):
        parse_classes(spec)


def _complete_classes(tree: Path, fake_sparrow: bool = False) -> None:
    """Rewrite classes.txt with all 200 classes (the six real ones keep their names)."""
    real = {int(i): f for i, f in (line.split(" ", 1) for line in (tree / "classes.txt").read_text().splitlines())}
    lines = []
    for cid in range(1, 201):
        name = real.get(cid) or (f"{cid:03d}.Bird{cid}_Sparrow" if 113 <= cid <= 133 else f"{cid:03d}.Bird{cid}")
        if fake_sparrow and cid == 50:
            name = "050.Fake_Sparrow"
        lines.append(f"{cid} {name}\n")
    (tree / "classes.txt").write_text("".join(lines))


def test_sparrows_on_complete_class_list_is_113_133(cub_tree, tmp_path, capsys):
    tree = copy_tree(cub_tree, tmp_path)
    _complete_classes(tree)
    info = carve(tree, tmp_path / "ok")
    assert info["class_ids"] == [113, 118, 125, 133]  # the other 17 have no images here
    assert "17 selected classes have no images" in capsys.readouterr().out

    _complete_classes(tree, fake_sparrow=True)
    with pytest.raises(FGVCError, match="expected 113-133"):
        carve(tree, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_existing_dir(cub_tree, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    carve(cub_tree, out)  # an existing empty folder is fine
    (out / "keep.txt").write_text("mine")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(FGVCError, match=r"not empty; pass --force"):
        carve(cub_tree, out, "all")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert {p.name for p in tmp_path.iterdir()} == {"ds"}
    info = carve(cub_tree, out, "all", force=True)
    assert info["num_classes"] == 6 and not (out / "keep.txt").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"ds"}


def test_output_is_readable_by_others(cub_tree, tmp_path):
    out = tmp_path / "ds"
    carve(cub_tree, out)
    assert out.stat().st_mode & 0o055  # not the private 0700 of a temporary folder


def test_partial_folder_with_parent_given(cub_tree, tmp_path):
    """The folder containing CUB_200_2011/ is accepted too."""
    info = carve(cub_tree.parent, tmp_path / "ds")
    assert info["num_classes"] == 4


# ----------------------------------------------------------------------------- bad input


def test_missing_source(tmp_path):
    with pytest.raises(FGVCError, match=r"nowhere\.tgz does not exist.*CUB_200_2011"):
        carve(tmp_path / "nowhere.tgz", tmp_path / "out" / "ds")
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("name", ["images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt"])
def test_folder_without_metadata_file(cub_tree, tmp_path, name):
    tree = copy_tree(cub_tree, tmp_path)
    (tree / name).unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FGVCError, match=f"has no {name}"):
        carve(tree, out / "ds")
    assert_nothing_left(out)


@pytest.mark.parametrize("name", ["images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt"])
def test_archive_without_metadata_file(cub_tree, tmp_path, name):
    tgz = tgz_with(cub_tree, tmp_path / "a.tgz", [], skip={f"CUB_200_2011/{name}"})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FGVCError, match=f"has no {name}"):
        carve(tgz, out / "ds")
    assert_nothing_left(out)


def _first_sparrow_image(tree: Path) -> str:
    return next(rel for rel in _table(tree / "images.txt").values() if rel.startswith("118."))


def test_listed_image_absent_folder(cub_tree, tmp_path):
    tree = copy_tree(cub_tree, tmp_path)
    rel = _first_sparrow_image(tree)
    (tree / "images" / rel).unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FGVCError, match=rf"{rel.split('/')[1]}.*listed in images.txt but absent"):
        carve(tree, out / "ds")
    assert_nothing_left(out)


def test_listed_image_absent_archive(cub_tree, tmp_path):
    rel = _first_sparrow_image(cub_tree)
    tgz = tgz_with(cub_tree, tmp_path / "a.tgz", [], skip={f"CUB_200_2011/images/{rel}"})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FGVCError, match=rf"{rel}.*listed in images.txt but absent from archive"):
        carve(tgz, out / "ds")
    assert_nothing_left(out)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_undecodable_image(cub_tree, tmp_path, damage, kind):
    rel = _first_sparrow_image(cub_tree)
    good = (cub_tree / "images" / rel).read_bytes()
    bad = good[: len(good) // 2] if damage == "truncated" else b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50
    if kind == "folder":
        source = copy_tree(cub_tree, tmp_path)
        (source / "images" / rel).write_bytes(bad)
    else:
        source = tgz_with(cub_tree, tmp_path / "a.tgz", [], replace={f"CUB_200_2011/images/{rel}": bad})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FGVCError, match=rf"{rel.split('/')[1]} does not decode"):
        carve(source, out / "ds")
    assert_nothing_left(out)


@pytest.mark.parametrize("cut", ["half", "block", "corrupt", "not-gzip", "empty"])
def test_truncated_or_corrupt_archive(cub_tgz, tmp_path, cut):
    data = cub_tgz.read_bytes()
    if cut == "half":
        bad = data[: len(data) // 2]
    elif cut == "block":  # cut the gzip stream where tar sees a clean member boundary
        bad = data[:-20]
    elif cut == "corrupt":
        mid = len(data) // 2
        bad = data[:mid] + bytes(b ^ 0x5A for b in data[mid:mid + 64]) + data[mid + 64:]
    elif cut == "not-gzip":
        bad = b"this is not an archive\n" * 100
    else:
        bad = b""
    src = tmp_path / "CUB_200_2011.tgz"
    src.write_bytes(bad)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FGVCError, match=r"CUB_200_2011\.tgz is truncated or corrupt.*download it again"):
        carve(src, out / "ds")
    assert_nothing_left(out)


@pytest.mark.parametrize("evil, why", [
    (member("CUB_200_2011/images/118.House_Sparrow/../../../../evil.jpg"), "escape"),
    (member("../evil.jpg"), "escape"),
    (member("/tmp/fgvc_evil_abs.jpg"), "absolute"),
    (member("CUB_200_2011/images/118.House_Sparrow/link.jpg", kind=tarfile.SYMTYPE, link="/etc/passwd"), "link"),
    (member("CUB_200_2011/images/118.House_Sparrow/hard.jpg", kind=tarfile.LNKTYPE, link="../../etc/passwd"), "link"),
    (member("CUB_200_2011/images.txt", kind=tarfile.SYMTYPE, link="/etc/passwd"), "link"),
])
def test_archive_member_escaping_is_refused(cub_tree, tmp_path, evil, why):
    tgz = tgz_with(cub_tree, tmp_path / "a.tgz", [evil])
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    with pytest.raises(FGVCError, match=rf"member .*{why}.*refusing"):
        carve(tgz, out / "ds")
    assert_nothing_left(out)
    assert not list(tmp_path.rglob("evil.jpg")) and not Path("/tmp/fgvc_evil_abs.jpg").exists()


@pytest.mark.parametrize("spec", ["*_Warbler", "150-160", "999"])
@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_selection_matching_nothing(cub_tree, cub_tgz, tmp_path, spec, kind):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FGVCError, match=r"--classes .* matches no class"):
        carve(cub_tree if kind == "folder" else cub_tgz, out / "ds", spec)
    assert_nothing_left(out)


def test_interrupted_carve_leaves_nothing(cub_tree, tmp_path, monkeypatch):
    calls = []

    def boom(data, where):
        calls.append(where)
        if len(calls) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(carve_mod, "_check_decodes", boom)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        carve(cub_tree, out / "ds")
    assert_nothing_left(out)


def test_inconsistent_metadata(cub_tree, tmp_path):
    tree = copy_tree(cub_tree, tmp_path)
    lines = (tree / "image_class_labels.txt").read_text().splitlines()
    (tree / "image_class_labels.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(FGVCError, match=r"image_class_labels\.txt has no row for image 60"):
        carve(tree, tmp_path / "ds")
    (tree / "image_class_labels.txt").write_text("\n".join(lines[:-1] + ["60 118"]) + "\n")
    with pytest.raises(FGVCError, match=r"images\.txt: image 60 is in folder '200\.Common_Yellowthroat'"):
        carve(tree, tmp_path / "ds", "all")
    assert not (tmp_path / "ds").exists()


# ----------------------------------------------------------------------------- CLI


def test_cli_error_is_one_line_exit_2(tmp_path, capsys):
    rc = run(carve_mod.main, ["--source", str(tmp_path / "missing"), "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "missing" in err


def test_cli_module_runs(cub_tgz, tmp_path):
    out = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "data_prep.carve", "--source", str(cub_tgz), "--out", str(out),
                        "--classes", "sparrows,200"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "5 classes, 30 train, 20 test" in r.stdout
    r = subprocess.run([sys.executable, "-m", "data_prep.carve", "--source", str(cub_tgz), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "--force" in r.stderr


def test_cli_help_describes_defaults(capsys):
    with pytest.raises(SystemExit):
        carve_mod.main(["--help"])
    out = capsys.readouterr().out
    assert "Default: sparrows" in out and "--force" in out


# ----------------------------------------------------------------------------- prepare (make data)


def test_prepare_from_source_then_reuse(cub_tgz, tmp_path, capsys):
    out = tmp_path / "ds"
    assert run(prepare_mod.main, ["--out", str(out), "--source", str(cub_tgz)]) == 0
    text = capsys.readouterr().out
    assert "verified" in text and "4 classes, 24 train, 16 test" in text
    stamp = (out / "dataset.json").stat().st_mtime_ns
    assert run(prepare_mod.main, ["--out", str(out), "--source", str(cub_tgz)]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert (out / "dataset.json").stat().st_mtime_ns == stamp
    assert run(prepare_mod.main, ["--out", str(out), "--verify"]) == 0
    # asking for another selection in the same folder is an error, not a silent reuse
    assert run(prepare_mod.main, ["--out", str(out), "--classes", "all"]) == 2
    assert "--force" in capsys.readouterr().err


def test_prepare_without_source_downloads(cub_tgz, tmp_path, monkeypatch):
    calls = []

    def fake_download(url, dest, md5, **kw):
        calls.append((url, dest, md5))
        return cub_tgz

    monkeypatch.setattr(prepare_mod, "download", fake_download)
    assert run(prepare_mod.main, ["--out", str(tmp_path / "ds"), "--source", "", "--dest", str(tmp_path / "dl")]) == 0
    assert calls == [(prepare_mod.CUB_URL, tmp_path / "dl", prepare_mod.CUB_MD5)]
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["num_classes"] == 4


def test_prepare_offline_names_cub(tmp_path, monkeypatch, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(prepare_mod, "CUB_URL", f"http://127.0.0.1:{port}/CUB_200_2011.tgz")
    assert run(prepare_mod.main, ["--out", str(tmp_path / "ds"), "--source", "", "--dest", str(tmp_path / "dl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach") and "CUB=" in err
    assert list(tmp_path.iterdir()) == []


def test_prepare_refuses_incomplete_folder(tmp_path, cub_tgz, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "manifest.csv").write_text("image_id\n")
    assert run(prepare_mod.main, ["--out", str(out), "--source", str(cub_tgz)]) == 2
    assert "not a complete dataset" in capsys.readouterr().err
    assert run(prepare_mod.main, ["--out", str(out), "--source", str(cub_tgz), "--force"]) == 0


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.real_data
def test_real_sparrows(real_cub, tmp_path):
    out = tmp_path / "cub_sparrows"
    info = carve(real_cub, out)
    assert (info["num_classes"], info["num_train"], info["num_test"]) == (21, 629, 615)
    assert info["class_ids"] == list(range(113, 134))
    assert info["classes"] == [p.name.split(".", 1)[1] for p in sorted((real_cub / "images").iterdir())]
    assert read_manifest(out) == expected_manifest(real_cub, list(range(113, 134)))
    summary, problems = verify(out)
    assert problems == []
    assert (summary["num_classes"], summary["num_train"], summary["num_test"]) == (21, 629, 615)
