"""Do two or more results folders hold the same runs, number for number? Compare them run by run.

    python tools/same_runs.py ../commit-check/10ea888 ../commit-check/9470783 ../commit-check/c49e5dc \\
        --out results/commit-check-lite0-cpu/same_runs.md

For every run id the folders share: metrics.csv (every column both sides have but the clock's),
predictions.csv and features.npz (every array) against the first folder's, each `identical` or the
largest absolute difference; beside it the commit, device and precision each folder's run
recorded. Trained from different commits on one machine with `--deterministic` and the same
thread count (benchmarks/commit-check.yaml says how), identical files say the commits train the
same; runs from different machines differ in the last bits, so this is the check for code, not
for hardware. Torch-free; exit 1 when a shared run differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CLOCK = ("seconds",)  # metrics.csv columns that measure time, not training


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="results folders (each with runs/); the first is the reference")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown here too (default: only print it)")
    args = p.parse_args(argv)
    if len(args.folders) < 2:
        p.error("give two or more results folders")
    return args


def run_dirs(folder: Path) -> dict[str, Path]:
    """Run id -> folder of every run that finished (row.json and metrics.csv present)."""
    runs = folder / "runs"
    if not runs.is_dir():
        raise SystemExit(f"same_runs.py: {folder}: no runs/ folder (give a benchmark's output folder)")
    return {d.name: d for d in sorted(runs.iterdir()) if (d / "row.json").is_file() and (d / "metrics.csv").is_file()}


def largest(a, b) -> str:
    """`identical`, or the largest absolute difference of two numeric arrays (or `shape a vs b`)."""
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    numeric = a.dtype.kind in "fiub" and b.dtype.kind in "fiub"
    if np.array_equal(a, b, equal_nan=numeric):  # an empty cell (NaN) on both sides is the same
        return "identical"
    if not numeric:
        return f"{int((a != b).sum())} of {a.size} values differ"
    return f"max abs diff {np.nanmax(np.abs(a.astype(float) - b.astype(float))):.3g}"


def compare_metrics(a: Path, b: Path) -> str:
    import pandas as pd

    ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    cols = [c for c in ma.columns if c in mb.columns and c not in CLOCK]
    if len(ma) != len(mb):
        return f"{len(ma)} vs {len(mb)} epochs"
    diffs = {c: largest(ma[c].to_numpy(), mb[c].to_numpy()) for c in cols}
    bad = [f"{c}: {d}" for c, d in diffs.items() if d != "identical"]
    return "; ".join(bad) if bad else f"identical ({len(cols)} columns x {len(ma)} epochs)"


def compare_predictions(a: Path, b: Path) -> str:
    pa, pb = a / "predictions.csv", b / "predictions.csv"
    if not (pa.is_file() and pb.is_file()):
        return "missing"
    if pa.read_bytes() == pb.read_bytes():
        return "identical"
    import pandas as pd

    fa, fb = pd.read_csv(pa), pd.read_csv(pb)
    if list(fa.columns) != list(fb.columns) or len(fa) != len(fb):
        return "different layout"
    bad = [f"{c}: {d}" for c in fa.columns if (d := largest(fa[c].to_numpy(), fb[c].to_numpy())) != "identical"]
    return "; ".join(bad)


def compare_features(a: Path, b: Path) -> str:
    fa, fb = a / "features.npz", b / "features.npz"
    if not (fa.is_file() and fb.is_file()):
        return "missing"
    import numpy as np

    with np.load(fa) as x, np.load(fb) as y:
        if sorted(x.files) != sorted(y.files):
            return f"arrays {sorted(x.files)} vs {sorted(y.files)}"
        bad = [f"{k}: {d}" for k in sorted(x.files) if (d := largest(x[k], y[k])) != "identical"]
    return "; ".join(bad) if bad else f"identical ({len(x.files)} arrays)"


def recorded(run: Path) -> str:
    """`commit, device (CPU kind, where recorded), precision` as the run recorded them."""
    row = json.loads((run / "row.json").read_text())
    prov = json.loads((run / "provenance.json").read_text()) if (run / "provenance.json").is_file() else {}
    commit = str(row.get("git_commit") or prov.get("git_commit") or "?")[:7]
    cpu = f" ({prov['cpu_id']}, {prov.get('cpu_capability')})" if prov.get("cpu_id") else ""
    return (f"{commit}, {row.get('device') or prov.get('device') or '?'}{cpu}, "
            f"{prov.get('precision') or 'fp32 (not recorded)'}")


def report(folders: list[Path]) -> tuple[str, bool]:
    """The Markdown comparison and whether every shared run is identical in every file."""
    runs = [run_dirs(f) for f in folders]
    shared = [r for r in runs[0] if all(r in other for other in runs[1:])]
    lines = [f"# Same runs? {len(shared)} run(s) in all of {len(folders)} folders", "",
             f"Reference: `{folders[0]}`. Each file against the reference's; `identical` means byte for byte "
             "(metrics.csv: every column both have but the clock's).", ""]
    same = True
    for rid in shared:
        lines += [f"## {rid}", "", "| folder | commit, device, precision | metrics.csv | predictions.csv | features.npz |",
                  "|---|---|---|---|---|", f"| `{folders[0]}` | {recorded(runs[0][rid])} | reference | reference | reference |"]
        for folder, other in zip(folders[1:], runs[1:]):
            a, b = runs[0][rid], other[rid]
            cells = [compare_metrics(a, b), compare_predictions(a, b), compare_features(a, b)]
            same &= all(c.startswith("identical") or c == "missing" for c in cells)
            lines.append(f"| `{folder}` | {recorded(b)} | " + " | ".join(cells) + " |")
        lines.append("")
    alone = sorted({r for rs in runs for r in rs} - set(shared))
    if alone:
        lines += [f"In some folders only: {', '.join(alone)}.", ""]
    lines += [("**Every shared run is identical in every file compared.**" if same and shared else
               "**Some shared runs differ** (see above)." if shared else "**No run is in every folder.**"), ""]
    return "\n".join(lines), same and bool(shared)


def main(argv: list[str]) -> int:
    args = parse(argv)
    text, same = report(args.folders)
    print(text, end="")
    if args.out is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from fgvc.io import atomic_write_text

        atomic_write_text(args.out, text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
