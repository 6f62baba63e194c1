"""The leaderboard: every method ranked by its paired test top-1 difference from the tuned
CE, with the intervals a reader needs to believe the order (issue 27).

One row per method compared with CE in a results folder (a confirmation: each method at
its chosen setting, new seeds), or over several folders (`fgvc leaderboard A B ...`, each
method against its own folder's CE): mean difference with its 95% t and hierarchical
bootstrap intervals, the paired t-test p-value and its Holm adjustment across every row,
P(improvement) over matched seed pairs, the tuning budget the method had (from the sweep the
folder was selected from, else the folder itself) and the protocol checks' verdict. Written
as leaderboard.csv, leaderboard.md, leaderboard.tex and figures/leaderboard_forest.png.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from fgvc.errors import FGVCError
from fgvc.io import atomic_write_text
from fgvc.report import figures
from fgvc.report.inputs import Inputs, load_inputs
from fgvc.report.latex import latex_table
from fgvc.report.load import canon, load_runs
from fgvc.report.markdown import image, number, pvalue, table
from fgvc.report.paired import compare_panels, pairs_of
from fgvc.report.panels import Group
from fgvc.report.protocol import budget_text, protocol_checks, provisional, selected_from, tuning_budget
from fgvc.report.stats import DEFAULT_MARGIN, holm

LEADERBOARD_COLUMNS = ["rank", "method", "setting", "folder", "seeds", "ce_top1", "method_top1", "diff",
                       "ci95_low", "ci95_high", "boot_low", "boot_high", "p", "p_holm", "p_improve", "budget",
                       "protocol", "ce_setting"]
HEADER = ["rank", "method (setting)", "seeds", "CE", "method", "difference", "95% t interval",
          "95% bootstrap", "p (Holm)", "P(improvement)", "tuning budget", "protocol"]


def _budget(x: Inputs) -> dict[str, str]:
    """Each method's tuning budget as text: the sweep's the folder names, else its own runs'."""
    sweep = selected_from(x.out_dir, sorted(set(x.runs.benchmark) - {""}))
    runs = load_runs(sweep) if sweep is not None and (sweep / "runs").is_dir() else x.runs
    return {m: budget_text(m, b).split(" ", 1)[1] for m, b in tuning_budget(runs).items()}


def _recipe(g: Group) -> str:
    """A baseline's tuned settings in words ("lr 0.005, label smoothing 0"): what every row of its
    folder is measured against."""
    def values(key: str) -> str:
        return "/".join(sorted({canon(v) for v in g.runs[key]})) if key in g.runs.columns else "?"
    return f"lr {values('lr')}, label smoothing {values('label_smoothing')}"


def leaderboard_rows(x: Inputs) -> list[dict]:
    """One row per CE/method pair of a report's inputs (after fgvc.report.paired.compare_panels)."""
    budget, checks = _budget(x), x.protocol or []
    rows = []
    for p in pairs_of(x):
        res, (ce, other) = p.paired, p.groups
        if not res.n:
            continue
        # the checks of the whole comparison, CE's and this method's: another method's edge is not this row's
        verdict = provisional([c for c in checks if c.method in ("", "ce", other.method)]) or "ok"
        rows.append(dict(method=other.method, setting=other.label, ce_setting=_recipe(ce), folder=x.out_dir.name,
                         seeds=res.n,
                         ce_top1=sum(res.ce_top1) / res.n, method_top1=sum(res.center_top1) / res.n,
                         diff=res.mean_diff, ci95_low=res.ci_low, ci95_high=res.ci_high, boot_low=res.boot_low,
                         boot_high=res.boot_high, p=res.p_value, p_holm=math.nan, p_improve=res.p_improve,
                         budget=budget.get(other.method, "not a sweep"), protocol=verdict,
                         diffs=[b - a for a, b in zip(res.ce_top1, res.center_top1)], ci90=(res.ci90_low,
                                                                                             res.ci90_high)))
    return rows


