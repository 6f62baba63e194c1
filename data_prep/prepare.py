"""`make data`: make sure a verified dataset folder exists, doing only the steps still missing.

Already there -> say so (fast check; `--verify` for the full one). Otherwise carve it from
`--source` (archive or folder), or download the official archive(s) to `--dest` first
(where the owners allow it: a dataset without a public download is one error naming what
to fetch by hand); then verify what was written. `--dataset` picks the dataset (CUB-200-2011
by default; data_prep/datasets/ lists them, docs/datasets.md describes them).

    python -m data_prep.prepare --out data/cub_sparrows [--source CUB_200_2011.tgz]
    python -m data_prep.prepare --dataset aircraft --out data/aircraft [--source fgvc-aircraft-2013b.tar.gz]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from urllib.parse import urlsplit

from data_prep._cli import run
from data_prep.carve import carve
from data_prep.datasets import DATASETS, DEFAULT, DatasetSpec, resolve
from data_prep.download import CUB_MD5, CUB_URL, download, reachable
from data_prep.verify import verify
from fgvc.errors import FGVCError

SOURCES = "sources"  # downloads of the datasets other than CUB go to <dest>/sources/<dataset>/


def _same(folder: Path, info: dict, key: str, wanted: str | None, default: str | None) -> None:
    """Refuse to reuse a dataset folder made with another dataset / level / selection."""
    held = info.get(key, default)
    if wanted is not None and held is not None and held != wanted:
        what = {"selection": "classes"}.get(key, key)
        raise FGVCError(f"{folder} holds {what} {held!r}, not {wanted!r}; "
                        "choose another --out (DATA=) or pass --force to replace it")


def is_prepared(folder: Path, classes: str | None = None, dataset: str | None = None, level: str | None = None) -> bool:
    """Quick check: dataset.json and manifest.csv readable, every listed image present.

    With `classes` (`dataset`, `level`), a dataset carved with another selection (dataset,
    level) raises FGVCError rather than being silently reused. Folders carved before
    dataset.json named its dataset are CUB's.
    """
    folder = Path(folder)
    try:
        info = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError):
        return False
    if not rows or not all((folder / r.get("path", "")).is_file() for r in rows):
        return False
    if len(rows) != info.get("num_train", -1) + info.get("num_test", -1):
        return False
    _same(folder, info, "dataset", dataset, DEFAULT)
    _same(folder, info, "level", level, None)
    _same(folder, info, "selection", classes, None)
    return True


def offline_hint(spec: DatasetSpec) -> str:
    """What to pass instead when the owners' site cannot be reached (download's error ends with it)."""
    files = ", ".join(d.name for d in spec.downloads)
    return f"no network? fetch {files} by hand and pass {spec.local}: make data DATASET={spec.name} SOURCE={spec.placeholder}"


def _other_problem(spec: DatasetSpec, out: Path, source: Path | None) -> str | None:
    """data_problem for the datasets other than CUB (whose messages name CUB=)."""
    if source is not None:
        return None if Path(source).exists() else f"SOURCE={source}: not found ({spec.local})"
    if not spec.downloads:
        return f"no dataset in {out} and no SOURCE= given; {spec.by_hand}"
    if reachable(spec.downloads[0].url):
        return None
    return (f"no dataset in {out} and no SOURCE= given, and the official site {urlsplit(spec.downloads[0].url).hostname} "
            f"is unreachable (no network?); {offline_hint(spec)}")


def data_problem(out: Path, source: Path | None = None, classes: str | None = None, dataset: str = DEFAULT,
                 level: str | None = None) -> str | None:
    """Why `prepare(out, source, classes, dataset=dataset)` could not make its dataset, checked
    without doing anything (no carving, no download), or None: `out` is already prepared, or
    `source` exists, or the official archive's site is reachable."""
    spec, classes, level = resolve(dataset, classes, level)
    try:
        if is_prepared(out, classes, dataset, level):
            return None
    except FGVCError as e:
        return str(e)
    if dataset != DEFAULT:
        return _other_problem(spec, out, source)
    if source is not None:
        return None if Path(source).exists() else f"CUB={source}: not found (an archive CUB_200_2011.tgz or a folder)"
    if reachable(CUB_URL):
        return None
    return (f"no dataset in {out} and no CUB= given, and the official archive's site {urlsplit(CUB_URL).hostname} "
            "is unreachable (no network?)")


