"""Copy the finished runs of a benchmark output folder into another one, to commit them.

    python tools/collect_runs.py ../fgvc-pinned-10ea888/results/sweep-lambda-lite0-cpu results/sweep-lambda-lite0-cpu

A grid trained elsewhere (`tools/pinned_grid.sh`'s worktree, another machine) writes its run
folders there; this copies each ended, whole run (row.json status ok with every file a
finished run has, fgvc.runs.table.read_run_row; or status pruned or failed: both are results
of the grid, and count in its tuning budget) into DST/runs/, without checkpoints (never
committed), each folder through a temporary name and one rename, then rebuilds DST/runs.csv.
With `--partial` the folders of runs still under way (no row.json: e.g. paused at a halving
rung) are copied too, so a grid restarted from DST on a machine without the worktree keeps
the validation scores its halving decisions rest on (the runs themselves restart from their
first epoch there: a checkpoint is never copied). Damaged runs are listed and left where they
are; a run already in DST is replaced only when its row.json (or, partial, its metrics.csv)
differs. Torch-free.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

SKIP = ("checkpoint*.pt", "*.ckpt", "*.pth", "*.tmp", "*.unreadable-*")  # never committed (.gitignore)


def finished_runs(src: Path) -> tuple[list[Path], list[str]]:
    """(whole finished run folders, one line per run left out and why)."""
    from fgvc.runs.table import read_run_row

    done, left = [], []
    for run in sorted(p for p in (src / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (run / "row.json").is_file():
            left.append(f"{run.name}: not finished")
            continue
        row, problems = read_run_row(run / "row.json")
        if row is None or problems:
            left.append(f"{run.name}: damaged ({'; '.join(problems)})")
        else:
            done.append(run)
    return done, left


def copy_run(run: Path, dst_runs: Path) -> bool:
    """Copy one run folder (no checkpoints) to dst_runs/<name>; False when already identical."""
    target = dst_runs / run.name
    key = "row.json" if (run / "row.json").is_file() else "metrics.csv"
    if target.is_dir() and (target / key).is_file() and (target / key).read_bytes() == (run / key).read_bytes() \
            and (key == "row.json" or not (target / "row.json").exists()):
        return False
    tmp = dst_runs / f".{run.name}.collecting"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run, tmp, ignore=shutil.ignore_patterns(*SKIP))
    if target.exists():
        old = dst_runs / f".{run.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old)
    else:
        tmp.rename(target)
    return True


def main(argv: list[str]) -> int:
    from fgvc.report.progress import under_way
    from fgvc.runs.table import write_runs_csv

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="benchmark output folder the runs were trained in")
    p.add_argument("dst", type=Path, help="benchmark output folder to copy them into (created)")
    p.add_argument("--partial", action="store_true",
                   help="also copy runs still under way (their metrics, not their checkpoints): see above")
    args = p.parse_args(argv)
    if not (args.src / "runs").is_dir():
        print(f"collect_runs: {args.src} has no runs/ folder: give a benchmark output folder", file=sys.stderr)
        return 2
    if args.src.resolve() == args.dst.resolve():
        print("collect_runs: SRC and DST are the same folder", file=sys.stderr)
        return 2
    done, left = finished_runs(args.src)
    (args.dst / "runs").mkdir(parents=True, exist_ok=True)
    partial = under_way(args.src) if args.partial else []  # a metrics.csv, no row.json
    copied = sum(copy_run(run, args.dst / "runs") for run in done + partial)
    write_runs_csv(args.dst)
    for line in left:
        print(f"  left out  {line}")
    total = sum(1 for p in (args.dst / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    print(f"collect_runs: {len(done)} ended runs" + (f" and {len(partial)} under way" if partial else "")
          + f" in {args.src}, {copied} copied or updated; "
          f"{total} runs in {args.dst}, runs.csv rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
