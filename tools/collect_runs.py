"""Copy the finished runs of a benchmark output folder into another one, to commit them.

    python tools/collect_runs.py ../fgvc-pinned-10ea888/results/sweep-lambda-lite0-cpu results/sweep-lambda-lite0-cpu

A grid trained elsewhere (`tools/pinned_grid.sh`'s worktree, another machine) writes its run
folders there; this copies each finished, whole run (row.json status ok and every file a
finished run has, fgvc.runs.table.read_run_row) into DST/runs/, without checkpoints (never
committed), each folder through a temporary name and one rename, then rebuilds DST/runs.csv.
Unfinished, failed and damaged runs are listed and left where they are; a run already in DST
is replaced only when its row.json differs. Torch-free.
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
    for run in sorted(p for p in (src / "runs").iterdir() if p.is_dir()):
        if not (run / "row.json").is_file():
            left.append(f"{run.name}: not finished")
            continue
        row, problems = read_run_row(run / "row.json")
        if row is None or problems:
            left.append(f"{run.name}: damaged ({'; '.join(problems)})")
        elif row["status"] != "ok":
            left.append(f"{run.name}: {row['status']} ({row.get('error', '')})")
        else:
            done.append(run)
    return done, left


def copy_run(run: Path, dst_runs: Path) -> bool:
    """Copy one run folder (no checkpoints) to dst_runs/<name>; False when already identical."""
    target = dst_runs / run.name
    if target.is_dir() and (target / "row.json").is_file() and \
            (target / "row.json").read_bytes() == (run / "row.json").read_bytes():
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
    from fgvc.runs.table import write_runs_csv

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="benchmark output folder the runs were trained in")
    p.add_argument("dst", type=Path, help="benchmark output folder to copy them into (created)")
    args = p.parse_args(argv)
    if not (args.src / "runs").is_dir():
        print(f"collect_runs: {args.src} has no runs/ folder: give a benchmark output folder", file=sys.stderr)
        return 2
    if args.src.resolve() == args.dst.resolve():
        print("collect_runs: SRC and DST are the same folder", file=sys.stderr)
        return 2
    done, left = finished_runs(args.src)
    (args.dst / "runs").mkdir(parents=True, exist_ok=True)
    copied = sum(copy_run(run, args.dst / "runs") for run in done)
    write_runs_csv(args.dst)
    for line in left:
        print(f"  left out  {line}")
    total = sum(1 for p in (args.dst / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    print(f"collect_runs: {len(done)} finished runs in {args.src}, {copied} copied or updated; "
          f"{total} runs in {args.dst}, runs.csv rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