def fetch(spec: DatasetSpec, dest: Path) -> Path:
    """Download a dataset's official files (md5-checked, resumable) into `dest/sources/<name>/`;
    return that folder. A dataset without a public download raises the error naming what to fetch."""
    if not spec.downloads:
        raise FGVCError(f"no --source (SOURCE=) given and {spec.by_hand}")
    folder = Path(dest) / SOURCES / spec.name
    print(f"no --source (SOURCE=) given: downloading the official {spec.title} files to {folder}/")
    for d in spec.downloads:
        download(d.url, folder, d.md5, hint=offline_hint(spec))
    return folder


def prepare(out: Path, source: Path | None = None, classes: str | None = None, dest: Path = Path("data"),
            *, force: bool = False, full_verify: bool = False, dataset: str = DEFAULT, level: str | None = None) -> Path:
    """Ensure `out` holds a verified dataset of `dataset` (`classes`, `level`: its defaults when None); return `out`."""
    out = Path(out)
    spec, classes, level = resolve(dataset, classes, level)
    if not force and is_prepared(out, classes, dataset, level):
        if full_verify:
            _verify_or_raise(out)
        print(f"{out}: dataset already prepared (python -m data_prep.verify {out} checks it fully)")
        return out
    if out.exists() and any(out.iterdir()) and not force:
        raise FGVCError(f"{out} exists but is not a complete dataset; delete it or pass --force to rebuild it")
    if dataset == DEFAULT:
        if source is None:
            print(f"no --source (CUB=) given: downloading the official archive to {dest}/")
            source = download(CUB_URL, Path(dest), CUB_MD5)
        info = carve(Path(source), out, classes, force=force)
    else:
        info = spec.carve(Path(source) if source is not None else fetch(spec, dest), out, classes, level, force)
    print(f"carved {out}: {info['num_classes']} classes, {info['num_train']} train, {info['num_test']} test")
    _verify_or_raise(out)
    return out


def _verify_or_raise(out: Path) -> None:
    summary, problems = verify(out)
    if problems:
        raise FGVCError(f"{out} fails verification ({len(problems)} problems, first: {problems[0]}); "
                        f"see python -m data_prep.verify {out}")
    print(f"verified {out}: {summary['num_classes']} classes, {summary['num_train']} train, {summary['num_test']} test")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m data_prep.prepare",
        description="Prepare a dataset folder for fgvc (what `make data` runs): reuse it when already there, "
        "else carve it from --source, else download the official archive(s) (CUB-200-2011, FGVC-Aircraft, "
        "Flowers-102, Oxford-IIIT Pets; Stanford Cars and NABirds have no public download) and carve from them; "
        "then verify.",
    )
    ap.add_argument("--out", required=True, type=Path, help="dataset folder, e.g. data/cub_sparrows")
    ap.add_argument("--dataset", default=DEFAULT, help=f"one of {', '.join(DATASETS)} (default: %(default)s)")
    ap.add_argument("--source", default="",
                    help="the dataset's official archive(s) or extracted folder, e.g. CUB_200_2011.tgz or an extracted "
                    "CUB_200_2011/ folder (default: empty = download it)")
    ap.add_argument("--classes", default=None,
                    help="class selection, as for data_prep.carve: ids or ranges of the dataset's class ids, name "
                    "patterns, 'all' (default: sparrows for cub, all for the others)")
    ap.add_argument("--level", default=None, help="label level (FGVC-Aircraft: variant, family or manufacturer; "
                    "default: the dataset's finest)")
    ap.add_argument("--dest", type=Path, default=Path("data"),
                    help=f"where to download when no --source is given (default: %(default)s/; other datasets than "
                    f"CUB in %(default)s/{SOURCES}/<dataset>/)")
    ap.add_argument("--force", action="store_true", help="rebuild --out even if it exists")
    ap.add_argument("--verify", action="store_true", help="fully verify an existing dataset instead of the quick check")
    args = ap.parse_args(argv)
    source = Path(args.source) if args.source.strip() else None
    prepare(args.out, source, args.classes or None, args.dest, force=args.force, full_verify=args.verify,
            dataset=args.dataset, level=args.level or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
