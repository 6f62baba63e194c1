"""The leaderboard (issue 27) and the LaTeX tables (issue 28): methods ranked against the tuned
CE with t and bootstrap intervals, Holm across rows, the budget from the sweep a confirmation
names, the protocol verdict; CSV, Markdown, LaTeX and a forest plot; `--latex` on report and
compare."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from fgvc.cli import main
from fgvc.report.latex import markdown_tables, markdown_to_latex, tex
from test_protocol import fabricate

LR = 0.01


def confirmation(root: Path, top1: dict[str, list[float]], seeds=(5, 6, 7)) -> Path:
    """A sweep (each method 2 settings x 2 seeds, validation split) and its confirmation,
    each method at the sweep's choice with new seeds and the given test top-1 per seed."""
    sweep = root / "sweep"
    fabricate(sweep, [dict(method=m, lr=lr, center_weight=0.01, seed=s, val=50.0 + 10 * (lr == LR))
                      for m in top1 for lr in (LR / 2, LR) for s in (0, 1)], benchmark="sweep")
    conf = root / "conf"
    fabricate(conf, [dict(method=m, lr=LR, center_weight=0.01, seed=s, top1=t)
                     for m, values in top1.items() for s, t in zip(seeds, values)], val_fraction=0.0, benchmark="conf")
    (conf / "grid.yaml").write_text(yaml.safe_dump({"name": "conf", "selected_from": "sweep"}))
    return conf


TOP1 = {"ce": [50.0, 52.5, 55.0], "center": [60.0, 65.0, 67.5], "feature_norm": [52.5, 52.5, 57.5],
        "supcon": [47.5, 50.0, 52.5]}


def test_leaderboard_ranks_methods_with_intervals_budget_and_protocol(tmp_path, capsys):
    conf = confirmation(tmp_path, TOP1)
    assert main(["leaderboard", str(conf)]) == 0
    board = pd.read_csv(conf / "leaderboard.csv")
    assert list(board.method) == ["center", "feature_norm", "supcon"] and list(board["rank"]) == [1, 2, 3]
    runs = pd.read_csv(conf / "runs.csv").set_index(["method", "seed"]).top1
    center = board.iloc[0]
    assert center["diff"] == pytest.approx((runs["center"] - runs["ce"]).mean())
    assert center.ci95_low < center["diff"] < center.ci95_high
    assert center.boot_low < center["diff"] < center.boot_high
    assert (board.p_holm >= board.p - 1e-12).all()  # Holm never lowers a p-value
    assert (board.budget == "2 settings x 2 seeds = 4 runs").all()  # from the sweep it names
    assert board.protocol.str.startswith("provisional").all()  # 2 seeds in the sweep, the lr at the grid's edge
    tex_text = (conf / "leaderboard.tex").read_text()
    assert r"\toprule" in tex_text and r"\begin{tabular}" in tex_text and "feature\\_norm" in tex_text
    # what every row shares goes into the caption, not a column; a provisional row is marked
    assert "every method tuned with the same budget: 2 settings $\\times$ 2 seeds = 4 runs" in tex_text
    assert r"\begin{table*}" in tex_text and "tuning budget" not in tex_text and "3 matched seeds" in tex_text
    assert "Holm-adjusted across the 3 rows" in tex_text
    assert r"center $\lambda$=0.01$^\dagger$ &" in tex_text and r"$^\dagger$ provisional" in tex_text
    assert (conf / "figures" / "leaderboard_forest.png").stat().st_size > 0
    assert "| 1 | center" in capsys.readouterr().out


def test_report_has_a_leaderboard_when_several_methods_face_ce(tmp_path):
    conf = confirmation(tmp_path, TOP1)
    assert main(["report", str(conf), "--embeddings", "none", "--latex"]) == 0
    md = (conf / "report.md").read_text()
    assert "## Leaderboard" in md and "![Leaderboard forest plot](figures/leaderboard_forest.png)" in md
    # its Holm family is its 3 rows; the summary's also holds the mechanism control: the caption says why they differ
    assert "Holm-adjusted across the 3 rows (the report's other sections adjust across all 4 of its comparisons" in md
    assert "Holm adjustment across the 4 comparisons of this report" in md
    tables = (conf / "report_tables.tex").read_text()
    assert tables.count(r"\end{tabular}") == len(markdown_tables(md)) > 3


def test_leaderboard_over_two_folders_and_its_errors(tmp_path, capsys):
    a = confirmation(tmp_path / "a", {"ce": TOP1["ce"], "center": TOP1["center"]})
    b = confirmation(tmp_path / "b", {"ce": TOP1["ce"][:2], "supcon": TOP1["supcon"][:2]}, seeds=(5, 6))
    assert main(["leaderboard", str(a), str(b), "--out", str(tmp_path)]) == 0
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(board.folder) == ["conf", "conf"] and list(board.method) == ["center", "supcon"]
    # what differs between the folders' rows (here their seeds) is a key after the method, defined in the
    # caption, not a column: long budget texts as a column pushed the table off the page
    tex_text = (tmp_path / "leaderboard.tex").read_text()
    assert r"\begin{tabular}{lrrrrrrr}" in tex_text and "& seeds" not in tex_text
    assert r"center $\lambda$=0.01$^\dagger$ [a] &" in tex_text and r"supcon $\lambda$=0.01$^\dagger$ [b] &" in tex_text
    assert "wins. [a] 3 matched seeds. [b] 2 matched seeds. $^" in tex_text
    assert "every method tuned with the same budget: 2 settings" in tex_text
    only_ce = tmp_path / "c"
    fabricate(only_ce, [dict(method="ce", seed=s, top1=50.0 + s) for s in (0, 1)], val_fraction=0.0)
    assert main(["leaderboard", str(only_ce)]) == 2
    assert "no method is paired with a CE group" in capsys.readouterr().err
    assert main(["leaderboard", str(tmp_path / "nowhere")]) == 2


