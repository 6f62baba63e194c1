"""Oxford Flowers-102: 8,189 photographs of 102 flower species, official train (1,020) / val
(1,020) / test (6,149) split.

Official layout (three files published apart): `102flowers.tgz` -> `jpg/image_NNNNN.jpg`;
`imagelabels.mat` (`labels`: the class, 1..102, of image n at position n); `setid.mat`
(`trnid`, `valid`, `tstid`: the image numbers of each split). The image id is the image's
number. Training here is train + val (is_train 1); a grid that asks for a validation split
(`val_fraction`) draws it from those, as for every dataset. The official val images' ids are
kept in dataset.json (`source_val_ids`, all classes') for whoever wants exactly that split.

The official files carry no class names: they are torchvision's `Flowers102.classes`, the
list the community uses. The files are read directly (scipy): torchvision's Flowers102
refuses any copy whose .mat files' md5 differs from the originals', so it cannot read
partial or re-saved copies, nor name the file at fault.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.datasets.common import Catalog, Reader, SourceImage, carve_with, load_mat, require
from data_prep.datasets.layout import Layout, Opened, Part
from data_prep.datasets.spec import DatasetSpec, Download
from fgvc.errors import FGVCError

NAME = "flowers"
TITLE = "Oxford Flowers-102"
URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
DOWNLOADS = (Download(URL + "102flowers.tgz", "52808999861908f626f3c1f4e79d11fa"),
             Download(URL + "imagelabels.mat", "e0620be6f572b9609742df49c70aed4d"),
             Download(URL + "setid.mat", "a5357ecc9cb78c4bef273ce3793fc85c"))
LABELS, SETID = "imagelabels.mat", "setid.mat"
SPLIT_KEYS = (("trnid", 1), ("valid", 1), ("tstid", 0))
LAYOUT = Layout(names=("flowers-102",), parts=(Part("jpg", "102flowers.tgz"), Part(LABELS, None), Part(SETID, None)))
FIX = (f"pass the folder holding 102flowers.tgz (or its extracted jpg/), {LABELS} and {SETID} as the source, "
       f"or give none to download them ({URL})")


def class_names() -> list[str]:
    """The 102 names, in label order (torchvision's list: the official files have none)."""
    from torchvision.datasets import Flowers102  # torchvision imports torch: only when Flowers-102 is read

    names = list(getattr(Flowers102, "classes", []))
    if len(names) != 102:
        import torchvision

        raise FGVCError(f"torchvision {torchvision.__version__} has no Flowers102.classes (the 102 class names); "
                        "upgrade torchvision (pip install -U torchvision)")
    return names


def _split_of(opened: Opened, n_images: int) -> tuple[dict[int, int], list[int]]:
    """({image number: is_train}, the val image numbers) from setid.mat; an image in two splits is an error."""
    setid = load_mat(opened, SETID, tuple(key for key, _ in SPLIT_KEYS))
    is_train: dict[int, int] = {}
    for key, flag in SPLIT_KEYS:
        for number in np.atleast_1d(setid[key]).astype(int).tolist():
            if not 1 <= number <= n_images:
                raise FGVCError(f"{opened.where(SETID)}: {key} lists image {number}, but {opened.where(LABELS)} "
                                f"labels images 1..{n_images}; the files do not belong together")
            if number in is_train:
                raise FGVCError(f"{opened.where(SETID)}: image {number} is in two splits; the file is corrupt")
            is_train[number] = flag
    return is_train, sorted(np.atleast_1d(setid["valid"]).astype(int).tolist())


def read(opened: Opened, level: str) -> Catalog:
    """The 102 classes, every image of setid.mat with its label from imagelabels.mat."""
    require(opened, [LABELS, SETID], TITLE, FIX)
    labels = np.atleast_1d(load_mat(opened, LABELS, ("labels",))["labels"]).astype(int).tolist()
    names = class_names()
    bad = next((n for n, label in enumerate(labels, 1) if not 1 <= label <= len(names)), None)
    if bad is not None:
        raise FGVCError(f"{opened.where(LABELS)}: image {bad} has label {labels[bad - 1]}; Flowers-102 labels are "
                        f"1..{len(names)}: the file is corrupt")
    is_train, val_ids = _split_of(opened, len(labels))
    images = [SourceImage(n, f"jpg/image_{n:05d}.jpg", f"image_{n:05d}.jpg", labels[n - 1], is_train[n])
              for n in sorted(is_train)]
    return Catalog(images, dict(enumerate(names, 1)), f"{opened.where(LABELS)} (names: torchvision's Flowers102.classes)",
                   opened.where(SETID), split="train+val/test", extra={"source_val_ids": val_ids})


READER = Reader(NAME, TITLE, LAYOUT, read, FIX)


def carve(source: Path, out: Path, classes: str = "all", level: str = "species", force: bool = False) -> dict:
    """Write the dataset folder `out` from a Flowers-102 copy; return dataset.json's dict."""
    return carve_with(READER, source, out, classes, level, force)


SPEC = DatasetSpec(NAME, TITLE, ("species",), "all", f"a folder with 102flowers.tgz or its jpg/ folder, {LABELS} and {SETID}",
                   "/path/to/flowers-102", carve, downloads=DOWNLOADS)

__all__ = ["SPEC", "READER", "DOWNLOADS", "carve", "read", "class_names"]
