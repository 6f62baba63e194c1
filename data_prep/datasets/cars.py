"""Stanford Cars: 16,185 photographs of 196 car models (make, model, year), official train
(8,144) / test (8,041) split.

Official layout (the devkit and image archives, as torchvision's StanfordCars expects them
under `stanford_cars/`): `devkit/cars_meta.mat` (`class_names`, class id = position, 1-based),
`devkit/cars_train_annos.mat` and `cars_test_annos_withlabels.mat` (`annotations`: one
record per image with `fname` and `class`; the test file with labels was published apart
from the devkit, so copies keep it beside `devkit/` or inside it), `cars_train/`,
`cars_test/`. The image id of train image n (the n-th annotation, `cars_train/0000n.jpg`)
is n, of test image n 10000 + n; the output names them `train_0000n.jpg`, `test_0000n.jpg`.

The original host (ai.stanford.edu/~jkrause/cars) is gone: there is no download, and a
missing copy is one error naming the files to fetch by hand. Read directly (scipy) rather
than through torchvision's StanfordCars, which lists no file without decoding every image
before its `loader` argument (recent) and names no file in its errors; tests check both
agree on the same layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.datasets.common import Catalog, Reader, SourceImage, carve_with, load_mat, require
from data_prep.datasets.layout import Layout, Opened, Part
from data_prep.datasets.spec import DatasetSpec
from fgvc.errors import FGVCError

NAME = "cars"
TITLE = "Stanford Cars"
TEST_ID_OFFSET = 10_000  # test image n has id TEST_ID_OFFSET + n (the train split has 8,144 images)
META, TRAIN_ANNOS, TEST_ANNOS = "devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat"
SPLITS = ((TRAIN_ANNOS, "cars_train", "train", 1, 0), (TEST_ANNOS, "cars_test", "test", 0, TEST_ID_OFFSET))
LAYOUT = Layout(names=("stanford_cars",), parts=(
    Part("devkit", "car_devkit.tgz"), Part("cars_train", "cars_train.tgz"), Part("cars_test", "cars_test.tgz"),
    Part(TEST_ANNOS, None, also=(f"devkit/{TEST_ANNOS}",)),
))
FIX = ("Stanford Cars has no public download (its original host, ai.stanford.edu/~jkrause/cars, is gone): "
       "fetch car_devkit.tgz (or its devkit/ folder), cars_train.tgz, cars_test.tgz (or cars_train/, cars_test/) "
       f"and {TEST_ANNOS} by hand (e.g. from a mirror of the original files) into one folder and pass that "
       "folder as the source (make data DATASET=cars SOURCE=/path/to/stanford_cars)")


def _classes(opened: Opened) -> dict[int, str]:
    names = np.atleast_1d(load_mat(opened, META, ("class_names",))["class_names"])
    return {k: str(name).strip() for k, name in enumerate(names.tolist(), 1)}


def _annotations(opened: Opened, rel: str, folder: str, split: str, is_train: int, offset: int,
                 k: int) -> list[SourceImage]:
    """One split's images from its annotations file: (position, fname, class) of each record."""
    records = np.atleast_1d(load_mat(opened, rel, ("annotations",))["annotations"])
    fields = records.dtype.names or ()
    if "class" not in fields or "fname" not in fields:
        raise FGVCError(f"{opened.where(rel)}: its annotations have fields {list(fields)}, not 'fname' and 'class' "
                        f"(the test file without labels is cars_test_annos.mat; fetch {TEST_ANNOS}); {FIX}")
    if offset and len(records) >= TEST_ID_OFFSET:
        raise FGVCError(f"{opened.where(rel)} lists {len(records)} images, more than Stanford Cars has")
    out = []
    for n, record in enumerate(records, 1):
        fname = str(record["fname"]).strip()
        try:
            cid = int(record["class"])
        except (TypeError, ValueError):
            raise FGVCError(f"{opened.where(rel)}: annotation {n} ({fname}) has class {record['class']!r}, not a "
                            "number; the file is corrupt") from None
        if not 1 <= cid <= k:
            raise FGVCError(f"{opened.where(rel)}: annotation {n} ({fname}) has class {cid}, but "
                            f"{opened.where(META)} names classes 1..{k}; the files do not belong together")
        if "/" in fname or not fname:
            raise FGVCError(f"{opened.where(rel)}: annotation {n} has file name {fname!r}; expected e.g. '00001.jpg'")
        out.append(SourceImage(offset + n, f"{folder}/{fname}", f"{split}_{fname}", cid, is_train))
    return out


def read(opened: Opened, level: str) -> Catalog:
    """The 196 classes (cars_meta.mat) and the train / test images (the two annotation files)."""
    require(opened, [META, TRAIN_ANNOS, TEST_ANNOS], TITLE, FIX)
    classes = _classes(opened)
    images = [img for rel, folder, split, is_train, offset in SPLITS
              for img in _annotations(opened, rel, folder, split, is_train, offset, len(classes))]
    return Catalog(images, classes, opened.where(META), f"{opened.where(TRAIN_ANNOS)} and {opened.where(TEST_ANNOS)}",
                   split="train/test")


READER = Reader(NAME, TITLE, LAYOUT, read, FIX)


def carve(source: Path, out: Path, classes: str = "all", level: str = "model", force: bool = False) -> dict:
    """Write the dataset folder `out` from a Stanford Cars copy; return dataset.json's dict."""
    return carve_with(READER, source, out, classes, level, force)


SPEC = DatasetSpec(NAME, TITLE, ("model",), "all",
                   f"a folder with devkit/, cars_train/, cars_test/ and {TEST_ANNOS}, or with the archives "
                   "car_devkit.tgz, cars_train.tgz, cars_test.tgz beside that .mat file", "/path/to/stanford_cars", carve,
                   by_hand=FIX)

__all__ = ["SPEC", "READER", "TEST_ID_OFFSET", "carve", "read"]
