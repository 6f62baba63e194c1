"""The synthetic CUB tree: official layout, ids and ordering, determinism, and learnable images."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
from PIL import Image

from data_prep.synthetic import CLASSES, SIZE, make_cub_tgz, make_cub_tree


def _table(path):
    return [line.split(" ", 1) for line in path.read_text().splitlines()]


def test_layout_ids_and_official_ordering(cub_tree):
    assert cub_tree.name == "CUB_200_2011"
    classes = _table(cub_tree / "classes.txt")
    assert [(int(i), f) for i, f in classes] == [(cid, f"{cid:03d}.{name}") for cid, name in CLASSES]
    sparrows = [cid for cid, name in CLASSES if name.endswith("_Sparrow")]
    assert len(sparrows) == 4 and all(113 <= c <= 133 for c in sparrows)
    assert len(CLASSES) - len(sparrows) >= 2

    images = _table(cub_tree / "images.txt")
    labels = dict(_table(cub_tree / "image_class_labels.txt"))
    split = dict(_table(cub_tree / "train_test_split.txt"))
    ids = [int(i) for i, _ in images]
    assert ids == list(range(1, len(images) + 1))  # 1-based, consecutive
    assert len(images) == len(CLASSES) * 10
    # Official ordering: class folder, then the numeric photo id at the end of the file name.
    key = [(rel.split("/")[0], int(rel.rsplit("_", 1)[1].removesuffix(".jpg"))) for _, rel in images]
    assert key == sorted(key)
    by_name = sorted(rel for _, rel in images)
    assert by_name != [rel for _, rel in images]  # file-name order differs: sorting by name is a bug
    for i, rel in images:
        folder, fname = rel.split("/")
        cid, name = folder.split(".", 1)
        assert labels[i] == str(int(cid))
        assert fname.startswith(name + "_") and fname.endswith(".jpg")
        assert (cub_tree / "images" / rel).is_file()
    for cid, name in CLASSES:
        rows = [i for i, rel in images if rel.startswith(f"{cid:03d}.")]
        assert sum(split[i] == "1" for i in rows) == 6 and sum(split[i] == "0" for i in rows) == 4


def test_images_are_small_nonsquare_jpegs(cub_tree):
    rel = _table(cub_tree / "images.txt")[0][1]
    with Image.open(cub_tree / "images" / rel) as im:
        assert im.format == "JPEG" and im.size == SIZE and SIZE[0] != SIZE[1] and im.mode == "RGB"


def test_deterministic_from_seed(tmp_path):
    a = make_cub_tree(tmp_path / "a", train_per_class=2, test_per_class=1, seed=3)
    b = make_cub_tree(tmp_path / "b", train_per_class=2, test_per_class=1, seed=3)
    c = make_cub_tree(tmp_path / "c", train_per_class=2, test_per_class=1, seed=4)

    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    assert len(_table(a / "images.txt")) == len(CLASSES) * 3
    assert make_cub_tgz(a, tmp_path / "a.tgz").read_bytes() == make_cub_tgz(b, tmp_path / "b.tgz").read_bytes()


def test_tgz_members_like_the_official_archive(cub_tree, cub_tgz, tmp_path):
    with tarfile.open(cub_tgz, "r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        files = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
    assert all(n == "attributes.txt" or n == "CUB_200_2011" or n.startswith("CUB_200_2011/") for n in names)
    assert not any(m.issym() or m.islnk() for m in members)
    on_disk = {f"CUB_200_2011/{p.relative_to(cub_tree).as_posix()}": p.read_bytes()
               for p in cub_tree.rglob("*") if p.is_file()}
    assert {k: v for k, v in files.items() if k != "attributes.txt"} == on_disk
    # default order: images before metadata (the hard case for a one-pass reader)
    assert names.index("CUB_200_2011/images.txt") > max(i for i, n in enumerate(names) if n.endswith(".jpg"))
    first = make_cub_tgz(cub_tree, tmp_path / "m.tgz", metadata_first=True)
    with tarfile.open(first, "r:gz") as tar:
        names = tar.getnames()
    assert names.index("CUB_200_2011/images.txt") < min(i for i, n in enumerate(names) if n.endswith(".jpg"))


def test_images_are_learnable(cub_tree):
    """A nearest-centroid classifier on raw pixels separates train from test: the classes carry signal."""
    images = dict(_table(cub_tree / "images.txt"))
    labels = dict(_table(cub_tree / "image_class_labels.txt"))
    split = dict(_table(cub_tree / "train_test_split.txt"))

    def load(i):
        with Image.open(cub_tree / "images" / images[i]) as im:
            return np.asarray(im, dtype=np.float32).ravel()

    train = [i for i in images if split[i] == "1"]
    test = [i for i in images if split[i] == "0"]
    cls = sorted(set(labels.values()))
    centroids = np.stack([np.mean([load(i) for i in train if labels[i] == c], axis=0) for c in cls])
    pred = [cls[int(np.argmin(((centroids - load(i)) ** 2).sum(1)))] for i in test]
    acc = np.mean([p == labels[i] for p, i in zip(pred, test)])
    assert acc >= 0.9
    # the shape matters too, not only the colour: the grey-level images still differ by class
    gray = {c: np.mean([np.asarray(Image.open(io.BytesIO((cub_tree / "images" / images[i]).read_bytes())).convert("L"),
                                   dtype=np.float32) for i in train if labels[i] == c], axis=0) for c in cls}
    g = [(v - v.mean()) / v.std() for v in gray.values()]
    assert max(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for k, a in enumerate(g) for b in g[k + 1:]) < 0.9
