"""How `fgvc compare` scales with the rows of its files (issue 30, item 4): time and peak memory.

    python tools/compare_scale.py                  # writes results/speed/compare-scale.csv
    python tools/compare_scale.py --rows 1000 30000 --out /tmp/scale.csv

For each size N it writes two synthetic runs.csv files of N ok runs each (two groups, CE and
center loss, N/2 seeds each, so the paired statistics and P(improvement) see every run of a
group: the worst case for anything quadratic), then runs `python -m fgvc compare A B --out`
in a fresh process and records its wall time and peak resident memory (that process's
ru_maxrss, imports included). Before issue 30, P(improvement) alone built an (N/2) x (N/2)
matrix: 4.2 GB at 30,000 rows, "Unable to allocate 18.6 GiB" at 100,000. The goal: 100,000
rows within 2 GB and a minute. Not a unit test: its timings depend on the machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = (1_000, 10_000, 30_000, 100_000)
COLUMNS = ["rows_per_file", "groups", "seconds", "peak_rss_mb", "exit_status", "report_bytes", "git_commit",
           "python", "cpus"]
# The measured process: compare, then print its own peak RSS (Linux: kilobytes).
CHILD = """
import resource, sys
from fgvc.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)
"""


def write_runs(path: Path, rows: int, shift: float, seed: int) -> None:
    """A runs.csv with `rows` ok runs: CE and center loss, rows // 2 seeds each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run_id", "benchmark", "model", "method", "center_weight", "lr", "seed", "epochs", "top1",
                    "top5", "mean_class_acc", "status"])
        for k in range(rows):
            method, s = ("ce", k // 2) if k % 2 == 0 else ("center", k // 2)
            top1 = rng.normal(60 + (shift if method == "center" else 0), 2)
            w.writerow([f"m-{method}-s{s}-{k:08x}", "scale", "m", method, 0 if method == "ce" else 0.01, 0.01, s,
                        30, f"{top1:.4f}", f"{top1 + 20:.4f}", f"{top1 - 1:.4f}", "ok"])


def measure(rows: int, folder: Path) -> dict:
    a, b, out = folder / f"a-{rows}.csv", folder / f"b-{rows}.csv", folder / f"compare-{rows}.md"
    write_runs(a, rows, 0.0, 1)
    write_runs(b, rows, 0.3, 2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, "compare", str(a), str(b), "--out", str(out)], cwd=ROOT,
                       env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    last = r.stdout.strip().splitlines()[-1].split() if r.stdout.strip() else ["nan", str(r.returncode)]
    if r.returncode != 0:
        print(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}", file=sys.stderr)
    return dict(rows_per_file=rows, groups=2, seconds=round(seconds, 2),
                peak_rss_mb=round(float(last[0]) / 1024, 1) if r.returncode == 0 else "",
                exit_status=r.returncode, report_bytes=out.stat().st_size if out.is_file() else 0)


def commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS), help="runs per file, one size each")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "speed" / "compare-scale.csv")
    args = p.parse_args(argv)
    found = []
    with tempfile.TemporaryDirectory(prefix="compare-scale.") as tmp:
        for rows in args.rows:
            row = dict(measure(rows, Path(tmp)), git_commit=commit(), python=sys.version.split()[0],
                       cpus=os.cpu_count())
            print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
            found.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(found)
    print(f"wrote {args.out}")
    return 0 if all(r["exit_status"] == 0 for r in found) else 1


if __name__ == "__main__":
    sys.exit(main())
