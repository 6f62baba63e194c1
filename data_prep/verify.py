"""Check a carved dataset folder before anything trains on it.

Lists every problem rather than stopping at the first, so one run tells the whole story:
manifest against files, every image decodes fully (and is at least 8 pixels on a side), labels in range and consistent with the
class ids, counts and content_sha256 against dataset.json.

    python -m data_prep.verify data/cub_sparrows
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from data_prep._cli import run
from fgvc.data.checksum import content_sha256
from fgvc.data.manifest import MANIFEST_COLUMNS
from fgvc.data.check import image_problem
from fgvc.errors import FGVCError


def _int(value: str, n: int, column: str, problems: list[str]) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        problems.append(f"manifest.csv row {n}: {column} {value!r} is not an integer")
        return None


@dataclass
class _Rows:
    """What the manifest rows say (filled by _scan_rows)."""

    ids: list[int] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    label_to_cid: dict[int, set[int | None]] = field(default_factory=dict)
    label_to_name: dict[int, set[str]] = field(default_factory=dict)
    present: list[Path] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0


def verify(folder: Path) -> tuple[dict, list[str]]:
    """Return (summary, problems); no problems means the dataset is sound.

    summary holds num_classes, num_train, num_test (as found in manifest.csv) and
    content_sha256 (recomputed; None when files are missing).
    """
    folder = Path(folder)
    summary: dict = {"folder": str(folder), "num_classes": 0, "num_train": 0, "num_test": 0, "content_sha256": None}
    if not folder.is_dir():
        return summary, [f"{folder} is not a folder; make it with python -m data_prep.carve --source ... --out {folder}"]
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return summary, [f"{manifest} is missing; make the dataset with python -m data_prep.carve --source ... --out {folder}"]
    problems: list[str] = []
    info = _read_info(folder, problems)

    try:
        reader = csv.DictReader(io.StringIO(manifest.read_text(encoding="utf-8")))
        rows = list(reader)
        header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as e:
        return summary, problems + [f"{manifest} cannot be read as CSV ({e})"]
    missing_cols = [c for c in MANIFEST_COLUMNS if c not in header]
    if missing_cols:
        return summary, problems + [f"{manifest} lacks columns {missing_cols} (has {header})"]
    if not rows:
        problems.append(f"{manifest} lists no images")

    found = _scan_rows(folder, rows, problems)
    _check_unlisted(folder, found.paths, problems)
    _check_decodes(found.present, problems)
    k, cids, names = _check_labels(found, problems)

    summary.update(num_classes=k, num_train=found.n_train, num_test=found.n_test)
    if info:
        for key, value in (("num_classes", k), ("num_train", found.n_train), ("num_test", found.n_test),
                           ("classes", names), ("class_ids", cids)):
            if key in info and info[key] != value:
                problems.append(f"dataset.json: {key} is {info[key]!r} but manifest.csv gives {value!r}")
            elif key not in info:
                problems.append(f"dataset.json lacks {key!r}")
    if len(found.present) == len(rows):
        _check_content(folder, info, summary, problems)
    return summary, problems


def _read_info(folder: Path, problems: list[str]) -> dict:
    """dataset.json's dict ({} when missing or unreadable, with the problem noted)."""
    try:
        info = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        problems.append(f"{folder / 'dataset.json'} is missing")
        return {}
    except (ValueError, UnicodeDecodeError) as e:
        problems.append(f"{folder / 'dataset.json'} is not valid JSON ({e})")
        return {}
    return info


