"""The report's Protocol section (fgvc/report/protocol.py) on small fabricated results folders:
each check warns when it should and is ok when it should, and a warning makes the summary's
verdict provisional."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fgvc.config import RunConfig, save_config
from fgvc.report.report import write_report
from fgvc.runs.table import RUNS_COLUMNS, write_runs_csv

COMMIT = "ab" * 20
K, N_TEST = 4, 24


def fabricate(out: Path, runs: list[dict], *, epochs: int = 10, val_fraction: float = 0.2,
              commit: str = COMMIT, benchmark: str = "fab") -> Path:
    """A results folder with one finished run per entry of `runs`: a RunConfig's keys plus
    `val` (the final validation top-1), `rise` (how much validation top-1 climbs over the last
    fifth of the epochs), `top1` and optionally `status` ("pruned")."""
    for spec in runs:
        spec = dict(spec)
        val, rise, top1 = spec.pop("val", 50.0), spec.pop("rise", 0.0), spec.pop("top1", 50.0)
        status = spec.pop("status", "ok")
        cfg = RunConfig(benchmark=benchmark, model="test_resnet", epochs=epochs, batch_size=8,
                        val_fraction=val_fraction, **spec).validate()
        d = out / "runs" / cfg.run_id
        d.mkdir(parents=True)
        save_config(cfg, d / "config.yaml")
        last = max(1, round(epochs / 5))
        curve = [val - rise if e <= epochs - last else val - rise * (epochs - e) / last for e in range(1, epochs + 1)]
        trained = epochs if status == "ok" else 3
        pd.DataFrame({"epoch": range(1, trained + 1), "train_ce": 1.0, "train_center": 0.0, "train_loss": 1.0,
                      "train_top1": 60.0, "test_top1": None, "test_top5": None, "lr": cfg.lr, "seconds": 1.0,
                      "val_top1": curve[:trained], "val_top5": 90.0}).to_csv(d / "metrics.csv", index=False)
        row = {c: None for c in RUNS_COLUMNS} | dict(
            run_id=cfg.run_id, benchmark=benchmark, model=cfg.model, weights="random-init", method=cfg.method,
            center_weight=cfg.identity()["center_weight"], center_update=cfg.identity()["center_update"],
            seed=cfg.seed, epochs=trained, batch_size=8, lr=cfg.lr, image_size=cfg.image_size, device="cpu",
            git_commit=commit, status=status, error="" if status == "ok" else "pruned at epoch 3", val_top1=curve[-1])
        if status == "ok":
            labels = np.arange(N_TEST) % K
            pred = np.where(np.arange(N_TEST) < round(N_TEST * top1 / 100), labels, (labels + 1) % K)
            pd.DataFrame({"image_id": np.arange(N_TEST), "label": labels, "pred": pred, "prob": 0.9,
                          "top5": "0;1;2;3", "top5_probs": "0.9;0.05;0.03;0.02"}).to_csv(d / "predictions.csv",
                                                                                        index=False)
            feats = np.random.default_rng(cfg.seed).normal(size=(N_TEST, 3)).astype(np.float16)
            np.savez_compressed(d / "features.npz", test_features=feats, test_labels=labels, test_ids=np.arange(N_TEST),
                                train_features=feats, train_labels=labels, train_ids=np.arange(N_TEST))
            (d / "provenance.json").write_text(json.dumps({"git_commit": commit, "device": "cpu", "precision": "fp32"}))
            row.update(top1=100.0 * (pred == labels).mean(), top5=100.0, mean_class_acc=top1, best_epoch_top1=top1,
                       train_seconds=10.0, images_per_second=1.0)
        (d / "row.json").write_text(json.dumps(row))
    write_runs_csv(out)
    return out


def protocol(md: str) -> list[str]:
    start = md.index("## Protocol")
    return [line for line in md[start:md.index("\n## ", start + 3)].splitlines() if line.startswith("- **")]


def line(md: str, name: str) -> str:
    return next(x for x in protocol(md) if x.startswith(f"- **{name}**"))


def sweep_runs(ce_lrs=(0.005, 0.01, 0.02), ce_ls=(0.0, 0.1, 0.2), center_lrs=(0.005, 0.01, 0.02),
               lams=(0.003, 0.01, 0.03),
               seeds=(0, 1, 2), best=None, rise=0.0) -> list[dict]:
    """CE over lr x label smoothing and center over lr x lambda; `best` maps method -> the
    setting (dict) that scores highest on validation."""
    best = best or {"ce": {"lr": 0.01, "label_smoothing": 0.1}, "center": {"lr": 0.01, "center_weight": 0.01}}
    runs = []
    for seed in seeds:
        for lr in ce_lrs:
            for ls in ce_ls:
                top = best["ce"] == {"lr": lr, "label_smoothing": ls}
                runs.append(dict(method="ce", lr=lr, label_smoothing=ls, seed=seed, val=60 + 10 * top + seed,
                                 rise=rise if top else 0.0))
        for lr in center_lrs:
            for lam in lams:
                top = best["center"] == {"lr": lr, "center_weight": lam}
                runs.append(dict(method="center", lr=lr, center_weight=lam, seed=seed, val=61 + 10 * top + seed,
                                 rise=rise if top else 0.0))
    return runs


@pytest.mark.slow
def test_a_fair_sweep_passes_every_check(tmp_path):
    md = write_report(fabricate(tmp_path / "fair", sweep_runs())).read_text()
    assert all(": ok: " in x for x in protocol(md)), protocol(md)
    assert "ce 9 settings x 3 seeds = 27 runs; center 9 settings x 3 seeds = 27 runs" in line(md, "tuning budget")
    assert "This verdict is provisional" not in md


@pytest.mark.slow
def test_unequal_budgets_warn_and_make_the_verdict_provisional(tmp_path):
    md = write_report(fabricate(tmp_path / "unequal", sweep_runs(ce_ls=(0.0,), best={
        "ce": {"lr": 0.01, "label_smoothing": 0.0}, "center": {"lr": 0.01, "center_weight": 0.01}}))).read_text()
    assert "warning: methods had different tuning budgets (ce 3 settings x 3 seeds = 9 runs; center 9 settings" \
        in line(md, "tuning budget")
    assert "**This verdict is provisional: the protocol checks flag tuning budget (see *Protocol*).**" in md


@pytest.mark.slow
def test_pruned_runs_count_in_the_budget_and_are_listed(tmp_path):
    runs = sweep_runs()
    for r in runs:
        if r["method"] == "center" and r["lr"] == 0.005:
            r["status"] = "pruned"
    md = write_report(fabricate(tmp_path / "pruned", runs)).read_text()
    assert "center 9 settings x 3 seeds = 27 runs (9 pruned)" in line(md, "tuning budget")
    listed = md[md.index("## Pruned by successive halving"):]
    assert listed.count("pruned at epoch 3") == 9  # one row per run
    standings = md[md.index("## Successive halving, setting by setting"):md.index("## Pruned by successive halving")]
    assert standings.count("pruned at epoch 3") == 3  # one row per setting: 3 λ at lr 0.005
    assert "## Failed or unfinished runs" not in md
    assert "54 runs in runs.csv, 45 ok, 9 pruned by successive halving, 0 failed or unfinished." in md
    # its own survivors are no full sweep to replay the rule on: the report says how it was trained
    assert "replayed on these full runs" not in md
    assert "trained with successive halving: the tables above hold the settings that reached the last epoch; " \
           "the 9 run(s) stopped at a rung" in md
    # a final-epoch λ plot would hold the survivors only: the rung figure shows the sensitivity instead
    assert not list((tmp_path / "pruned" / "figures").glob("sweep_lambda_*.png")) and "λ sensitivity" not in md
    assert (tmp_path / "pruned" / "figures" / "halving_standings.png").is_file()


@pytest.mark.slow
def test_a_reopened_rung_is_no_full_sweep_to_replay_the_rule_on(tmp_path):
    """While a rung is decided again (the grid widened), runs pruned before are under way: none is
    pruned, yet the tables hold only the runs that ended and a replay of the rule would mean nothing."""
    out = fabricate(tmp_path / "reopened", sweep_runs())
    assert "replayed on these full runs" in write_report(out).read_text()  # every run ended: the replay stands
    rows = {d: json.loads((d / "row.json").read_text()) for d in (out / "runs").iterdir()}
    going = [d for d, r in rows.items() if r["method"] == "center" and r["lr"] == 0.005]
    assert len(going) == 9
    for d in going:
        (d / "row.json").unlink()  # under way again: in no table until the rung is decided
    write_runs_csv(out)
    md = write_report(out).read_text()
    assert "replayed on these full runs" not in md and "## Runs under way" in md and "stopped at a rung" not in md
    assert "This sweep is still being trained: the tables above hold only the runs that have ended; the 9 run(s) " \
           "not yet ended are under *Runs under way*, with their validation top-1 so far." in md


def test_a_folder_of_pruned_runs_names_its_data_from_inputs_json(tmp_path):
    """Pruned runs write no provenance.json; the Provenance section reads the inputs.json each
    run wrote when it started instead of calling the data unknown."""
    out = fabricate(tmp_path / "f", [dict(method="ce", seed=s, status="pruned") for s in range(2)])
    assert "- Data: unknown (no provenance.json or inputs.json)" in write_report(out).read_text()
    for d in (out / "runs").iterdir():
        (d / "inputs.json").write_text(json.dumps({"dataset": "/somewhere/cub_sparrows",
                                                   "dataset_content_sha256": "c0ffee" * 4}))
    md = write_report(out).read_text()
    assert f"- Data: `cub_sparrows`; content sha256 `{'c0ffee' * 4}`" in md


@pytest.mark.slow
def test_a_choice_at_the_edge_of_the_grid_warns_but_a_natural_bound_does_not(tmp_path):
    best = {"ce": {"lr": 0.02, "label_smoothing": 0.0}, "center": {"lr": 0.01, "center_weight": 0.003}}
    md = write_report(fabricate(tmp_path / "edge", sweep_runs(best=best))).read_text()
    ce = line(md, "grid edge, ce")
    assert "warning: lr 0.02 is the largest value tried (0.005, 0.01, 0.02): extend the grid past 0.02." in ce
    assert "label_smoothing" not in ce  # 0 is a natural bound, not an edge
    assert "λ 0.003 is the smallest value tried (0.003, 0.01, 0.03): extend the grid below 0.003" in \
        line(md, "grid edge, center")


@pytest.mark.slow
def test_a_choice_still_improving_warns(tmp_path):
    md = write_report(fabricate(tmp_path / "rising", sweep_runs(rise=5.0))).read_text()
    assert "warning: its chosen setting was still improving: mean validation top-1 rose +5.0 points over the last " \
           "2 of 10 epochs (seed SD 1.0)" in line(md, "convergence, ce")


@pytest.mark.slow
def test_a_rise_equal_to_the_seed_sd_is_no_warning(tmp_path):
    """The rule warns on a rise of *more* than the seed SD. The fair sweep's center loss rose
    1.5873333 against an SD of 1.5873000: both 2 validation images, apart only by metrics.csv's
    6 significant digits; here 1.00003 against 1.0."""
    md = write_report(fabricate(tmp_path / "level", sweep_runs(rise=1.00003))).read_text()
    assert "ok: mean validation top-1 rose +1.0 points over the last 2 of 10 epochs (seed SD 1.0)." in \
        line(md, "convergence, ce")


@pytest.mark.slow
def test_too_few_seeds_warn(tmp_path):
    md = write_report(fabricate(tmp_path / "two", sweep_runs(seeds=(0, 1)))).read_text()
    assert "warning: groups with fewer than 3 seeds" in line(md, "seeds")


def confirmation(tmp_path: Path, seeds=(5, 6, 7), ce=None, commit=COMMIT) -> str:
    fabricate(tmp_path / "sweep", sweep_runs())
    ce = ce or {"lr": 0.01, "label_smoothing": 0.1}
    runs = [dict(method="ce", seed=s, val=60, **ce) for s in seeds] + [
        dict(method="center", lr=0.01, center_weight=0.01, seed=s, val=60, top1=70) for s in seeds]
    out = fabricate(tmp_path / "confirm", runs, val_fraction=0.0, commit=commit)
    (out / "grid.yaml").write_text("name: confirm\nselected_from: sweep\n")
    return write_report(out).read_text()


@pytest.mark.slow
def test_a_confirmation_is_checked_against_its_sweep(tmp_path):
    md = confirmation(tmp_path)
    assert "ok: seeds 5, 6, 7 took no part in the sweep's choice (seeds 0, 1, 2)." in line(md, "new seeds")
    assert "ok: each method runs at the setting its sweep chose on validation." in line(md, "settings")
    assert "ok: sweep and confirmation trained from one commit" in line(md, "same code")
    assert line(md, "sweep: tuning budget").startswith("- **sweep: tuning budget**: ok:")
    assert "This verdict is provisional" not in md


@pytest.mark.slow
def test_a_confirmation_on_old_seeds_or_other_settings_or_code_is_flagged(tmp_path):
    md = confirmation(tmp_path, seeds=(2, 5, 6), ce={"lr": 0.02, "label_smoothing": 0.1}, commit="cd" * 20)
    assert "error: seeds 2 were used by the sweep" in line(md, "new seeds")
    assert "error: not the sweep's choice: ce lr 0.02 (the sweep chose 0.01)" in line(md, "settings")
    assert "warning: the sweep trained from ababab" in line(md, "same code")
    assert "This verdict is provisional: the protocol checks flag new seeds; settings; same code" in md


def test_a_confirmation_whose_sweep_is_missing_says_so(tmp_path):
    out = fabricate(tmp_path / "confirm", [dict(method="ce", lr=0.01, seed=s, val=60) for s in (5, 6, 7)],
                    val_fraction=0.0)
    (out / "grid.yaml").write_text("selected_from: nowhere\n")
    md = write_report(out).read_text()
    assert "error: the sweep it names (selected_from: nowhere) is not beside this folder" in line(md, "confirmation")


@pytest.mark.real_data
def test_the_committed_sweep_is_flagged_as_the_issue_describes():
    """The earlier sweep (benchmarks/sweep-lambda.yaml): 2 CE settings against 8, lr 0.01 the
    largest tried for both methods."""
    report = Path(__file__).resolve().parents[1] / "results" / "sweep-lambda-lite0-cpu" / "report.md"
    if not report.is_file():
        pytest.skip("no committed sweep report")
    md = report.read_text()
    assert "ce 2 settings x 3 seeds = 6 runs; center 8 settings x 3 seeds = 24 runs" in line(md, "tuning budget")
    assert "lr 0.01 is the largest value tried" in line(md, "grid edge, ce")


def test_a_confirmation_grid_is_checked_before_it_trains(tmp_path, sparrow_dataset):
    """fgvc benchmark refuses a confirmation grid on old seeds, on settings its sweep did not
    choose, or while its sweep still has runs under way; the checks are printed when they pass."""
    import yaml

    from fgvc.config import RunOptions
    from fgvc.errors import FGVCError
    from fgvc.grid.benchmark import run_benchmark

    fabricate(tmp_path / "sweep", sweep_runs())
    grid = tmp_path / "confirm.yaml"

    def plan(seeds=(5, 6), ce_lr=0.01) -> list[str]:
        grid.write_text(yaml.safe_dump(dict(
            name="confirm", selected_from="sweep", model="test_resnet", pretrained=False, epochs=1, batch_size=8,
            image_size=32, seeds=list(seeds), cases=[dict(methods="ce", lr=ce_lr, label_smoothing=0.1),
                                                     dict(methods="center", lr=0.01, center_weight=0.01)])))
        said = []
        run_benchmark(grid, RunOptions(data=sparrow_dataset, out=tmp_path / "confirm"), echo=said.append,
                      dry_run=True)
        return said

    said = plan()
    assert "confirmation check, new seeds: ok: seeds 5, 6 took no part in the sweep's choice (seeds 0, 1, 2)." in said
    assert "confirmation check, settings: ok: each method runs at the setting its sweep chose on validation." in said
    with pytest.raises(FGVCError, match="selected_from: sweep: seeds 0 were used by the sweep"):
        plan(seeds=(0, 5))
    with pytest.raises(FGVCError, match=r"not the sweep's choice: ce lr 0.02 \(the sweep chose 0.01\)"):
        plan(ce_lr=0.02)
    paused = tmp_path / "sweep" / "runs" / "paused-run"
    paused.mkdir()
    (paused / "metrics.csv").write_text("epoch,val_top1\n1,50\n")
    with pytest.raises(FGVCError, match=r"has 1 run\(s\) under way: its choice is not final"):
        plan()
    assert not (tmp_path / "confirm").exists()  # a refused grid writes nothing


@pytest.mark.slow
def test_a_zoo_sweep_names_each_method_and_only_the_settings_it_reads(tmp_path):
    """CE at label smoothing 0 (its natural bound) inside lr; arcface, which reads no center
    key: no "center_update=none" in its cells or its confirmation case, and the per-class and
    curve texts name arcface, not center loss."""
    runs = [dict(method="ce", lr=0.01, label_smoothing=ls, seed=s, val=60 + 10 * (ls == 0.0) + s)
            for ls in (0.0, 0.1, 0.2) for s in (0, 1)]
    runs += [dict(method="arcface", lr=0.01, center_weight=lam, seed=s, val=61 + 10 * (lam == 1.0) + s, top1=75.0)
             for lam in (0.3, 1.0, 3.0) for s in (0, 1)]
    runs += [dict(method="center", lr=0.01, center_weight=lam, center_update="learned", seed=s,
                  val=61 + 10 * (lam == 0.03) + s) for lam in (0.01, 0.03, 0.1) for s in (0, 1)]
    md = write_report(fabricate(tmp_path / "zoo", runs)).read_text()
    assert "ok: its chosen setting lies inside the values tried (label_smoothing 0, the smallest tried, is the " \
           "smallest it can be)." in line(md, "grid edge, ce")
    assert "center_update=none" not in md
    assert "{methods: arcface, lr: 0.01, center_weight: 1}" in md  # the confirmation case: no center_update
    assert "if arcface λ=1 (label_smoothing=0) changed nothing" in md and "the auxiliary (arcface) term" in md
