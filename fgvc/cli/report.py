"""Subcommands `fgvc report`, `fgvc visualize`, `fgvc compare`.

Each `add_*_parser(subparsers)` adds one subcommand and sets `func(args) -> int`; the
heavy imports (pandas, scipy, matplotlib, umap) happen only when a command runs, so
`fgvc --help` stays fast. FGVCError propagates to fgvc/cli.py, which prints it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgvc.cli.defaults import DEFAULT_DATA
from fgvc.errors import FGVCError
from fgvc.report.metric_names import PAIRED_METRICS


def _run_report(args: argparse.Namespace) -> int:
    from fgvc.report.report import write_report

    import sys

    from fgvc.report.load import damaged_runs

    embeddings = [e.strip() for e in args.embeddings.split(",") if e.strip() and e.strip() != "none"]
    path = write_report(Path(args.out), margin=args.margin, embeddings=embeddings, data=args.data)
    if args.latex:
        from fgvc.report.latex import write_latex

        tex = write_latex(path.read_text(encoding="utf-8"), path.parent / "report_tables.tex", "tab:fgvc")
        print(f"wrote {tex}")
    print(f"wrote {path}, {path.parent / 'group_summary.csv'} (and summary.csv), {path.parent / 'comparisons.csv'} "
          f"and figures in {path.parent / 'figures'}")
    for run_id, why in damaged_runs(Path(args.out)).items():
        print(f"damaged run {run_id}: {why} (left out of the report; `fgvc benchmark` trains it again)",
              file=sys.stderr)
    return 0


def _margin(text: str) -> float:
    """--margin: a positive, finite number of accuracy points."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid margin {text!r}: expected a number of points, e.g. 1") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"invalid margin {text!r}: must be positive and finite, e.g. 1")
    return value


def parse_where(items: list[str] | None) -> dict[str, str]:
    where: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise FGVCError(f"invalid --where {item!r}: expected key=value, e.g. --where center_weight=0.001")
        key, value = item.split("=", 1)
        where[key.strip()] = value.strip()
    return where


def _run_visualize(args: argparse.Namespace) -> int:
    from fgvc.report.visualize import visualize

    embeddings = [e for e in args.embedding.split(",") if e.strip()]
    paths = visualize(Path(args.out), seed=args.seed, split=args.split, embeddings=embeddings,
                      where=parse_where(args.where))
    for p in paths:
        print(f"wrote {p} (coordinates in {p.with_suffix('.csv').name})")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from fgvc.report.compare import compare

    on = [k for k in args.on.split(",")] if args.on else None
    text = compare([Path(p) for p in args.csv], out=Path(args.out) if args.out else None, margin=args.margin, on=on,
                   metric=args.metric)
    print(text, end="")
    if args.latex:
        from fgvc.report.latex import write_latex

        write_latex(text, Path(args.latex), "tab:fgvc-compare")
    return 0


def _run_leaderboard(args: argparse.Namespace) -> int:
    from fgvc.report.leaderboard import leaderboard

    out = leaderboard([Path(f) for f in args.folders], Path(args.out) if args.out else None, margin=args.margin)
    print(out.read_text(encoding="utf-8"), end="")
    print(f"wrote {out}, {out.with_suffix('.csv').name}, {out.with_suffix('.tex').name} and "
          f"figures/leaderboard_forest.png in {out.parent}", file=sys.stderr)
    return 0


def add_leaderboard_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "leaderboard", help="rank every method against the tuned CE over one or more results folders",
        description="Rank every method of one or more results folders (confirmations: each method at its chosen "
                    "setting, new seeds) by its paired test top-1 difference from its folder's CE: mean difference "
                    "with 95% Student-t and hierarchical bootstrap intervals, paired t-test p Holm-adjusted across "
                    "every row, P(improvement), the tuning budget each method had (from the sweep the folder names "
                    "in `selected_from`) and the protocol checks' verdict (docs/protocol.md). Writes "
                    "leaderboard.csv, leaderboard.md, leaderboard.tex (booktabs) and figures/leaderboard_forest.png.")
    p.add_argument("folders", nargs="+", metavar="OUT", help="results folders (each holds runs.csv and a CE group)")
    p.add_argument("--out", metavar="DIR", help="where to write (default: the first folder)")
    p.add_argument("--margin", type=_margin, default=1.0, metavar="M",
                   help="equivalence margin in accuracy points, as in `fgvc report` (default 1)")
    p.set_defaults(func=_run_leaderboard)
    return p