def _scan_rows(folder: Path, rows: list[dict], problems: list[str]) -> _Rows:
    """Each row's fields and file; then image ids unique and sorted."""
    found = _Rows()
    for n, row in enumerate(rows, 2):  # row 1 is the header
        image_id = _int(row["image_id"], n, "image_id", problems)
        label = _int(row["label"], n, "label", problems)
        cid = _int(row["cub_class_id"], n, "cub_class_id", problems)
        if row.get("source_class_id", row["cub_class_id"]) != row["cub_class_id"]:  # the column is an extension
            problems.append(f"manifest.csv row {n}: source_class_id {row['source_class_id']!r} differs from its twin "
                            f"cub_class_id {row['cub_class_id']!r}")
        if image_id is not None:
            found.ids.append(image_id)
        if row["is_train"] == "1":
            found.n_train += 1
        elif row["is_train"] == "0":
            found.n_test += 1
        else:
            problems.append(f"manifest.csv row {n}: is_train {row['is_train']!r} is not 0 or 1")
        if label is not None:
            found.label_to_cid.setdefault(label, set()).add(cid)
            found.label_to_name.setdefault(label, set()).add(row["class_name"])
        rel = row["path"] or ""
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] != "images":
            problems.append(f"manifest.csv row {n}: path {rel!r} is not relative under images/")
            continue
        if rel in found.paths:
            problems.append(f"manifest.csv row {n}: path {rel!r} is listed twice")
        found.paths.add(rel)
        if not (folder / rel).is_file():
            problems.append(f"{folder / rel} is listed in manifest.csv (image {row['image_id']}) but missing")
        else:
            found.present.append(folder / rel)

    if len(set(found.ids)) != len(found.ids):
        problems.append("manifest.csv: image_id values repeat")
    if found.ids != sorted(found.ids):
        problems.append("manifest.csv: rows are not sorted by image_id")
    return found


def _check_unlisted(folder: Path, paths: set[str], problems: list[str]) -> None:
    images_dir = folder / "images"
    if images_dir.is_dir():
        for f in sorted(images_dir.rglob("*")):
            rel = f.relative_to(folder).as_posix()
            if f.is_file() and rel not in paths:
                problems.append(f"{f} is not listed in manifest.csv")


def _check_decodes(present: list[Path], problems: list[str]) -> None:
    for f in tqdm(present, desc="decoding images", unit="img", disable=None, leave=False):
        problem = image_problem(f)  # the same check (and words) as fgvc's preflight
        if problem:
            problems.append(problem)


def _check_labels(found: _Rows, problems: list[str]) -> tuple[int, list, list]:
    """Labels: 0..K-1, one class id and one name each, in class-id order. Returns
    (K, class ids, class names) by label."""
    label_to_cid, label_to_name = found.label_to_cid, found.label_to_name
    k = len(label_to_cid)
    labels = sorted(label_to_cid)
    if labels and labels != list(range(k)):
        problems.append(f"manifest.csv: labels are {labels[:10]}{'...' if k > 10 else ''}; expected 0..{k - 1} with none missing")
    for lab in labels:
        if len(label_to_cid[lab]) != 1:
            problems.append(f"manifest.csv: label {lab} maps to several cub_class_id values {sorted(map(str, label_to_cid[lab]))}")
        if len(label_to_name[lab]) != 1:
            problems.append(f"manifest.csv: label {lab} maps to several class_name values {sorted(label_to_name[lab])}")
    cids = [next(iter(label_to_cid[lab])) for lab in labels]
    names = [next(iter(label_to_name[lab])) for lab in labels]
    if all(c is not None for c in cids) and cids != sorted(cids):
        problems.append("manifest.csv: labels are not in class-id order")
    return k, cids, names


def _check_content(folder: Path, info: dict, summary: dict, problems: list[str]) -> None:
    """Recompute content_sha256 into `summary` and compare it with dataset.json's."""
    try:
        summary["content_sha256"] = content_sha256(folder)
    except FGVCError as e:  # pragma: no cover - files vanished meanwhile
        problems.append(str(e))
    if info and info.get("content_sha256") != summary["content_sha256"]:
        problems.append(
            f"dataset.json: content_sha256 {str(info.get('content_sha256'))[:12]}... does not match the files "
            f"({summary['content_sha256'][:12]}...): the manifest or an image changed since carving"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m data_prep.verify",
        description="Check a dataset folder written by data_prep.carve: manifest vs files, every image decodes, "
        "labels and counts, content_sha256. Exit status 0 when sound, 1 with the list of problems.",
    )
    ap.add_argument("folder", type=Path, help="dataset folder, e.g. data/cub_sparrows")
    args = ap.parse_args(argv)
    summary, problems = verify(args.folder)
    print(f"{args.folder}: {summary['num_classes']} classes, {summary['num_train']} train, {summary['num_test']} test")
    if problems:
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"OK (content_sha256 {summary['content_sha256']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
