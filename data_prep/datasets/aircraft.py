"""FGVC-Aircraft 2013b: 10,000 aircraft photographs, labelled at three levels (100 variants,
70 families, 30 manufacturers), official trainval (6,667) / test (3,333) split.

Official layout (`fgvc-aircraft-2013b.tar.gz` -> `fgvc-aircraft-2013b/data/`):
`images/<7 digits>.jpg`; `variants.txt`, `families.txt`, `manufacturers.txt` (one class name
a line: the class id is the line number); `images_<level>_<split>.txt` (`<image> <class
name>` a line, the name may hold spaces). Every image carries a 20-pixel copyright banner at
its bottom that the authors ask to remove before training or evaluating: the carve crops it
(dataset.json `crop_bottom_px`). The image id is the image's 7-digit number.

Read directly rather than through torchvision's FGVCAircraft: that class lists no files
without decoding every image (its `loader` argument is recent), and its errors name no file;
tests/test_datasets.py checks that both read the same labels from the same layout.
"""

from __future__ import annotations

from pathlib import Path

from data_prep.datasets.common import Catalog, Reader, SourceImage, carve_with, require, text_lines
from data_prep.datasets.layout import Layout, Opened, Part
from data_prep.datasets.spec import DatasetSpec, Download
from fgvc.errors import FGVCError

NAME = "aircraft"
TITLE = "FGVC-Aircraft 2013b"
LEVELS = ("variant", "family", "manufacturer")  # finest first: the default is the first
CLASS_FILES = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
SPLITS = (("trainval", 1), ("test", 0))
BANNER_PX = 20  # the copyright banner at the bottom of every image (the dataset's README)
DOWNLOAD = Download("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                    "d4acdd33327262359767eeaa97a4f732")
LAYOUT = Layout(names=("fgvc-aircraft-2013b",),
                parts=(Part("data", DOWNLOAD.name, prefix="fgvc-aircraft-2013b/"),))
FIX = (f"pass the official {DOWNLOAD.name} or its extracted fgvc-aircraft-2013b/ folder as the source, "
       f"or give none to download it ({DOWNLOAD.url})")


def _classes(opened: Opened, level: str) -> dict[int, str]:
    """{line number: class name} of the level's class list; a name listed twice is an error."""
    rel = f"data/{CLASS_FILES[level]}"
    names: dict[int, str] = {}
    for k, (n, name) in enumerate(text_lines(opened, rel), 1):
        if name in names.values():
            raise FGVCError(f"{opened.where(rel)} line {n}: class {name!r} is listed twice; the file is corrupt")
        names[k] = name
    return names


def _split(opened: Opened, level: str, split: str, is_train: int, ids: dict[str, int]) -> list[SourceImage]:
    """The images of one split file, each with its class id (the class name's line in the class list)."""
    rel = f"data/images_{level}_{split}.txt"
    out = []
    for n, line in text_lines(opened, rel):
        image, _, name = line.partition(" ")
        if not (image.isdigit() and name.strip()):
            raise FGVCError(f"{opened.where(rel)} line {n}: expected '<7-digit image> <class name>', got {line[:80]!r}")
        if name.strip() not in ids:
            raise FGVCError(f"{opened.where(rel)} line {n}: class {name.strip()!r} is not in "
                            f"{opened.where('data/' + CLASS_FILES[level])}; the copy is inconsistent: {FIX}")
        out.append(SourceImage(int(image), f"data/images/{image}.jpg", f"{image}.jpg", ids[name.strip()], is_train))
    return out


def read(opened: Opened, level: str) -> Catalog:
    """The level's classes and the trainval / test images."""
    files = [f"data/images_{level}_{split}.txt" for split, _ in SPLITS]
    require(opened, [f"data/{CLASS_FILES[level]}", *files], TITLE, FIX)
    classes = _classes(opened, level)
    ids = {name: cid for cid, name in classes.items()}
    images = [img for split, is_train in SPLITS for img in _split(opened, level, split, is_train, ids)]
    seen: set[int] = set()
    for img in images:
        if img.image_id in seen:
            raise FGVCError(f"image {img.image_id} is listed twice in {' and '.join(map(opened.where, files))}; "
                            "the split files are corrupt")
        seen.add(img.image_id)
    return Catalog(images, classes, opened.where(f"data/{CLASS_FILES[level]}"), " and ".join(map(opened.where, files)),
                   split="trainval/test", extra={"crop_bottom_px": BANNER_PX}, crop_bottom=BANNER_PX)


READER = Reader(NAME, TITLE, LAYOUT, read, FIX)


def carve(source: Path, out: Path, classes: str = "all", level: str = LEVELS[0], force: bool = False) -> dict:
    """Write the dataset folder `out` from an FGVC-Aircraft copy; return dataset.json's dict."""
    return carve_with(READER, source, out, classes, level, force)


SPEC = DatasetSpec(NAME, TITLE, LEVELS, "all", f"{DOWNLOAD.name} or its extracted fgvc-aircraft-2013b/ folder",
                   f"/path/to/{DOWNLOAD.name}", carve, downloads=(DOWNLOAD,))

__all__ = ["SPEC", "READER", "LEVELS", "BANNER_PX", "DOWNLOAD", "carve", "read"]
