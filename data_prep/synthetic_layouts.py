"""Tiny synthetic copies of FGVC-Aircraft, Stanford Cars, Flowers-102, Oxford-IIIT Pets and
NABirds in their exact official layouts, and their official archives, for tests.

Why: no real copy of these datasets can be downloaded here, yet the readers must be tested
on the real formats: the same file names and folders, text files written as the datasets
write them, .mat files written with scipy as MATLAB structs and cells (what scipy reads
back from the originals), real class names and ids. A few classes, a few small images each
(drawn as data_prep/synthetic.py draws CUB's: learnable in an epoch or two).
"""

from __future__ import annotations

import gzip
import tarfile
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.synthetic import SIZE, add_member, draw_class_image

TRAIN, TEST = 4, 2  # images per class in each split (Flowers: train, val and test each TEST)
# (variant, family, manufacturer): real names, including a '/' and spaces
AIRCRAFT = (("737-200", "Boeing 737", "Boeing"), ("737-300", "Boeing 737", "Boeing"),
            ("A300B4", "A300", "Airbus"), ("F/A-18", "F/A-18", "McDonnell Douglas"), ("Cessna 172", "Cessna 172", "Cessna"))
BANNER = 20  # FGVC-Aircraft's copyright banner, pixels
CARS = ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Ram C/V Cargo Van Minivan 2012", "smart fortwo Convertible 2012")
FLOWER_LABELS = (1, 2, 12, 77)  # pink primrose, hard-leaved pocket orchid, colt's foot, passion flower
PETS = ((1, "Abyssinian", 1, 1), (2, "american_bulldog", 2, 1), (6, "Bengal", 1, 2), (37, "yorkshire_terrier", 2, 25))
NABIRDS_INNER = ((0, "Birds", None), (1, "Perching Birds", 0), (2, "New World Sparrows", 1), (3, "Hawks, Kites, Eagles, and Allies", 0))
NABIRDS_LEAVES = ((295, "Song Sparrow", 2), (296, "Chipping Sparrow", 2), (400, "Red-tailed Hawk (Adult)", 3),
                  (401, "Red-tailed Hawk (Immature)", 3))


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=90)


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _splits(rng: np.random.Generator, n_train: int = TRAIN, n_test: int = TEST) -> list[int]:
    return rng.permutation([1] * n_train + [0] * n_test).tolist()


def make_aircraft_tree(dest: Path, seed: int = 0) -> Path:
    """`dest/fgvc-aircraft-2013b/data/...`: images with the 20-pixel banner, the three class
    lists, `images_<level>_<split>.txt` for train, val, trainval and test."""
    rng = np.random.default_rng(seed)
    data = Path(dest) / "fgvc-aircraft-2013b" / "data"
    split_of: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    numbers = rng.choice(np.arange(100_000, 3_000_000), size=len(AIRCRAFT) * (TRAIN + TEST), replace=False)
    for k, names in enumerate(AIRCRAFT):
        for j, is_train in enumerate(_splits(rng)):
            image = f"{numbers[k * (TRAIN + TEST) + j]:07d}"
            canvas = Image.new("RGB", (SIZE[0], SIZE[1] + BANNER), (0, 0, 0))
            canvas.paste(draw_class_image(k, rng), (0, 0))
            canvas.paste(Image.new("RGB", (SIZE[0] - 8, 6), (255, 255, 255)), (4, SIZE[1] + 7))  # the "copyright"
            _save(canvas, data / "images" / f"{image}.jpg")
            split_of["test" if not is_train else ("train" if j % 2 else "val")].append((image, k))
    split_of["trainval"] = sorted(split_of["train"] + split_of["val"])
    for level, column, fname in (("variant", 0, "variants.txt"), ("family", 1, "families.txt"),
                                 ("manufacturer", 2, "manufacturers.txt")):
        _lines(data / fname, list(dict.fromkeys(names[column] for names in AIRCRAFT)))
        for split, items in split_of.items():
            _lines(data / f"images_{level}_{split}.txt", [f"{i} {AIRCRAFT[k][column]}" for i, k in items])
    for split, items in split_of.items():
        _lines(data / f"images_{split}.txt", [i for i, _ in items])
    return data.parent


