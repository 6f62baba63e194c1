"""A tiny lambda x lr sweep with a validation split, through the runner and the report:
the setting chosen must be the validation argmax (checked with plain pandas), never the
test one, and the report must be byte-identical on rerun."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny import TINY

from fgvc.grid.benchmark import run_benchmark
from fgvc.config import expand_grid, load_grid
from fgvc.report.report import write_report
from fgvc.report.sweep import choose, confirm_methods, sweep_table
from fgvc.config import RunOptions

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

SWEEP = dict(TINY, epochs=2, seeds=[0, 1], methods=["ce", "center"], center_weight=[0.001, 0.01], lr=[0.001, 0.01],
             val_fraction=0.34, benchmark="tiny-sweep")


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 3)
    return md[start:end if end > 0 else None]


def tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in `text`, as rows of cells (header dropped)."""
    out, cur = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if cur is None:
                cur = []
                out.append(cur)
            if not line.startswith("|---"):
                cur.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            cur = None
    return [t[1:] for t in out]


def ms(values: pd.Series) -> str:
    m, s = values.mean(), values.std(ddof=1)
    return f"{round(m, 1) + 0.0:.1f} ± {round(s, 1) + 0.0:.1f}"


@pytest.fixture(scope="module")
def sweep(sparrow_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    runs = run_benchmark(None, RunOptions(data=sparrow_dataset, out=out, progress=False), dict(SWEEP),
                         echo=lambda m: None)
    report = write_report(out)
    return out, runs, report.read_text()


def expected_choice(runs: pd.DataFrame) -> pd.DataFrame:
    """Independent: best mean val_top1 over seeds per method, ties -> smaller lambda, then lr."""
    g = (runs.groupby(["method", "center_weight", "lr"]).val_top1.mean().round(6).rename("val")
         .reset_index().assign(neg=lambda d: -d.val))
    return g.sort_values(["method", "neg", "center_weight", "lr"]).groupby("method").head(1).set_index("method")


@pytest.mark.slow
def test_sweep_runs_share_one_split(sweep):
    out, runs, _ = sweep
    assert len(runs) == 2 * (1 + 2) * 2 and (runs.status == "ok").all(), runs.error.tolist()
    assert runs.val_top1.notna().all()
    splits = [(out / "runs" / r / "val_split.csv").read_text() for r in runs.run_id]
    assert len(set(splits)) == 1  # every seed, lr and lambda sees the same validation images


@pytest.mark.slow
def test_report_chooses_the_validation_argmax(sweep):
    _, runs, md = sweep
    text = section(md, "Validation sweep")
    assert "ties go to the smaller λ, then the smaller lr" in text
    chosen_rows, all_rows = tables(text)[:2]
    want = expected_choice(runs)
    assert [r[0] for r in chosen_rows] == ["ce", "center"]
    for method, lam, lr, n, val, test, default, diff in chosen_rows:
        w = want.loc[method]
        assert float(lr) == w.lr
        assert (lam == "—") if method == "ce" else float(lam) == w.center_weight
        assert int(n) == 2
        pick = runs[(runs.method == method) & (runs.lr == w.lr) & (runs.center_weight == w.center_weight)]
        assert val == ms(pick.val_top1) and test == ms(pick.top1)
        dflt = runs[(runs.method == method) & (runs.lr == 0.001)
                    & (runs.center_weight == (0.0 if method == "ce" else 0.001))]
        assert default == ms(dflt.top1)
        d = round(pick.top1.mean() - dflt.top1.mean(), 1) + 0.0
        assert diff == f"{d:+.1f}"
    # the full table: every setting once, exactly one chosen per method, default recipe marked
    assert len(all_rows) == 2 + 4
    assert sum("**chosen**" in r[-1] for r in all_rows) == 2
    assert sum("default recipe" in r[-1] for r in all_rows) == 2


@pytest.mark.slow
def test_sensitivity_figure_written_and_report_stable(sweep):
    out, _, md = sweep
    text = section(md, "Validation sweep")
    figs = sorted((out / "figures").glob("sweep_lambda_*.png"))
    assert len(figs) == 1 and figs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"(figures/{figs[0].name})" in text
    assert figs[0].name == "sweep_lambda_test_resnet.png"  # a readable name, no hash without a tie
    assert "val_fraction 0.34, val_seed 0" in text
    # provenance said once, in its own section, not in the sweep's captions
    assert "Backbone" not in text and "- Backbone: `test_resnet`" in section(md, "Provenance")
    before = figs[0].read_bytes()
    write_report(out)
    assert (out / "report.md").read_text() == md
    assert figs[0].read_bytes() == before


def test_no_sweep_section_without_validation(tmp_path):
    from report_fixtures import make_out

    out = make_out(tmp_path / "plain", num_classes=4, seeds=(0, 1))
    assert "## Validation sweep" not in write_report(out).read_text()


def test_choice_ignores_test_and_breaks_ties_by_lambda_then_lr():
    keys = ["model", "method", "center_weight", "lr"]
    rows = []
    # (method, lambda, lr, val per seed, test per seed)
    spec = [("ce", "0", "0.001", (50, 60), (90, 90)), ("ce", "0", "0.01", (55, 60), (10, 10)),
            ("center", "0.01", "0.01", (70, 70), (0, 0)), ("center", "0.01", "0.001", (60, 80), (0, 0)),
            ("center", "0.1", "0.001", (70, 70), (99, 99)), ("center", "0.001", "0.001", (65, 70), (99, 99))]
    for i, (m, lam, lr, val, test) in enumerate(spec):
        for s, (v, t) in enumerate(zip(val, test)):
            rows.append(dict(run_id=f"r{i}-{s}", model="m", method=m, center_weight=lam, lr=lr, seed=str(s),
                             val_top1=float(v), top1=float(t), val_fraction="0.2", val_seed="0"))
    runs = pd.DataFrame(rows)
    table = sweep_table(runs, keys)
    best = choose(table, keys).set_index("method")
    # CE: 57.5 beats 55 on validation although its test accuracy is far lower
    assert best.loc["ce", "lr"] == "0.01" and best.loc["ce", "test_mean"] == 10
    # center: three settings tie at 70 -> smaller lambda (0.01 over 0.1), then smaller lr (0.001 over 0.01)
    assert (best.loc["center", "center_weight"], best.loc["center", "lr"]) == ("0.01", "0.001")
    assert math.isclose(best.loc["center", "val_std"], pd.Series([60, 80]).std())


def test_sweep_lambda_yaml_is_the_specified_grid():
    grid = load_grid(BENCH / "sweep-lambda.yaml")
    assert grid["benchmark"] == ["sweep-lambda"] and grid["model"] == ["tf_efficientnet_lite0"]
    assert grid["method"] == ["ce", "center"] and grid["center_weight"] == [0.0001, 0.001, 0.01, 0.1]
    assert grid["lr"] == [0.001, 0.01] and grid["val_fraction"] == [0.2] and grid["seed"] == [0, 1, 2]
    recipe = yaml.safe_load((BENCH / "sparrows-lite0.yaml").read_text())
    for k in ("epochs", "batch_size", "momentum", "weight_decay", "image_size", "crop_pct", "center_lr",
              "center_update", "pretrained"):
        assert grid[k] == [recipe[k]], k
    configs = expand_grid(grid)
    assert len(configs) == 2 * (1 + 4) * 3 and len({c.run_id for c in configs}) == len(configs)


@pytest.mark.slow
def test_report_gives_the_choice_as_cases_of_a_confirmation_grid(sweep, tmp_path):
    _, runs, md = sweep
    text = section(md, "Validation sweep")
    block = text[text.index("```yaml\n") + 8:text.index("```", text.index("```yaml\n") + 8)]
    want = expected_choice(runs)
    grid = tmp_path / "confirm.yaml"
    grid.write_text(yaml.safe_dump(dict(TINY, seeds=[5, 6], methods=["ce"])) + block)
    got = {(c.method, c.lr, c.center_weight if c.method != "ce" else None, c.seed) for c in expand_grid(load_grid(grid))}
    assert got == {(m, want.loc[m].lr, want.loc[m].center_weight if m != "ce" else None, s)
                   for m in ("ce", "center") for s in (5, 6)}


def test_confirmation_carries_ce_the_best_three_and_any_that_beats_ce():
    def best(vals):
        return pd.DataFrame([dict(method=m, val_mean=v) for m, v in vals.items()])

    zoo = best(dict(ce=60.0, arcface=70.0, supcon=65.0, triplet=62.0, center=61.0, cosface=50.0, max_entropy=40.0))
    # the best three (arcface, supcon, triplet) and center, which also beats CE on validation
    assert confirm_methods(zoo) == ["ce", "arcface", "supcon", "triplet", "center"]
    # nobody beats CE: still the best three; ties go to the name
    weak = best(dict(ce=80.0, a=50.0, b=55.0, c=55.0, d=55.0, e=10.0))
    assert confirm_methods(weak) == ["ce", "b", "c", "d"]
    assert confirm_methods(best(dict(ce=50.0, center=40.0, feature_norm=45.0))) == ["ce", "feature_norm", "center"]
    assert confirm_methods(best(dict(center=40.0, feature_norm=45.0))) == ["center", "feature_norm"]
