"""Where the rows of a results CSV come from, for `fgvc compare`'s warnings: the benchmark
names in a runs.csv, and the dataset content checksums in the provenance.json of the run
folders beside it (`<csv folder>/runs/<run_id>/`). Two files from different benchmarks or
datasets can still be compared (that may be the point), but never without a word.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fgvc.names import is_run_id


def benchmarks(path: Path, frame: pd.DataFrame) -> set[str]:
    if "benchmark" not in frame.columns:
        return set()
    return {str(b).strip() for b in frame.benchmark if str(b).strip()}


def datasets(path: Path, frame: pd.DataFrame) -> set[str]:
    """Dataset content checksums of the rows' run folders (where they are beside the CSV)."""
    runs = Path(path).parent / "runs"
    if "run_id" not in frame.columns or not runs.is_dir():
        return set()
    found = set()
    for run_id in frame.run_id:
        if not is_run_id(run_id):
            continue  # not a folder of runs/ (fgvc.names.RUN_ID): nothing to open
        try:
            prov = json.loads((runs / str(run_id) / "provenance.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        sha = prov.get("dataset_content_sha256") if isinstance(prov, dict) else None
        if sha:
            found.add(str(sha))
    return found


def _names(values: set[str], short: bool = False) -> str:
    return ", ".join(sorted(f"{v[:12]}..." if short else v for v in values))


def source_warnings(files: list[tuple[Path, pd.DataFrame]]) -> list[str]:
    """One line per file that differs from the first in benchmark or dataset."""
    out = []
    (base_path, base), rest = files[0], files[1:]
    b0, d0 = benchmarks(base_path, base), datasets(base_path, base)
    for i, (path, frame) in enumerate(rest, 2):
        b, d = benchmarks(path, frame), datasets(path, frame)
        if b0 and b and b != b0:
            out.append(f"warning: [1] and [{i}] come from different benchmarks ({_names(b0)} vs {_names(b)}): "
                       "rows are paired on settings only")
        if d0 and d and d != d0:
            out.append(f"warning: [1] and [{i}] were trained on different datasets (content sha256 "
                       f"{_names(d0, True)} vs {_names(d, True)})")
    return out


__all__ = ["source_warnings", "benchmarks", "datasets"]