CAR_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


def _struct(records: list[tuple], fields: tuple[str, ...] = CAR_FIELDS) -> np.ndarray:
    """A 1xN MATLAB struct array of the Stanford Cars annotations: numbers as 1x1 arrays, fname a string."""
    out = np.empty((1, len(records)), dtype=[(f, "O") for f in fields])
    for i, rec in enumerate(records):
        out[0, i] = tuple(v if f == "fname" else np.array([[v]], dtype=np.uint16) for f, v in zip(fields, rec))
    return out


def make_cars_tree(dest: Path, seed: int = 0) -> Path:
    """`dest/stanford_cars/`: devkit/ (cars_meta.mat, cars_train_annos.mat, cars_test_annos.mat),
    cars_test_annos_withlabels.mat, cars_train/, cars_test/ (images numbered 00001.jpg, ...)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root = Path(dest) / "stanford_cars"
    (root / "devkit").mkdir(parents=True, exist_ok=True)
    order = rng.permutation([(k, t) for k in range(len(CARS)) for t in _splits(rng)])
    annos: dict[int, list[tuple]] = {1: [], 0: []}
    for k, is_train in order.tolist():
        fname = f"{len(annos[is_train]) + 1:05d}.jpg"
        _save(draw_class_image(k, rng), root / ("cars_train" if is_train else "cars_test") / fname)
        annos[is_train].append((2, 3, SIZE[0] - 2, SIZE[1] - 3, k + 1, fname))
    names = np.empty((1, len(CARS)), dtype=object)
    names[0, :] = CARS
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": _struct(annos[1])})
    no_class = tuple(f for f in CAR_FIELDS if f != "class")
    unlabelled = _struct([r[:4] + r[5:] for r in annos[0]], no_class)  # the devkit's test file: no labels
    savemat(root / "devkit" / "cars_test_annos.mat", {"annotations": unlabelled})
    savemat(root / "cars_test_annos_withlabels.mat", {"annotations": _struct(annos[0])})
    return root


def make_flowers_tree(dest: Path, seed: int = 0) -> Path:
    """`dest/flowers-102/`: jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat (trnid, valid, tstid)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root = Path(dest) / "flowers-102"
    order = rng.permutation([(k, s) for k in range(len(FLOWER_LABELS)) for s in (0, 1, 2) for _ in range(TEST)])
    labels, ids = [], {0: [], 1: [], 2: []}
    for n, (k, s) in enumerate(order.tolist(), 1):
        _save(draw_class_image(k, rng), root / "jpg" / f"image_{n:05d}.jpg")
        labels.append(FLOWER_LABELS[k])
        ids[s].append(n)
    savemat(root / "imagelabels.mat", {"labels": np.array([labels], dtype=np.float64)})
    savemat(root / "setid.mat", {key: np.array([ids[s]], dtype=np.uint16)
                                 for key, s in (("trnid", 0), ("valid", 1), ("tstid", 2))})
    return root


def make_pets_tree(dest: Path, seed: int = 0) -> Path:
    """`dest/oxford-iiit-pet/`: images/<Breed>_<n>.jpg (and a stray .mat, as in images.tar.gz),
    annotations/list.txt, trainval.txt, test.txt."""
    rng = np.random.default_rng(seed)
    root = Path(dest) / "oxford-iiit-pet"
    rows: dict[int, list[str]] = {1: [], 0: []}
    for k, (cid, breed, species, breed_id) in enumerate(PETS):
        for n, is_train in zip(rng.choice(np.arange(1, 200), size=TRAIN + TEST, replace=False), _splits(rng)):
            _save(draw_class_image(k, rng), root / "images" / f"{breed}_{n}.jpg")
            rows[is_train].append(f"{breed}_{n} {cid} {species} {breed_id}")
    (root / "images" / "Abyssinian_999.mat").write_bytes(b"MATLAB 5.0 MAT-file, not an image\n")
    header = ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids", "#SPECIES: 1:Cat 2:Dog",
              "#BREED ID: 1-25:Cat 1:12:Dog", "#All images with 1st letter as captial are cat images",
              "#images with small first letter are dog images"]
    _lines(root / "annotations" / "list.txt", header + sorted(rows[1] + rows[0]))
    _lines(root / "annotations" / "trainval.txt", sorted(rows[1]))
    _lines(root / "annotations" / "test.txt", sorted(rows[0]))
    return root


