"""Carve a class subset of CUB-200-2011 into a dataset folder (manifest.csv + images + dataset.json).

CUB's reader; the other datasets' readers are in data_prep/datasets/ and write the same
folder (data_prep/folder.py); `python -m data_prep.prepare --dataset NAME` carves any of them.

The source is the official `CUB_200_2011.tgz`, read in one streaming pass (a gzip stream
cannot seek back, and unpacking 1.1 GB to keep 34 MB would be wasteful), or an extracted
`CUB_200_2011/` folder, including partial copies that keep the official layout. The
official train/test split is kept. The output is written to a temporary folder and renamed
into place at the end, so an interrupted or failed carve leaves nothing under DIR.

    python -m data_prep.carve --source CUB_200_2011.tgz --out data/cub_sparrows
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import tarfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from fgvc.errors import FGVCError
from fgvc.io import atomic_dir

from data_prep._cli import run
from data_prep.archives import HashingReader, bad_archive, member_name, refuse
from fgvc.data.checksum import content_sha256  # re-exported: `from data_prep.carve import content_sha256`
from data_prep.classes import parse_classes  # re-exported: `from data_prep.carve import parse_classes`
from data_prep.folder import Described, Row, check_decodes, check_out, write_outputs

METADATA = ("images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt")
SPARROW_IDS = tuple(range(113, 134))
NUM_CUB_CLASSES = 200
_FOLDER_RE = re.compile(r"^(\d+)\.(.+)$")


# --------------------------------------------------------------------------- selection


def _class_of_folder(folder: str) -> tuple[int, str] | None:
    """`113.Baird_Sparrow` -> (113, 'Baird_Sparrow'): the folder name alone decides selection."""
    m = _FOLDER_RE.match(folder)
    return (int(m.group(1)), m.group(2)) if m else None


# --------------------------------------------------------------------------- metadata


def _parse_table(data: bytes, fname: str, where: str) -> dict[int, str]:
    """`<id> <value>` lines -> {id: value}, with a clear error on the first bad line."""
    out: dict[int, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FGVCError(f"{where}/{fname} is not UTF-8 text; the CUB metadata file is corrupt") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise FGVCError(f"{where}/{fname} line {n}: expected '<id> <value>', got {line[:80]!r}")
        key = int(parts[0])
        if key in out:
            raise FGVCError(f"{where}/{fname} line {n}: id {key} appears twice")
        out[key] = parts[1].strip()
    return out


def resolve(meta: dict[str, bytes], classes: str, where: str) -> tuple[list[Row], list[tuple[int, str]]]:
    """Metadata files + SPEC -> (selected records sorted by image id, [(class id, name)] in id order)."""
    for f in METADATA:
        if f not in meta:
            raise FGVCError(f"{where} has no {f}: not a CUB_200_2011 folder or archive (or an incomplete copy)")
    cls = _parse_table(meta["classes.txt"], "classes.txt", where)
    images = _parse_table(meta["images.txt"], "images.txt", where)
    labels = _parse_table(meta["image_class_labels.txt"], "image_class_labels.txt", where)
    split = _parse_table(meta["train_test_split.txt"], "train_test_split.txt", where)

    names: dict[int, str] = {}
    for cid, folder in cls.items():
        parsed = _class_of_folder(folder)
        if parsed is None or parsed[0] != cid:
            raise FGVCError(f"{where}/classes.txt: class {cid} has folder {folder!r}; expected '{cid:03d}.<Name>'")
        names[cid] = parsed[1]
    for fname, table in (("image_class_labels.txt", labels), ("train_test_split.txt", split)):
        for missing in sorted(set(images) - set(table))[:1]:
            raise FGVCError(f"{where}/{fname} has no row for image {missing} listed in images.txt")
        for extra in sorted(set(table) - set(images))[:1]:
            raise FGVCError(f"{where}/{fname} has a row for image {extra} that images.txt does not list")

    pred = parse_classes(classes)
    wanted = sorted(cid for cid, name in names.items() if pred(cid, name))
    if "sparrows" in [s.strip() for s in classes.split(",")] and len(names) == NUM_CUB_CLASSES:
        sparrows = tuple(cid for cid, name in sorted(names.items()) if name.endswith("_Sparrow"))
        if sparrows != SPARROW_IDS:
            raise FGVCError(
                f"{where}/classes.txt: the '_Sparrow' classes are ids {list(sparrows)}, expected 113-133; "
                "this does not look like the official CUB-200-2011 class list"
            )
    if not wanted:
        raise FGVCError(f"--classes {classes!r} matches no class in {where}/classes.txt ({len(names)} classes)")

    wanted_set = set(wanted)
    records = []
    for image_id in sorted(images):
        cid_text = labels[image_id]
        if not cid_text.isdigit() or int(cid_text) not in names:
            raise FGVCError(f"{where}/image_class_labels.txt: image {image_id} has class {cid_text!r}, not in classes.txt")
        cid = int(cid_text)
        if cid not in wanted_set:
            continue
        rel = images[image_id]
        p = PurePosixPath(rel)
        if p.is_absolute() or len(p.parts) != 2 or ".." in p.parts:
            raise FGVCError(f"{where}/images.txt: image {image_id} path {rel!r} is not '<class folder>/<file>'")
        if p.parts[0] != f"{cid:03d}.{names[cid]}":
            raise FGVCError(
                f"{where}/images.txt: image {image_id} is in folder {p.parts[0]!r} but image_class_labels.txt says class {cid}"
            )
        if split[image_id] not in ("0", "1"):
            raise FGVCError(f"{where}/train_test_split.txt: image {image_id} has {split[image_id]!r}; expected 0 or 1")
        records.append(Row(image_id, rel, cid, names[cid], int(split[image_id])))

    present = sorted({r.class_id for r in records})
    if not present:
        raise FGVCError(
            f"--classes {classes!r} matches {len(wanted)} classes in classes.txt but images.txt lists no image of them ({where})"
        )
    skipped = [f"{c:03d}.{names[c]}" for c in wanted if c not in set(present)]
    if skipped:
        print(f"note: {len(skipped)} selected classes have no images in {where} (partial copy?), skipped: "
              + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    return records, [(c, names[c]) for c in present]


# --------------------------------------------------------------------------- sources


def _stream_tgz(source: Path, classes: str, images_dir: Path) -> tuple[dict[str, bytes], set[str], str]:
    """One pass over the archive: keep the metadata files, write the selected classes' images.

    Selection is decided from the member path alone (`images/<NNN.Name>/...` carries the
    class id and name), so the order of members does not matter. Returns (metadata,
    written image paths relative to images/, md5 of the archive).
    """
    pred = parse_classes(classes)
    meta: dict[str, bytes] = {}
    written: set[str] = set()
    size = source.stat().st_size
    with open(source, "rb") as raw, tqdm(total=size, unit="B", unit_scale=True, desc="reading archive",
                                         disable=None, leave=False) as bar:
        reader = HashingReader(raw, bar)
        with bad_archive(source, "truncated or corrupt", "download it again (python -m data_prep.download) "
                         "or pass an extracted CUB_200_2011/ folder"):
            with gzip.GzipFile(fileobj=io.BufferedReader(reader, 1 << 20), mode="rb") as gz:
                with tarfile.open(fileobj=gz, mode="r|") as tar:
                    for m in tar:
                        parts = PurePosixPath(member_name(source, m)).parts
                        if not parts or parts[0] != "CUB_200_2011":
                            continue
                        if m.issym() or m.islnk():
                            raise refuse(source, m.name, f"is a link (to {m.linkname!r})")
                        if len(parts) == 2 and parts[1] in METADATA:
                            if not m.isfile():
                                raise refuse(source, m.name, "is not a regular file")
                            meta[parts[1]] = tar.extractfile(m).read()
                        elif len(parts) == 4 and parts[1] == "images":
                            if m.isdir():
                                continue
                            if not m.isfile():
                                raise refuse(source, m.name, "is not a regular file")
                            parsed = _class_of_folder(parts[2])
                            if parsed is None or not pred(*parsed):
                                continue
                            dest = images_dir / parts[2] / parts[3]
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            dest.write_bytes(tar.extractfile(m).read())
                            written.add(f"{parts[2]}/{parts[3]}")
                # Read to the end so gzip checks its CRC and length trailer (a truncated
                # archive cut at a member boundary is caught here) and the md5 covers every byte.
                while gz.read(1 << 20):
                    pass
            reader.drain()
    return meta, written, reader.md5.hexdigest()


def _folder_root(source: Path) -> Path:
    """Accept `CUB_200_2011/` itself or the folder that contains it."""
    if not (source / "images.txt").exists() and (source / "CUB_200_2011").is_dir():
        return source / "CUB_200_2011"
    return source


def _check_decodes(data: bytes, where: str) -> None:
    """The shared full-decode check (data_prep.folder.check_decodes), called through this
    module's name so that a test can interrupt the carve mid-way."""
    check_decodes(data, where)


