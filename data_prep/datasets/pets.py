"""Oxford-IIIT Pets: 7,349 photographs of 37 cat and dog breeds, official trainval (3,680) /
test (3,669) split.

Official layout (`images.tar.gz` -> `images/<Breed>_<n>.jpg`, `annotations.tar.gz` ->
`annotations/trainval.txt`, `annotations/test.txt`: `<image> <class id> <species> <breed id>`
a line). The class name is the breed as the file names write it (`Abyssinian`,
`american_bulldog`: cats capitalised, dogs not, the dataset's own convention). Image ids are
1..N over both split files' images ordered by class id, then the number in the name.

Read directly: torchvision's OxfordIIITPet has no public way to list its files (its images
are decoded on access) and names no file in its errors; tests check both read the same
labels from the same layout.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from data_prep.datasets.common import Catalog, Reader, SourceImage, carve_with, require, text_lines
from data_prep.datasets.layout import Layout, Opened, Part
from data_prep.datasets.spec import DatasetSpec, Download
from fgvc.errors import FGVCError

NAME = "pets"
TITLE = "Oxford-IIIT Pets"
URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/"
DOWNLOADS = (Download(URL + "images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c"),
             Download(URL + "annotations.tar.gz", "95a8c909bbe2e81eed6a22bccdf3f68f"))
SPLITS = (("annotations/trainval.txt", 1), ("annotations/test.txt", 0))
LAYOUT = Layout(names=("oxford-iiit-pet",), parts=(Part("images", "images.tar.gz"),
                                                   Part("annotations", "annotations.tar.gz")))
FIX = ("pass the folder holding images.tar.gz and annotations.tar.gz (or their extracted images/ and annotations/) "
       f"as the source, or give none to download them ({URL})")


def _entries(opened: Opened, rel: str, is_train: int) -> list[tuple[int, str, int]]:
    """(class id, image name, is_train) of each line of one split file."""
    out = []
    for n, line in text_lines(opened, rel):
        fields = line.split()
        if len(fields) != 4 or not fields[1].isdigit() or "_" not in fields[0]:
            raise FGVCError(f"{opened.where(rel)} line {n}: expected '<Breed_n> <class id> <species> <breed id>', "
                            f"got {line[:80]!r}")
        out.append((int(fields[1]), fields[0], is_train))
    return out


def _classes(opened: Opened, entries: list[tuple[int, str, int]]) -> dict[int, str]:
    """{class id: breed}, the breed being the image names' prefix; one breed per class id."""
    classes: dict[int, str] = {}
    for cid, image, _ in entries:
        breed = image.rsplit("_", 1)[0]
        if classes.setdefault(cid, breed) != breed:
            raise FGVCError(f"{' and '.join(opened.where(rel) for rel, _ in SPLITS)}: class {cid} holds both "
                            f"{classes[cid]!r} and {breed!r} images ({image}); the files are corrupt")
    return classes


def _order(entry: tuple[int, str, int]) -> tuple[int, int, str]:
    number = entry[1].rsplit("_", 1)[1]
    return entry[0], int(number) if number.isdigit() else 0, entry[1]


def read(opened: Opened, level: str) -> Catalog:
    """The 37 breeds and the trainval / test images."""
    require(opened, [rel for rel, _ in SPLITS], TITLE, FIX)
    entries = sorted((e for rel, is_train in SPLITS for e in _entries(opened, rel, is_train)), key=_order)
    twice = [name for name, n in Counter(image for _, image, _ in entries).items() if n > 1]
    if twice:
        raise FGVCError(f"image {twice[0]} is listed twice in {' and '.join(opened.where(r) for r, _ in SPLITS)}")
    images = [SourceImage(k, f"images/{image}.jpg", f"{image}.jpg", cid, is_train)
              for k, (cid, image, is_train) in enumerate(entries, 1)]
    return Catalog(images, _classes(opened, entries), " and ".join(opened.where(r) for r, _ in SPLITS),
                   " and ".join(opened.where(r) for r, _ in SPLITS), split="trainval/test")


READER = Reader(NAME, TITLE, LAYOUT, read, FIX)


def carve(source: Path, out: Path, classes: str = "all", level: str = "breed", force: bool = False) -> dict:
    """Write the dataset folder `out` from an Oxford-IIIT Pets copy; return dataset.json's dict."""
    return carve_with(READER, source, out, classes, level, force)


SPEC = DatasetSpec(NAME, TITLE, ("breed",), "all",
                   "a folder with images.tar.gz and annotations.tar.gz or their extracted images/ and annotations/",
                   "/path/to/oxford-iiit-pet", carve, downloads=DOWNLOADS)

__all__ = ["SPEC", "READER", "DOWNLOADS", "carve", "read"]
