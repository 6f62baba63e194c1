"""What every non-CUB reader shares: the catalog a reader returns, class selection over it,
copying (and, for FGVC-Aircraft, cropping) the images, and the carve itself.

Why: a new dataset should be only a reader (its official files -> a Catalog); selection,
image checks, the output folder and its atomic write are the same for all, and the same as
CUB's (data_prep/folder.py).
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image, JpegImagePlugin
from tqdm import tqdm

from data_prep.classes import class_folder, class_token, parse_classes
from data_prep.datasets.layout import Layout, Opened, open_source
from data_prep.folder import Described, Row, check_decodes, check_out, write_outputs
from fgvc.errors import FGVCError
from fgvc.io import atomic_dir

SHOWN = 5  # class names quoted in a message


@dataclass(frozen=True)
class SourceImage:
    """One image as the official files describe it."""

    image_id: int
    rel: str  # its path under Opened.root, e.g. "cars_train/00001.jpg"
    name: str  # its file name in the output's class folder
    class_id: int  # the source's class id
    is_train: int


@dataclass(frozen=True)
class Catalog:
    """Everything a reader found: the images (all classes), the classes, what the split is."""

    images: list[SourceImage]
    classes: dict[int, str]  # every class the source defines: class id -> official name
    class_file: str  # the user's name for the file that defines the classes (for messages)
    image_list: str  # the user's name for the file(s) that list the images (for messages)
    split: str  # dataset.json `split`
    extra: dict = field(default_factory=dict)  # dataset.json keys of this dataset only
    crop_bottom: int = 0  # pixels cut from the bottom of every image (FGVC-Aircraft's banner)


@dataclass(frozen=True)
class Reader:
    """A dataset's reader: its layout and the function from the opened layout to its catalog."""

    dataset: str  # the registry name
    title: str
    layout: Layout
    read: Callable[[Opened, str], Catalog]  # (opened layout, level) -> catalog
    fix: str  # how to get a complete copy, ending every "missing" error


def select(catalog: Catalog, classes: str) -> tuple[list[tuple[Row, SourceImage]], list[tuple[int, str, str]]]:
    """The images of the classes `classes` selects, by image id, and the classes present
    as (class id, token, official name) in class-id order."""
    pred = parse_classes(classes)
    tokens = {cid: class_token(name) for cid, name in catalog.classes.items()}
    wanted = {cid for cid in catalog.classes if pred(cid, tokens[cid])}
    if not wanted:
        shown = ", ".join(f"{cid} {tokens[cid]}" for cid in sorted(tokens)[:SHOWN])
        raise FGVCError(f"--classes {classes!r} matches no class in {catalog.class_file} ({len(tokens)} classes: "
                        f"{shown}{' ...' if len(tokens) > SHOWN else ''}); class names are matched as written there, "
                        "with '_' for spaces and other separators")
    chosen = sorted((i for i in catalog.images if i.class_id in wanted), key=lambda i: i.image_id)
    rows = [(Row(i.image_id, f"{class_folder(i.class_id, tokens[i.class_id])}/{i.name}", i.class_id,
                 tokens[i.class_id], i.is_train), i) for i in chosen]
    present = sorted({i.class_id for i in chosen})
    if not present:
        raise FGVCError(f"--classes {classes!r} matches {len(wanted)} classes in {catalog.class_file} but no image "
                        "of them is listed (a partial copy?)")
    skipped = [class_folder(c, tokens[c]) for c in sorted(wanted - set(present))]
    if skipped:
        print(f"note: {len(skipped)} selected classes have no images in this copy (partial copy?), skipped: "
              + ", ".join(skipped[:SHOWN]) + (" ..." if len(skipped) > SHOWN else ""))
    return rows, [(c, tokens[c], catalog.classes[c]) for c in present]


def crop_bottom(data: bytes, pixels: int, where: str) -> bytes:
    """The image with its bottom `pixels` rows cut, as JPEG with the original's quantization
    tables and chroma subsampling (the least loss a re-encode allows). Decodes fully, so a
    corrupt image fails here as in check_decodes."""
    check_decodes(data, where)
    with Image.open(io.BytesIO(data)) as im:
        if im.height <= pixels:
            raise FGVCError(f"image {where} is {im.width}x{im.height} pixels: nothing is left after cropping the "
                            f"{pixels}-pixel banner; the copy is damaged")
        keep: dict = {"icc_profile": im.info.get("icc_profile")}
        if im.format == "JPEG":
            keep["qtables"] = im.quantization
            if JpegImagePlugin.get_sampling(im) >= 0:
                keep["subsampling"] = JpegImagePlugin.get_sampling(im)
        cropped = im.crop((0, 0, im.width, im.height - pixels))
        if cropped.mode not in ("RGB", "L", "CMYK"):
            cropped = cropped.convert("RGB")
        buf = io.BytesIO()
        cropped.save(buf, format="JPEG", **{k: v for k, v in keep.items() if v is not None})
    return buf.getvalue()


