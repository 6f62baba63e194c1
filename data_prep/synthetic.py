"""A tiny synthetic CUB-200-2011 in the exact official layout, for tests and demos.

Why: the tests need no network and no 1.1 GB archive, yet must exercise the same code
paths as the real data (official folder names, 1-based ids, metadata files, the
`CUB_200_2011/...` archive prefix). The images are easy on purpose: a class-dependent
background colour and shape plus noise, so a tiny CNN learns them in a couple of epochs.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Real CUB ids and folder names: four sparrows (inside 113-133) and two other classes.
CLASSES: tuple[tuple[int, str], ...] = (
    (1, "Black_footed_Albatross"),
    (113, "Baird_Sparrow"),
    (118, "House_Sparrow"),
    (125, "Lincoln_Sparrow"),
    (133, "White_throated_Sparrow"),
    (200, "Common_Yellowthroat"),
)
SIZE = (48, 40)  # (width, height): non-square, like the real photographs

_BACKGROUNDS = [(200, 60, 60), (60, 170, 60), (60, 80, 200), (210, 190, 60), (170, 70, 190), (60, 180, 190)]
_SHAPES = ["circle", "square", "triangle", "hbar", "vbar", "cross"]
METADATA = ("classes.txt", "images.txt", "image_class_labels.txt", "train_test_split.txt")


def draw_class_image(k: int, rng: np.random.Generator, size: tuple[int, int] = SIZE) -> Image.Image:
    """Image of class index `k`: its background colour, its shape (jittered), noise. The
    other datasets' synthetic layouts (data_prep/synthetic_layouts.py) draw theirs with it too."""
    w, h = size
    bg = np.array(_BACKGROUNDS[k % len(_BACKGROUNDS)], dtype=np.float32)
    img = Image.new("RGB", size, tuple(int(c) for c in bg))
    d = ImageDraw.Draw(img)
    cx = w / 2 + rng.integers(-6, 7)
    cy = h / 2 + rng.integers(-5, 6)
    r = 9 + rng.integers(-2, 3)
    fg = tuple(int(255 - c) for c in bg)
    shape = _SHAPES[k % len(_SHAPES)]
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif shape == "hbar":
        d.rectangle([cx - 2 * r, cy - 3, cx + 2 * r, cy + 3], fill=fg)
    elif shape == "vbar":
        d.rectangle([cx - 3, cy - 2 * r + 2, cx + 3, cy + 2 * r - 2], fill=fg)
    else:
        d.rectangle([cx - r, cy - 2, cx + r, cy + 2], fill=fg)
        d.rectangle([cx - 2, cy - r, cx + 2, cy + r], fill=fg)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 18, size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_cub_tree(dest_dir: Path, *, train_per_class: int = 6, test_per_class: int = 4, seed: int = 0) -> Path:
    """Write `dest_dir/CUB_200_2011/` (official layout) and return that path.

    Image ids are 1-based and follow the official ordering (class folder, then the
    numeric photo id at the end of the file name); the 4-digit number in the name is
    deliberately not in that order, so code that sorts by file name is caught.
    """
    rng = np.random.default_rng(seed)
    root = Path(dest_dir) / "CUB_200_2011"
    (root / "images").mkdir(parents=True, exist_ok=True)
    n = train_per_class + test_per_class
    images, labels, split = [], [], []
    image_id = 0
    for k, (cid, name) in enumerate(CLASSES):
        folder = f"{cid:03d}.{name}"
        (root / "images" / folder).mkdir(exist_ok=True)
        photo_ids = np.sort(rng.choice(np.arange(100_000, 800_000), size=n, replace=False))
        numbers = rng.permutation(np.arange(1, n + 1))
        is_train = rng.permutation([1] * train_per_class + [0] * test_per_class)
        for photo, num, tr in zip(photo_ids, numbers, is_train):
            image_id += 1
            rel = f"{folder}/{name}_{num:04d}_{photo}.jpg"
            draw_class_image(k, rng).save(root / "images" / rel, format="JPEG", quality=90)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {cid}")
            split.append(f"{image_id} {int(tr)}")
    (root / "classes.txt").write_text("".join(f"{cid} {cid:03d}.{name}\n" for cid, name in CLASSES))
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(split) + "\n")
    return root


def add_member(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    """Add a file (or, with `data` None, a folder) with fixed metadata: byte-for-byte deterministic archives."""
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 1_300_000_000, 0, 0, "", ""
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def make_cub_tgz(cub_tree: Path, tgz_path: Path, *, metadata_first: bool = False) -> Path:
    """Gzip tar of `cub_tree` with members under `CUB_200_2011/...`, like the official archive.

    The official archive also holds a top-level `attributes.txt` beside the folder; one is
    added so readers are tested on ignoring members they do not need. By default the
    images come before the metadata files (the hard order for a one-pass reader);
    `metadata_first` gives the other order. Byte-for-byte deterministic.
    """
    cub_tree, tgz_path = Path(cub_tree), Path(tgz_path)
    tgz_path.parent.mkdir(parents=True, exist_ok=True)
    with open(tgz_path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            add_member(tar, "attributes.txt", b"1 has_bill_shape::curved_(up_or_down)\n")
            add_member(tar, "CUB_200_2011", None)

            def add_metadata() -> None:
                for m in METADATA:
                    add_member(tar, f"CUB_200_2011/{m}", (cub_tree / m).read_bytes())

            if metadata_first:
                add_metadata()
            add_member(tar, "CUB_200_2011/images", None)
            for folder in sorted(p for p in (cub_tree / "images").iterdir() if p.is_dir()):
                add_member(tar, f"CUB_200_2011/images/{folder.name}", None)
                for f in sorted(folder.iterdir()):
                    add_member(tar, f"CUB_200_2011/images/{folder.name}/{f.name}", f.read_bytes())
            if not metadata_first:
                add_metadata()
    return tgz_path
