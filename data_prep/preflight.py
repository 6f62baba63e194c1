"""`make benchmark`'s first step: name every missing input at once, before anything is done.

Checks, without downloading, carving or training anything: the benchmark YAML; the data
(the prepared folder, else CUB=, else whether the official archive's site can be reached);
the pretrained weights every model of the grid needs (WEIGHTS=, else timm's download: the
local cache or a reachable hub). When any is missing, one error names them all and the
command to type, built from the one that was typed (`--typed`: make's command-line variables).

    python -m data_prep.preflight --data data/cub_sparrows --source "" --bench benchmarks/sparrows.yaml
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from data_prep._cli import run
from data_prep.datasets import DATASETS, DEFAULT, get
from data_prep.prepare import data_problem
from fgvc.errors import FGVCError

PLACEHOLDER = {"CUB": "/path/to/CUB_200_2011.tgz", "WEIGHTS": "/path/to/weights.safetensors"}


def weights_problems(bench: Path, weights: Path | None) -> list[str]:
    """What keeps the grid's models from their weights (or from loading the YAML at all)."""
    from fgvc.config import expand_grid, load_grid
    from fgvc.models import weights_problem

    try:
        configs = expand_grid(load_grid(bench))
    except FGVCError as e:
        return [str(e)]
    needs = sorted({(c.model, str(c.pretrained)): c for c in configs}.items())
    found = [weights_problem(c.model, c.pretrained, weights) for _, c in needs]
    return list(dict.fromkeys(p for p in found if p))


def suggestion(goal: str, typed: str, fix: list[str], placeholders: dict[str, str] | None = None) -> str:
    """`make GOAL` with the typed variables, those in `fix` replaced by placeholders
    (PLACEHOLDER's, or `placeholders`' where given: e.g. SOURCE= of another dataset)."""
    shown = {**PLACEHOLDER, **(placeholders or {})}
    kept = [v for v in shlex.split(typed) if v.partition("=")[0] not in fix]
    return shlex.join(["make", goal, *kept]) + "".join(f" {k}={shown[k]}" for k in fix)


def check_inputs(data: Path, source: Path | None, classes: str | None, bench: Path, weights: Path | None,
                 goal: str = "benchmark", typed: str = "", dataset: str = DEFAULT, level: str | None = None) -> None:
    """Raise one FGVCError naming every missing input and the command that gives them all."""
    problems, fix = [], []
    data_msg = data_problem(data, source, classes, dataset, level)
    source_var = "CUB" if dataset == DEFAULT else "SOURCE"  # the make variable that gives the data source
    if data_msg:
        problems.append(f"data: {data_msg}")
        fix.append(source_var)
    weights_msgs = weights_problems(bench, weights)
    for msg in weights_msgs:
        problems.append(f"weights: {msg}")
    if any(not m.startswith("benchmark file") for m in weights_msgs):
        fix.append("WEIGHTS")
    if problems:
        n = f"{len(problems)} inputs" if len(problems) > 1 else "an input"
        raise FGVCError(f"make {goal} is missing {n}, nothing was done: " + "; ".join(problems)
                        + (f"; run: {suggestion(goal, typed, fix, {'SOURCE': get(dataset).placeholder})}" if fix else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data_prep.preflight",
                                 description="Check a benchmark's inputs (data source, weights) all at once, "
                                             "doing nothing else (what `make benchmark` runs first).")
    ap.add_argument("--data", required=True, type=Path, help="prepared dataset folder (make: DATA=)")
    ap.add_argument("--source", default="", help="CUB_200_2011.tgz or a CUB_200_2011/ folder (make: CUB=), or "
                                                  "another dataset's copy (make: SOURCE=); empty: download")
    ap.add_argument("--classes", default=None,
                    help="class selection (make: CLASSES=; default: sparrows for cub, all for the others)")
    ap.add_argument("--dataset", default=DEFAULT, help=f"one of {', '.join(DATASETS)} (make: DATASET=; default: "
                                                       "%(default)s)")
    ap.add_argument("--level", default=None, help="label level (make: LEVEL=; default: the dataset's finest)")
    ap.add_argument("--bench", required=True, type=Path, help="benchmark YAML (make: BENCH=)")
    ap.add_argument("--weights", default="", help="local pretrained weights file (make: WEIGHTS=; empty: timm's "
                                                  "download)")
    ap.add_argument("--goal", default="benchmark", help="the make target, for the suggested command")
    ap.add_argument("--typed", default="", help="the variables typed on make's command line ($(MAKEOVERRIDES))")
    args = ap.parse_args(argv)
    source = Path(args.source) if args.source.strip() else None
    weights = Path(args.weights) if args.weights.strip() else None
    check_inputs(args.data, source, args.classes or None, args.bench, weights, args.goal, args.typed, args.dataset,
                 args.level or None)
    print(f"inputs ok: data {source or args.data}, weights {weights or 'timm download'}, grid {args.bench}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