def rank(rows: list[dict]) -> pd.DataFrame:
    """Holm across every row's t-test, then the rows by mean difference, best first."""
    frame = pd.DataFrame(rows)
    if not len(frame):
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS + ["diffs", "ci90"])
    finite = frame.p.apply(lambda v: math.isfinite(v))
    frame.loc[finite, "p_holm"] = holm(frame.p[finite].tolist()) if finite.any() else []
    frame = frame.sort_values(["diff", "method"], ascending=[False, True], kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def _interval(lo: float, hi: float) -> str:
    return f"{number(lo, 2, sign=True)} to {number(hi, 2, sign=True)}" if math.isfinite(lo) else "—"


def _cells(r) -> list[str]:
    return [str(r["rank"]), r["setting"], str(r["seeds"]), number(r["ce_top1"]), number(r["method_top1"]),
            number(r["diff"], 2, sign=True), _interval(r["ci95_low"], r["ci95_high"]),
            _interval(r["boot_low"], r["boot_high"]), pvalue(r["p_holm"]), number(r["p_improve"], 2), r["budget"],
            "ok" if r["protocol"] == "ok" else "provisional"]


def write_leaderboard(board: pd.DataFrame, out_dir: Path, title: str, family: int = 0) -> tuple[list[str], list[Path]]:
    """leaderboard.csv / .md / .tex and the forest plot; returns (Markdown lines, files). `family`:
    the comparisons of the report around it, when more than the rows (its p-values then differ)."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    csv = out_dir / "leaderboard.csv"
    atomic_write_text(csv, board[LEADERBOARD_COLUMNS].to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    forest = figures.forest_figure(
        [dict(label=f"{r['setting']} − CE", diffs=r["diffs"], mean=r["diff"], ci95=(r["ci95_low"], r["ci95_high"]),
              ci90=r["ci90"], boot=(r["boot_low"], r["boot_high"])) for _, r in board.iterrows()],
        f"Leaderboard: test top-1 difference from tuned CE\n{title}", fig_dir / "leaderboard_forest.png",
        "difference from CE in test top-1 (points)")
    rows = [_cells(r) for _, r in board.iterrows()]
    ces = sorted({(r["folder"], r["ce_setting"]) for _, r in board.iterrows()})
    lines = [table(HEADER, rows), ""] + [f"- {folder}: CE at {ce}" for folder, ce in ces] + [
        f"- {r['folder']}, {r['setting']}: {r['protocol']}" for _, r in board.iterrows()
        if r["protocol"] != "ok"] + [""]
    others = (f" (the report's other sections adjust across all {family} of its comparisons, those that are not "
              "against CE included, so their adjusted p-values can be larger)" if family > len(board) else "")
    lines += [image("Leaderboard forest plot", forest, out_dir), "",
             "*Each method against CE over matched seeds (test top-1, %): mean difference, 95% Student-t and "
             f"hierarchical bootstrap intervals, paired t-test p Holm-adjusted across the {len(board)} rows{others}, "
             "P(improvement) the share of seed pairs the method wins; the tuning budget each method had; the protocol "
             "checks' verdict (docs/protocol.md). Files: `leaderboard.csv`, `leaderboard.md`, `leaderboard.tex`.*", ""]
    md = out_dir / "leaderboard.md"
    atomic_write_text(md, "\n".join([f"# Leaderboard: {title}", ""] + lines))
    tex = out_dir / "leaderboard.tex"
    atomic_write_text(tex, _latex(board, title))
    return lines, [csv, md, tex, forest]


def _latex(board: pd.DataFrame, title: str) -> str:
    """leaderboard.tex, made to fit the text width of a two-column paper (`table*`): the columns a
    reader compares (top-1 of CE and the method, the difference, both intervals, p, P), with what
    every row shares (seeds, budget) in the caption, a provisional row marked †, and what rows
    do not share (folder, seeds, budget) as a key after the method that the caption defines."""
    header = ["method (setting)", "CE", "method", "diff.", "95% t CI", "95% bootstrap CI", "p (Holm)", "P(impr.)"]
    shared, varying = [], []
    for col, every, some in (("folder", "", "{}"), ("seeds", "{} matched seeds", "{} matched seeds"),
                             ("budget", "every method tuned with the same budget: {}", "tuning budget {}")):
        if board[col].nunique() == 1:
            shared += [every.format(board[col].iloc[0])] if every else []  # one folder: the title names it
        else:
            varying.append((col, some))
    # What differs between rows (folders of a multi-folder board) as a key [a], [b] ... after the
    # method, defined in the caption: as columns, long budget texts pushed the table off the page.
    combo = [tuple(str(r[c]) for c, _ in varying) for _, r in board.iterrows()]
    key = {c: f"[{chr(ord('a') + i)}]" for i, c in enumerate(dict.fromkeys(combo))} if varying else {}
    compared = slice(HEADER.index("CE"), HEADER.index("tuning budget"))  # the Markdown row's CE top-1 .. P(impr.)
    rows = [[r["setting"] + ("" if r["protocol"] == "ok" else "†") + (f" {key[c]}" if key else ""),
             *_cells(r)[compared]] for c, (_, r) in zip(combo, board.iterrows())]
    keys = "".join(f" {k} " + ", ".join(text.format(v) for (_, text), v in zip(varying, c)) + "."
                   for c, k in key.items())
    mark = " † provisional: the protocol checks flag the row (docs/protocol.md)." if (board.protocol != "ok").any() \
        else ""
    caption = (f"Test top-1 (%) of tuned CE and of each method, paired by seed, best first ({title})"
               f"{': ' + '; '.join(shared) if shared else ''}. p: paired t-test over seeds, Holm-adjusted across "
               f"the {len(board)} rows; P(impr.): the share of seed pairs the method wins.{keys}{mark}")
    # 3pt column gaps: a multi-folder board's keys widen the method column past the page at 4pt
    return latex_table(header, rows, caption, "tab:fgvc-leaderboard", align="l" + "r" * 7, wide=True, colsep="3pt")


def leaderboard_section(x: Inputs) -> list[str]:
    """The report's Leaderboard section, for a folder with two or more methods beside CE, each
    at one setting (a confirmation); a sweep's many settings per method are no leaderboard:
    ranking them on test top-1 would select on the test set."""
    board = rank(leaderboard_rows(x))
    if len(board) < 2 or board.method.nunique() < len(board):
        return []
    family = max((p.paired.family for p in pairs_of(x)), default=0)
    lines, _ = write_leaderboard(board, x.out_dir, x.out_dir.name, family)
    return ["## Leaderboard", ""] + lines


def leaderboard(folders: list[Path], out: Path | None = None, margin: float = DEFAULT_MARGIN) -> Path:
    """`fgvc leaderboard A B ...`: every method of every folder against its folder's CE,
    written to `out` (default: the first folder); returns leaderboard.md's path."""
    rows = []
    for folder in folders:
        if not (Path(folder) / "runs.csv").is_file() and not (Path(folder) / "runs").is_dir():
            raise FGVCError(f"{folder}: not a results folder (no runs.csv or runs/); give folders that "
                            "`fgvc benchmark` wrote")
        x = load_inputs(Path(folder), float(margin))
        compare_panels(x)
        x.protocol = protocol_checks(x.out_dir, x.runs, x.groups)
        rows += leaderboard_rows(x)
    if not rows:
        raise FGVCError(f"no method is paired with a CE group over matching seeds in {', '.join(map(str, folders))}; "
                        "a leaderboard needs CE and the methods in each folder, on the same seeds")
    out = Path(out) if out is not None else Path(folders[0])
    write_leaderboard(rank(rows), out, " + ".join(Path(f).name for f in folders))
    return out / "leaderboard.md"


__all__ = ["LEADERBOARD_COLUMNS", "leaderboard_rows", "rank", "write_leaderboard", "leaderboard_section",
           "leaderboard"]
