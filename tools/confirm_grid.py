"""Write the confirmation grid of a finished sweep: each kept method at the setting the sweep chose.

    python tools/confirm_grid.py results/fair-lite0-cpu benchmarks/fair-lite0.yaml \\
        --name fair-confirm-lite0 --seeds 5 6 7 8 9 --out benchmarks/fair-confirm-lite0.yaml

The sweep's choice is the report's (fgvc.report.sweep: per method, the setting with the best
mean validation top-1 over seeds; the methods a confirmation carries: CE, the best three others
and any other that beats CE, `confirm_methods`). The new grid keeps the sweep grid's other keys
(backbone, epochs, batch, optimizer, augmentation, centre settings), drops what the sweep tuned
and its halving, trains on the full training set (`val_fraction: 0`) with the given new seeds,
and names the sweep in `selected_from`, so `fgvc benchmark` checks seeds and settings before it
trains and `fgvc report` again afterwards (fgvc.report.protocol). Refused while the sweep has
runs under way. Torch-free.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# What a sweep grid tunes or how it selects: not carried into its confirmation.
SWEEP_ONLY = ("name", "benchmark", "cases", "halving", "seeds", "seed", "lr", "center_weight", "label_smoothing",
              "methods", "method", "val_fraction", "val_seed", "selected_from")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="the sweep's results folder (runs.csv and run folders)")
    p.add_argument("grid", type=Path, help="the sweep's benchmark YAML (its other keys are kept)")
    p.add_argument("--name", required=True, help="the confirmation grid's name (its results folder's stem)")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="new seeds, none of the sweep's")
    p.add_argument("--out", type=Path, default=None, help="the YAML to write (default: standard output)")
    return p.parse_args(argv)


def confirmation_yaml(sweep: Path, grid: Path, name: str, seeds: list[int]) -> str:
    """The confirmation grid's YAML text (a header comment, then the keys)."""
    import yaml

    from fgvc.errors import FGVCError
    from fgvc.report.load import group_keys, load_runs
    from fgvc.report.progress import under_way
    from fgvc.report.sweep import confirm_cases, sweep_families, sweep_runs

    if not (sweep / "runs.csv").is_file():
        raise FGVCError(f"{sweep}: no runs.csv: give a sweep's results folder")
    pending = under_way(sweep)
    if pending:
        raise FGVCError(f"{sweep}: {len(pending)} run(s) under way: the sweep's choice is not final")
    runs = load_runs(sweep)
    families = sweep_families(sweep_runs(runs[runs.status == "ok"]), group_keys(runs))
    if len(families) != 1:
        raise FGVCError(f"{sweep}: {len(families)} families of settings (backbones or splits): one choice per method "
                        "is needed; write the confirmation by hand from its report")
    try:
        base = yaml.safe_load(grid.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise FGVCError(f"{grid}: cannot read the sweep's grid ({e})") from None
    used = sorted(set(seeds) & {int(s) for s in runs.seed})
    if used:
        raise FGVCError(f"--seeds {' '.join(map(str, used))}: used by the sweep; choose seeds it did not use")
    cases = [{k: yaml.safe_load(str(v)) for k, v in c.items()} for c in confirm_cases(families[0])]
    keys = {"name": name, "selected_from": sweep.name}
    keys |= {k: v for k, v in base.items() if k not in SWEEP_ONLY}
    keys |= {"seeds": list(seeds), "val_fraction": 0.0, "eval_every": 0, "cases": cases}
    header = (f"# Confirmation of {sweep.name} (written by tools/confirm_grid.py from its choice on validation):\n"
              f"# each method at the setting the sweep chose, on the full training set, seeds "
              f"{', '.join(map(str, seeds))}\n# (none of the sweep's); the test set is evaluated once, after the last "
              f"epoch. The sweep's grid: {grid.name}.\n")
    body = yaml.safe_dump(keys, sort_keys=False, default_flow_style=None, allow_unicode=True)
    return header + body


def main(argv: list[str]) -> int:
    from fgvc.errors import FGVCError
    from fgvc.io import atomic_write_text

    args = parse(argv)
    try:
        text = confirmation_yaml(args.sweep, args.grid, args.name, args.seeds)
    except FGVCError as e:
        raise SystemExit(f"confirm_grid.py: {e}") from None
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