def copy_images(pairs: list[tuple[Row, SourceImage]], opened: Opened, images_dir: Path, crop: int,
                listed_in: str) -> None:
    """Copy each selected image into images_dir (cropped when `crop`), decoding each once."""
    for row, image in tqdm(pairs, desc="checking images", unit="img", disable=None, leave=False):
        where = opened.where(image.rel)
        try:
            data = (opened.root / image.rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise FGVCError(f"image {where} (id {row.image_id}) is listed in {listed_in} but absent; "
                            "the copy is incomplete") from None
        data = crop_bottom(data, crop, where) if crop else data
        if not crop:
            check_decodes(data, where)
        dest = images_dir / row.rel
        if dest.exists():
            raise FGVCError(f"two images would both be {row.rel} (the second is {where}); the metadata lists an "
                            "image twice")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def carve_with(reader: Reader, source: Path, out: Path, classes: str, level: str, force: bool) -> dict:
    """Write the dataset folder `out` from `source` with `reader`; return dataset.json's dict.
    Written to a temporary folder and renamed into place: a failed carve leaves nothing."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FGVCError(f"source {source} does not exist; {reader.fix}")
    check_out(out, force)
    parse_classes(classes)  # a bad SPEC fails before any reading
    with atomic_dir(out, force=out.exists()) as tmp:
        opened = open_source(source, tmp / ".work", reader.layout, reader.title, reader.fix)
        catalog = reader.read(opened, level)
        pairs, present = select(catalog, classes)
        (tmp / "images").mkdir()
        copy_images(pairs, opened, tmp / "images", catalog.crop_bottom, catalog.image_list)
        shutil.rmtree(tmp / ".work")
        single = source.is_file() and len(opened.archives_md5) == 1
        extra = {**catalog.extra, **({"archives_md5": opened.archives_md5} if opened.archives_md5 else {})}
        about = Described(source, next(iter(opened.archives_md5.values())) if single else None, classes,
                          reader.dataset, level, catalog.split, extra)
        info = write_outputs(tmp, [row for row, _ in pairs], present, about)
    return info


def text_lines(opened: Opened, rel: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of the text file `rel`, blank lines and `#` comments left out."""
    try:
        text = (opened.root / rel).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FGVCError(f"{opened.where(rel)} is missing: an incomplete copy") from None
    except UnicodeDecodeError:
        raise FGVCError(f"{opened.where(rel)} is not UTF-8 text: the file is corrupt") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def require(opened: Opened, rels: list[str], title: str, fix: str) -> None:
    """One FGVCError naming every file of `rels` that is missing, and the fix."""
    missing = [opened.where(rel) for rel in rels if not (opened.root / rel).is_file()]
    if missing:
        raise FGVCError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing: an incomplete "
                        f"{title} copy; {fix}")


def load_mat(opened: Opened, rel: str, keys: tuple[str, ...]) -> dict:
    """The MATLAB file `rel` as scipy reads it (squeeze_me), with `keys` present; one clear error otherwise."""
    from scipy.io import loadmat  # scipy's import is slow: only when a .mat is read

    where = opened.where(rel)
    try:
        mat = loadmat(opened.root / rel, squeeze_me=True)
    except FileNotFoundError:
        raise FGVCError(f"{where} is missing: an incomplete copy") from None
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, OSError... for a bad file
        raise FGVCError(f"{where} cannot be read as a MATLAB file ({type(e).__name__}: {e}); the file is corrupt "
                        "or truncated: fetch it again") from None
    for key in keys:
        if key not in mat:
            raise FGVCError(f"{where} has no variable {key!r} (it has {sorted(k for k in mat if not k.startswith('__'))}); "
                            "not the official file")
    return mat


__all__ = ["SourceImage", "Catalog", "Reader", "select", "crop_bottom", "copy_images", "carve_with", "text_lines",
           "require", "load_mat"]