def make_nabirds_tree(dest: Path, seed: int = 0) -> Path:
    """`dest/nabirds/`: images/<class>/<uuid hex>.jpg and the five tables (uuids as image ids)."""
    rng = np.random.default_rng(seed)
    root = Path(dest) / "nabirds"
    images, labels, split = [], [], []
    for k, (cid, _, _) in enumerate(NABIRDS_LEAVES):
        for is_train in _splits(rng):
            image = uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | int(rng.integers(0, 2**62)), version=4)
            rel = f"{cid:04d}/{image.hex}.jpg"
            _save(draw_class_image(k, rng), root / "images" / rel)
            images.append(f"{image} {rel}")
            labels.append(f"{image} {cid}")
            split.append(f"{image} {is_train}")
    _lines(root / "images.txt", images)
    _lines(root / "image_class_labels.txt", labels)
    _lines(root / "train_test_split.txt", split)
    _lines(root / "classes.txt", [f"{cid} {name}" for cid, name, _ in NABIRDS_INNER + NABIRDS_LEAVES])
    _lines(root / "hierarchy.txt", [f"{cid} {parent}" for cid, _, parent in NABIRDS_INNER + NABIRDS_LEAVES
                                    if parent is not None])
    return root


def tar_folder(folder: Path, tgz: Path, arcname: str) -> Path:
    """Gzip tar of `folder` with members under `arcname/`, deterministic, as the official archives."""
    tgz.parent.mkdir(parents=True, exist_ok=True)
    with open(tgz, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            add_member(tar, arcname, None)
            for p in sorted(folder.rglob("*")):
                add_member(tar, f"{arcname}/{p.relative_to(folder).as_posix()}", None if p.is_dir() else p.read_bytes())
    return tgz


ARCHIVES = {  # dataset -> (archive name, folder of the tree it holds, its name in the archive)
    "aircraft": (("fgvc-aircraft-2013b.tar.gz", ".", "fgvc-aircraft-2013b"),),
    "cars": (("car_devkit.tgz", "devkit", "devkit"), ("cars_train.tgz", "cars_train", "cars_train"),
             ("cars_test.tgz", "cars_test", "cars_test")),
    "flowers": (("102flowers.tgz", "jpg", "jpg"),),
    "pets": (("images.tar.gz", "images", "images"), ("annotations.tar.gz", "annotations", "annotations")),
    "nabirds": (("nabirds.tar.gz", ".", "nabirds"),),
}
LOOSE_FILES = {"cars": ("cars_test_annos_withlabels.mat",), "flowers": ("imagelabels.mat", "setid.mat")}


def make_archives(tree: Path, dataset: str, dest: Path) -> Path:
    """`dest/` holding the official archives of `tree` (and the files published on their own), as downloaded."""
    dest = Path(dest)
    for name, folder, arcname in ARCHIVES[dataset]:
        tar_folder(tree / folder, dest / name, arcname)
    for name in LOOSE_FILES.get(dataset, ()):
        (dest / name).write_bytes((tree / name).read_bytes())
    return dest


__all__ = ["make_archives", "ARCHIVES", "make_aircraft_tree", "make_cars_tree", "make_flowers_tree", "make_pets_tree", "make_nabirds_tree",
           "tar_folder", "AIRCRAFT", "CARS", "FLOWER_LABELS", "PETS", "NABIRDS_LEAVES", "BANNER", "TRAIN", "TEST"]
