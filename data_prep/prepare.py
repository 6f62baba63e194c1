"""`make data`: make sure a verified dataset folder exists, doing only the steps still missing.

Already there -> say so (fast check; `--verify` for the full one). Otherwise carve it from
`--source` (archive or folder), or download the official archive to `--dest` first; then
verify what was written.

    python -m data_prep.prepare --out data/cub_sparrows [--source CUB_200_2011.tgz]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from urllib.parse import urlsplit

from data_prep._cli import run
from data_prep.carve import carve
from data_prep.download import CUB_MD5, CUB_URL, download, reachable
from data_prep.verify import verify
from fgvc.errors import FGVCError


def is_prepared(folder: Path, classes: str | None = None) -> bool:
    """Quick check: dataset.json and manifest.csv readable, every listed image present.

    With `classes`, a dataset carved with another selection raises FGVCError rather than
    being silently reused.
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
    if classes is not None and info.get("selection", classes) != classes:
        raise FGVCError(f"{folder} holds classes {info.get('selection')!r}, not {classes!r}; "
                        "choose another --out (DATA=) or pass --force to replace it")
    return True


def data_problem(out: Path, source: Path | None = None, classes: str = "sparrows") -> str | None:
    """Why `prepare(out, source, classes)` could not make its dataset, checked without doing
    anything (no carving, no download), or None: `out` is already prepared, or `source`
    exists, or the official archive's site is reachable."""
    try:
        if is_prepared(out, classes):
            return None
    except FGVCError as e:
        return str(e)
    if source is not None:
        return None if Path(source).exists() else f"CUB={source}: not found (an archive CUB_200_2011.tgz or a folder)"
    if reachable(CUB_URL):
        return None
    return (f"no dataset in {out} and no CUB= given, and the official archive's site {urlsplit(CUB_URL).hostname} "
            "is unreachable (no network?)")


def prepare(out: Path, source: Path | None = None, classes: str = "sparrows", dest: Path = Path("data"),
            *, force: bool = False, full_verify: bool = False) -> Path:
    """Ensure `out` holds a verified dataset; return `out`."""
    out = Path(out)
    if not force and is_prepared(out, classes):
        if full_verify:
            _verify_or_raise(out)
        print(f"{out}: dataset already prepared (python -m data_prep.verify {out} checks it fully)")
        return out
    if out.exists() and any(out.iterdir()) and not force:
        raise FGVCError(f"{out} exists but is not a complete dataset; delete it or pass --force to rebuild it")
    if source is None:
        print(f"no --source (CUB=) given: downloading the official archive to {dest}/")
        source = download(CUB_URL, Path(dest), CUB_MD5)
    info = carve(Path(source), out, classes, force=force)
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
        "else carve it from --source, else download the official CUB-200-2011 archive and carve from it; "
        "then verify.",
    )
    ap.add_argument("--out", required=True, type=Path, help="dataset folder, e.g. data/cub_sparrows")
    ap.add_argument("--source", default="",
                    help="CUB_200_2011.tgz or an extracted CUB_200_2011/ folder (default: empty = download it)")
    ap.add_argument("--classes", default="sparrows", help="class selection, as for data_prep.carve (default: %(default)s)")
    ap.add_argument("--dest", type=Path, default=Path("data"),
                    help="where to download the archive when no --source is given (default: %(default)s/)")
    ap.add_argument("--force", action="store_true", help="rebuild --out even if it exists")
    ap.add_argument("--verify", action="store_true", help="fully verify an existing dataset instead of the quick check")
    args = ap.parse_args(argv)
    source = Path(args.source) if args.source.strip() else None
    prepare(args.out, source, args.classes, args.dest, force=args.force, full_verify=args.verify)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