def test_latex_escapes_and_compare_writes_tables(tmp_path):
    assert tex("a_b & 50% λ=0.01 ± 1") == r"a\_b \& 50\% $\lambda$=0.01 $\pm$ 1"
    assert tex("-5.71 to -0.5, 3 settings x 2 seeds, lr 1e-4, run-s0") == \
        r"$-$5.71 to $-$0.5, 3 settings $\times$ 2 seeds, lr 1e-4, run-s0"
    md = "*Table: accuracy.*\n\n| group | top-1 |\n|---|---:|\n| **CE** | 56.1 |\n"
    assert markdown_tables(md) == [("accuracy.", ["group", "top-1"], [["CE", "56.1"]])]
    assert r"\caption{accuracy.}" in markdown_to_latex(md, "tab:t")
    conf = confirmation(tmp_path, {"ce": TOP1["ce"], "center": TOP1["center"]})
    runs = conf / "runs.csv"
    assert main(["compare", str(runs), str(runs), "--latex", str(tmp_path / "c.tex")]) == 0
    assert r"\begin{tabular}" in (tmp_path / "c.tex").read_text()


def test_a_halving_sweeps_checks_count_for_the_rows_they_are_about(tmp_path):
    """The zoo's shape: each method tunes one knob (CE label smoothing, the others λ), halving
    leaves one setting per method among the ended runs, and the confirmation carries some of the
    methods. The sweep's edge checks still run (the pruned settings count as tried); a method left
    out (triplet) flags nothing; an edge (supcon's smallest λ) makes only its own row provisional;
    CE's chosen label smoothing reaches the settings check and the table's words."""
    knob = {"ce": ("label_smoothing", (0.0, 0.1, 0.2)), "center": ("center_weight", (0.01, 0.03, 0.1)),
            "supcon": ("center_weight", (1.0, 3.0, 10.0)), "triplet": ("center_weight", (10.0, 30.0, 100.0))}
    best = {"ce": 0.1, "center": 0.03, "supcon": 1.0, "triplet": 10.0}
    fabricate(tmp_path / "sweep", [dict(method=m, lr=LR, seed=s, val=60.0 if v == best[m] else 50.0,
                                        status="ok" if v == best[m] else "pruned", **{key: v})
                                   for m, (key, values) in knob.items() for v in values for s in (0, 1)],
              benchmark="sweep")
    conf = tmp_path / "conf"
    top1 = {"ce": [50.0, 52.5, 55.0], "center": [60.0, 65.0, 67.5], "supcon": [52.5, 52.5, 57.5]}
    fabricate(conf, [dict(method=m, lr=LR, seed=s, top1=t, **{knob[m][0]: best[m]})
                     for m, values in top1.items() for s, t in zip((5, 6, 7), values)], val_fraction=0.0,
              benchmark="conf")
    (conf / "grid.yaml").write_text(yaml.safe_dump({"name": "conf", "selected_from": "sweep"}))
    assert main(["leaderboard", str(conf)]) == 0
    verdict = pd.read_csv(conf / "leaderboard.csv").set_index("method").protocol
    assert verdict["center"] == "ok"
    assert verdict["supcon"].startswith("provisional") and "sweep: grid edge, supcon" in verdict["supcon"]
    assert "triplet" not in verdict["supcon"]
    board = pd.read_csv(conf / "leaderboard.csv")
    assert set(board.ce_setting) == {"lr 0.01, label smoothing 0.1"}  # the baseline's own tuned setting, named
    md = (conf / "leaderboard.md").read_text()
    assert "- conf: CE at lr 0.01, label smoothing 0.1" in md
    flagged = "- conf, supcon λ=1 (label_smoothing=0): provisional: the protocol checks flag sweep: grid edge, supcon"
    assert flagged in md  # each flagged row named
    assert "- conf, center" not in md


def test_a_summary_of_many_comparisons_gives_each_verdict_in_one_line(tmp_path):
    """Four methods against CE: each Answer line is the brief verdict (difference, interval, Holm p,
    the conclusion in a few words), and the per-pair feature lines give way to a pointer."""
    top1 = dict(TOP1, cosface=[57.5, 60.0, 62.5])
    conf = confirmation(tmp_path, top1)
    assert main(["report", str(conf), "--embeddings", "none"]) == 0
    md = (conf / "report.md").read_text()
    answer = md[md.index("**Answer**"):md.index("*Table: the recipe")]
    lines = [x for x in answer.splitlines() if x.startswith("- **")]
    assert len(lines) == 5 and all("p (Holm, 5 comparisons) = " in x for x in lines)  # 4 methods, 1 control
    assert lines[0] == ("- **center λ=0.01 vs CE** (3 matching seeds): +11.11 points (95% CI +5.14 to +17.09; "
                        "p (Holm, 5 comparisons) = 0.0763): **not significant, and not equivalent within ±1 point**.")
    assert "Student t over seeds" not in answer and "- Features," not in answer
    assert "*Feature compactness* below." in answer
