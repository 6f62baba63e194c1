"""`fgvc report OUT`: report.md, group_summary.csv and every figure it links, UMAP / t-SNE
included, from a benchmark's output folder.

The report answers "does center loss help, and what does it do to the features?" with
statistics over seeds, and says plainly what the numbers cannot show. It leads with the
answer (fgvc.report.summary: the question, the verdict in brief, each group's recipe, which
runs are checks rather than results), states provenance once, then gives the evidence. Rerunning it on
the same files gives byte-identical report.md, summary.csv and comparisons.csv (no clock;
the bootstrap draws from a fixed RNG seed).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from fgvc.errors import FGVCError
from fgvc.grid.halving import PRUNED
from fgvc.io import atomic_write_text
from fgvc.report.embedding_pick import pick_embeddings
from fgvc.report.features import compactness_section
from fgvc.report.flips import flips_section
from fgvc.report.inputs import Inputs, load_inputs
from fgvc.report.leaderboard import leaderboard_section
from fgvc.report.paired import compare_panels, comparison_rows, controls_section, paired_section
from fgvc.report.markdown import inert
from fgvc.report.per_class import per_class_section
from fgvc.report.progress import progress_section, standings_section, under_way
from fgvc.report.protocol import protocol_checks, protocol_section
from fgvc.report.sections import (accuracy_section, curves_section, embedding_section, failed_section, notes_section,
                                  provenance_section, pruned_section, summary_section, time_section, title_section)
from fgvc.report.stats import DEFAULT_MARGIN, SUMMARY_EXTRA, SUMMARY_METRICS
from fgvc.report.summary import REFERENCE
from fgvc.report.sweep import sweep_section
from fgvc.report.verdicts import comparisons_csv
from fgvc.report.visualize import check_choices, draw_embeddings

SUMMARY_DECIMALS = 4  # decimals of metric columns in group_summary.csv
# One row per group of runs. timm's summary.csv is a per-epoch log (ours: metrics.csv), so the
# file is group_summary.csv; summary.csv, DESIGN.md's name, is written too, byte for byte the same.
SUMMARY_FILES = ("group_summary.csv", "summary.csv")
# The name prefixes of the figures a report draws for its groups and pairs: when the groups change
# (a sweep that finished, a folder re-collected), the ones it no longer links are stale, not history.
REPORT_FIGURE_PREFIXES = ("confusion_", "curves_", "flips_", "paired_", "per_class_", "sweep_")


def _sweep_section(x: Inputs) -> list[str]:
    return sweep_section(x.ok, x.keys, x.prov.caption, x.fig_dir, x.out_dir, int((x.runs.status == PRUNED).sum()),
                         len(under_way(x.out_dir)))


def summary_csv(summary: pd.DataFrame) -> str:
    s = summary.copy()
    metric_cols = [c for c in SUMMARY_METRICS + SUMMARY_EXTRA if c != "n"]
    s[metric_cols] = s[metric_cols].astype(float).round(SUMMARY_DECIMALS)
    return s.to_csv(index=False, lineterminator="\n")


def draw_picked(x: Inputs, embeddings: Sequence[str]) -> list[str]:
    """Draw the embedding figures of the picked runs; one line each on what was drawn and why."""
    if not embeddings:
        return []
    picks, missing = pick_embeddings(x.runs)
    for pick in picks:
        draw_embeddings(pick.runs, "test", embeddings, x.out_dir, x.fig_dir, f"test_s{pick.seed}{pick.suffix}")
    return [p.why for p in picks] + missing


def remove_stale_figures(fig_dir: Path, report_text: str) -> list[Path]:
    """Delete the report-drawn figures in `fig_dir` (REPORT_FIGURE_PREFIXES; with a same-named .csv
    of coordinates) that `report_text` no longer links; returns what was deleted. Figures of other
    makers (embeddings, which every report links, and leaderboards) are never touched."""
    linked = set(re.findall(r"\(figures/([^)\s]+\.png)\)", report_text))
    stale = [p for p in sorted(Path(fig_dir).glob("*.png"))
             if p.name.startswith(REPORT_FIGURE_PREFIXES) and p.name not in linked]
    for png in stale:
        png.unlink()
        png.with_suffix(".csv").unlink(missing_ok=True)
    return stale


def write_report(out_dir: Path, margin: float = DEFAULT_MARGIN, embeddings: Sequence[str] = (),
                 data: Path | None = None) -> Path:
    """Write OUT/report.md, OUT/group_summary.csv (and summary.csv), OUT/comparisons.csv and OUT/figures/*.png;
    returns report.md's path. `margin`: the equivalence margin in accuracy points; `embeddings`:
    the UMAP / t-SNE figures to draw first (`umap`, `tsne`; the CLI draws both), for the runs
    fgvc.report.embedding_pick picks; `data`: the dataset folder the flips figures draw photos
    from (none drawn without it)."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise FGVCError(f"equivalence margin {margin!r}: must be a positive number of accuracy points, e.g. 1")
    embeddings = check_choices("test", embeddings) if embeddings else []
    x = load_inputs(Path(out_dir), float(margin))
    compare_panels(x)  # the paired statistics, which the summary already quotes
    x.protocol = protocol_checks(x.out_dir, x.runs, x.groups)  # the summary says when they warn
    lines = title_section(x) + (summary_section(x) if len(x.ok) else []) + protocol_section(x.protocol)
    lines += leaderboard_section(x) if len(x.ok) else []
    lines += provenance_section(x)
    if not len(x.ok):
        lines += ["No successful runs yet: nothing to summarise.", ""]
    else:
        lines += accuracy_section(x)
        lines += _sweep_section(x)
        lines += paired_section(x)
        lines += controls_section(x)
        lines += per_class_section(x)
        lines += flips_section(x, data)
        lines += curves_section(x)
        lines += compactness_section(x)  # may add notes
        lines += time_section(x)
        lines += embedding_section(x, draw_picked(x, embeddings))
    lines += progress_section(x.out_dir)
    lines += standings_section(x.runs, x.fig_dir, x.out_dir)
    lines += pruned_section(x.runs)
    lines += failed_section(x.runs)
    lines += notes_section(x.notes)
    lines += ["Files: `group_summary.csv` (one row per group; accuracies in percent; also as `summary.csv`), "
              "`comparisons.csv` (one row per paired comparison; differences in accuracy points, `a` the CE "
              "baseline or a loss's control, `b` the other group, named by their group keys), `runs.csv` (one row "
              "per run).", ""]

    for name in SUMMARY_FILES:
        atomic_write_text(x.out_dir / name, summary_csv(x.summary))
    atomic_write_text(x.out_dir / "comparisons.csv", comparisons_csv(comparison_rows(x)))
    report = x.out_dir / "report.md"
    text = inert("\n".join(lines).rstrip() + "\n")  # nothing a run carries runs as HTML
    atomic_write_text(report, text)
    remove_stale_figures(x.fig_dir, text)  # only once the report that replaces them is written
    return report


__all__ = ["write_report", "remove_stale_figures", "REPORT_FIGURE_PREFIXES", "REFERENCE", "summary_csv", "SUMMARY_FILES"]