def add_report_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="write report.md, group_summary.csv and every figure for a benchmark output folder",
        description="Statistics over seeds for a benchmark output folder (OUT/runs.csv and OUT/runs/*): "
                    "protocol checks; accuracy table with 95% CIs; paired comparison of each method with CE (paired "
                    "t-test, TOST equivalence within a margin, hierarchical bootstrap over seeds and test images, "
                    "smallest effect detectable with 80% power, P(improvement), Holm across comparisons, exact "
                    "McNemar per seed pair); per-class accuracy with bootstrap intervals, confusion matrices, "
                    "training curves, feature compactness, timings and UMAP / t-SNE of the features (docs/"
                    "statistics.md explains each). Writes OUT/report.md, OUT/group_summary.csv (also as "
                    "summary.csv), OUT/comparisons.csv and OUT/figures/*.png; rerunning on the same files gives "
                    "identical report.md, group_summary.csv and comparisons.csv (the bootstrap uses a fixed RNG seed).")
    p.add_argument("out", metavar="OUT", help="benchmark output folder (holds runs.csv), e.g. results/sparrows")
    p.add_argument("--margin", type=_margin, default=1.0, metavar="M",
                   help="equivalence margin in accuracy points for the TOST verdict (default 1): the difference is "
                        "called equivalent to zero when the 90%% t interval lies inside ±M")
    p.add_argument("--embeddings", default="umap,tsne", metavar="LIST",
                   help="UMAP / t-SNE figures to draw first, out of umap,tsne, or none (default umap,tsne): each "
                        "compared pair at the first seed with saved features in every run, in a sweep at each "
                        "method's chosen setting; `fgvc visualize --seed S` draws another seed")
    p.add_argument("--latex", action="store_true",
                   help="also write OUT/report_tables.tex: every table of report.md as a booktabs LaTeX table")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="the dataset folder the runs used, for the flips figures' photos (default: %(default)s; "
                        "none drawn when it is missing or holds other data)")
    p.set_defaults(func=_run_report)
    return p


def add_visualize_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "visualize", help="UMAP / t-SNE plots of saved features, CE and center loss side by side",
        description="2-D UMAP and t-SNE embeddings of the saved final-epoch last-conv features "
                    "(OUT/runs/*/features.npz), no retraining. One PNG per embedding with the CE run and the "
                    "center-loss run of one seed side by side, each fitted on its own with random_state=0, "
                    "written to OUT/figures/<embedding>_<split>_s<seed>.png with the coordinates in a .csv beside it.")
    p.add_argument("out", metavar="OUT", help="benchmark output folder (holds runs.csv)")
    p.add_argument("--seed", type=int, default=None,
                   help="which seed's runs to plot (default: as `fgvc report` picks them: each compared pair at the "
                        "first seed with saved features in every run; in a sweep, each method's chosen setting)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="feature split (default test)")
    p.add_argument("--embedding", default="umap,tsne", metavar="LIST",
                   help="comma-separated embeddings out of umap,tsne (default umap,tsne)")
    p.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="pick runs by a runs.csv column when a grid holds several models or settings, e.g. "
                        "--where model=tf_efficientnet_lite0 --where center_weight=0.01 (repeatable; "
                        "center_weight/center_update filter the center-loss run only)")
    p.set_defaults(func=_run_visualize)
    return p


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare", help="compare two or more runs.csv / summary.csv files",
        description="Align the rows of two or more results CSVs (runs.csv or summary.csv, from any run, machine "
                    "or version) on model, method and the grid's hyper-parameters (and seed for runs.csv), and "
                    "print the metric differences against the first file as a Markdown table, with the report's "
                    "paired statistics over matching seeds where both sides have per-seed rows (paired t-test, "
                    "TOST equivalence within --margin, smallest effect detectable with 80% power, P(improvement), "
                    "Holm across groups). Only seeds both files have enter a difference, and the table says how "
                    "many; each file's own mean is shown as an unpaired mean. Rows present on one side only are "
                    "listed.")
    p.add_argument("csv", nargs="+", metavar="CSV", help="results CSVs; the first is the baseline")
    p.add_argument("--margin", type=_margin, default=1.0, metavar="M",
                   help="equivalence margin in accuracy points for the TOST verdict (default 1)")
    p.add_argument("--on", metavar="KEY,...",
                   help="align rows on these columns only (comma-separated, e.g. --on model,method to set a smoke "
                        "grid beside the 30-epoch grid); default: model, method and every hyper-parameter column "
                        "the files share. Runs are always paired by seed within a row")
    p.add_argument("--metric", choices=PAIRED_METRICS, default="top1",
                   help="what the paired statistics and per-seed table read: final-epoch test top-1 (default) or "
                        "validation top-1 (runs.csv of runs with a validation split: what a choice between two "
                        "settings should read, leaving the test set only reported)")
    p.add_argument("--out", metavar="FILE", help="also write the Markdown to FILE")
    p.add_argument("--latex", metavar="FILE", help="also write its tables as booktabs LaTeX to FILE")
    p.set_defaults(func=_run_compare)
    return p


__all__ = ["add_report_parser", "add_visualize_parser", "add_compare_parser", "add_leaderboard_parser",
           "parse_where"]