# --------------------------------------------------------------------------- output

LEVEL = "species"  # what CUB's labels are (dataset.json `level`)
SPLIT = "train/test"  # is_train is train_test_split.txt's flag (dataset.json `split`)


def _check_source(source: Path) -> tuple[bool, Path]:
    """(is the existing source an archive, the archive or folder to read); a folder must hold the metadata."""
    if source.is_file():
        return True, source
    root = _folder_root(source)
    for f in METADATA:
        if not (root / f).is_file():
            raise FGVCError(f"{root} has no {f}: not a CUB_200_2011 folder (or an incomplete copy)")
    return False, root


def _write_images(records: list[Row], written: set[str], images_dir: Path, source: Path, root: Path,
                  is_archive: bool) -> None:
    """Copy (folder) or keep (archive: written while streaming) each selected image, decoding each once."""
    for r in tqdm(records, desc="checking images", unit="img", disable=None, leave=False):
        dest = images_dir / r.rel
        if is_archive:
            if r.rel not in written:
                raise FGVCError(f"image {r.rel} (id {r.image_id}) is listed in images.txt but absent from archive {source}")
            data = dest.read_bytes()
        else:
            src = root / "images" / r.rel
            try:
                data = src.read_bytes()
            except FileNotFoundError:
                raise FGVCError(f"image {src} (id {r.image_id}) is listed in images.txt but absent") from None
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        _check_decodes(data, str(r.rel if is_archive else root / "images" / r.rel))
    for rel in written - {r.rel for r in records}:  # in a selected folder but not listed: not part of CUB
        (images_dir / rel).unlink()


