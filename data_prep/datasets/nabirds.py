"""NABirds (v1): 48,562 photographs of North American birds, labelled with the leaves of a
taxonomy (555 "visual categories": species, and for some species sex or age plumages),
official train (23,929) / test (24,633) split.

Official layout (`nabirds.tar.gz` -> `nabirds/`): `images/<class>/<file>.jpg`; `images.txt`
(`<image uuid> <path under images/>`), `image_class_labels.txt` (`<uuid> <class id>`),
`train_test_split.txt` (`<uuid> <1 train | 0 test>`), `classes.txt` (`<class id> <name>`,
for every node of the taxonomy), `hierarchy.txt` (`<child id> <parent id>`). The classes
are the leaves (ids that are no node's parent); an image labelled with an inner node is an
error. Image ids are the images' 1-based positions in images.txt (its ids are uuids, the
manifest's are integers).

There is no public download: the Cornell Lab of Ornithology hands the archive out after a
sign-up (dl.allaboutbirds.org/nabirds). Not in torchvision: read directly.
"""

from __future__ import annotations

from pathlib import Path

from data_prep.datasets.common import Catalog, Reader, SourceImage, carve_with, require, text_lines
from data_prep.datasets.layout import Layout, Opened, Part
from data_prep.datasets.spec import DatasetSpec
from fgvc.errors import FGVCError

NAME = "nabirds"
TITLE = "NABirds"
TABLES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "hierarchy.txt")
ARCHIVE = "nabirds.tar.gz"
LAYOUT = Layout(names=("nabirds",), parts=tuple(Part(e, ARCHIVE, prefix="nabirds/") for e in ("images", *TABLES)))
FIX = (f"NABirds has no public download: sign up at https://dl.allaboutbirds.org/nabirds, fetch {ARCHIVE} by hand "
       "and pass it (or its extracted nabirds/ folder) as the source "
       f"(make data DATASET=nabirds SOURCE=/path/to/{ARCHIVE})")


def _table(opened: Opened, rel: str) -> dict[str, str]:
    """`<key> <value>` lines -> {key: value}; a malformed line or a repeated key is an error."""
    out: dict[str, str] = {}
    for n, line in text_lines(opened, rel):
        key, _, value = line.partition(" ")
        if not value.strip():
            raise FGVCError(f"{opened.where(rel)} line {n}: expected '<id> <value>', got {line[:80]!r}")
        if key in out:
            raise FGVCError(f"{opened.where(rel)} line {n}: id {key} appears twice")
        out[key] = value.strip()
    return out


def _int_keys(opened: Opened, rel: str, table: dict[str, str], values: bool = False) -> dict[int, str]:
    """The table with integer keys (and values, checked, when `values`)."""
    for key, value in table.items():
        if not key.isdigit() or (values and not value.isdigit()):
            raise FGVCError(f"{opened.where(rel)}: {key!r} {value!r} is not '<integer id> "
                            f"{'<integer id>' if values else '<name>'}'")
    return {int(k): v for k, v in table.items()}


def _leaves(opened: Opened) -> dict[int, str]:
    """{leaf class id: name}: the classes of classes.txt that are no class's parent in hierarchy.txt."""
    names = _int_keys(opened, "classes.txt", _table(opened, "classes.txt"))
    parents = _int_keys(opened, "hierarchy.txt", _table(opened, "hierarchy.txt"), values=True)
    for child, parent in parents.items():
        for cid in (child, int(parent)):
            if cid not in names:
                raise FGVCError(f"{opened.where('hierarchy.txt')}: class {cid} is not in {opened.where('classes.txt')}; "
                                "the files do not belong together")
    inner = {int(p) for p in parents.values()}
    return {cid: name for cid, name in names.items() if cid not in inner}


def _image(opened: Opened, k: int, uuid: str, path: str, label: str, split: str, leaves: dict[int, str]) -> SourceImage:
    """One image, checked: a leaf class, a 0/1 split flag, a path under images/."""
    if not label.isdigit() or int(label) not in leaves:
        raise FGVCError(f"{opened.where('image_class_labels.txt')}: image {uuid} has class {label!r}, which is not a "
                        f"leaf class of {opened.where('classes.txt')} and {opened.where('hierarchy.txt')}")
    if split not in ("0", "1"):
        raise FGVCError(f"{opened.where('train_test_split.txt')}: image {uuid} has {split!r}; expected 0 or 1")
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or ".." in parts:
        raise FGVCError(f"{opened.where('images.txt')}: image {uuid} has path {path!r}; expected '<class>/<file>'")
    return SourceImage(k, f"images/{path}", parts[-1], int(label), int(split))


def read(opened: Opened, level: str) -> Catalog:
    """The leaf classes and every image of images.txt with its class and split."""
    require(opened, list(TABLES), TITLE, FIX)
    images, labels, split = (_table(opened, rel) for rel in TABLES[:3])
    for rel, table in (("image_class_labels.txt", labels), ("train_test_split.txt", split)):
        for missing in [uuid for uuid in images if uuid not in table][:1]:
            raise FGVCError(f"{opened.where(rel)} has no row for image {missing} listed in {opened.where('images.txt')}")
    leaves = _leaves(opened)
    catalog = [_image(opened, k, uuid, path, labels[uuid], split[uuid], leaves)
               for k, (uuid, path) in enumerate(images.items(), 1)]
    return Catalog(catalog, leaves, f"{opened.where('classes.txt')} (leaves of {opened.where('hierarchy.txt')})",
                   opened.where("images.txt"), split="train/test")


READER = Reader(NAME, TITLE, LAYOUT, read, FIX)


def carve(source: Path, out: Path, classes: str = "all", level: str = "leaf", force: bool = False) -> dict:
    """Write the dataset folder `out` from a NABirds copy; return dataset.json's dict."""
    return carve_with(READER, source, out, classes, level, force)


SPEC = DatasetSpec(NAME, TITLE, ("leaf",), "all", f"{ARCHIVE} or its extracted nabirds/ folder",
                   f"/path/to/{ARCHIVE}", carve, by_hand=FIX)

__all__ = ["SPEC", "READER", "carve", "read"]