def carve(source: Path, out: Path, classes: str = "sparrows", force: bool = False) -> dict:
    """Write the dataset folder `out` from `source` (.tgz or CUB_200_2011/ folder); return dataset.json's dict."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FGVCError(
            f"source {source} does not exist; pass the official CUB_200_2011.tgz or an extracted CUB_200_2011/ folder"
        )
    check_out(out, force)
    parse_classes(classes)  # a bad SPEC fails before any reading
    is_archive, root = _check_source(source)

    with atomic_dir(out, force=out.exists()) as tmp:
        images_dir = tmp / "images"
        images_dir.mkdir()
        if is_archive:
            meta, written, source_md5 = _stream_tgz(source, classes, images_dir)
            where = f"archive {source}: CUB_200_2011"
        else:
            meta = {f: (root / f).read_bytes() for f in METADATA}
            written, source_md5, where = set(), None, str(root)
        records, selected = resolve(meta, classes, where)
        _write_images(records, written, images_dir, source, root, is_archive)
        about = Described(source, source_md5, classes, dataset="cub", level=LEVEL, split=SPLIT, extra={})
        info = write_outputs(tmp, records, [(cid, name, name) for cid, name in selected], about)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m data_prep.carve",
        description="Select classes of CUB-200-2011 (official split kept) into a dataset folder: "
        "images/, manifest.csv, dataset.json. Reads the official .tgz in one streaming pass, "
        "or an extracted CUB_200_2011/ folder (partial copies in the official layout work too). "
        "Other datasets (FGVC-Aircraft, Stanford Cars, Flowers-102, Oxford-IIIT Pets, NABirds): "
        "python -m data_prep.prepare --dataset NAME.",
    )
    ap.add_argument("--source", required=True, type=Path,
                    help="CUB_200_2011.tgz, or an extracted CUB_200_2011/ folder (or the folder containing it)")
    ap.add_argument("--out", required=True, type=Path, help="dataset folder to write, e.g. data/cub_sparrows")
    ap.add_argument("--classes", default="sparrows",
                    help="comma-separated union of: 'sparrows' (names ending in _Sparrow, ids 113-133), "
                    "'all' (200 classes), ids or ranges ('113-133,1'), name patterns ('*_Warbler'). "
                    "Default: %(default)s")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    args = ap.parse_args(argv)
    info = carve(args.source, args.out, args.classes, args.force)
    print(f"{args.out}: {info['num_classes']} classes, {info['num_train']} train, {info['num_test']} test "
          f"(content_sha256 {info['content_sha256'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
