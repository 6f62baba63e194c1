"""Two grids on one results folder (issue 30, item 7): refused with one line naming both, unless
--force-mix says it is meant; then each run keeps its own grid name in runs.csv."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from fgvc.cli import main
from fgvc.config import RunOptions
from fgvc.errors import FGVCError
from fgvc.grid.benchmark import run_benchmark
from report_fixtures import make_out
from tiny import TINY

GRIDS = "grids.json"  # fgvc.grid.owner.GRIDS
A = dict(TINY, epochs=2, benchmark="grid-a")
B = dict(TINY, epochs=2, seeds=[0, 1], benchmark="grid-b")  # shares seed 0's run with A (same settings)


class Stop(KeyboardInterrupt):
    pass


def _run(data, out, grid, **kw):
    messages = []
    opts = RunOptions(data=data, out=out, progress=False, on_epoch_end=kw.pop("on_epoch_end", None))
    return run_benchmark(None, opts, dict(grid), echo=messages.append, **kw), messages


def test_two_grids_started_on_one_empty_folder_are_refused(tmp_path):
    from fgvc.grid.owner import claim_folder, grid_names

    claim_folder(tmp_path, ["grid-a"], dry_run=True)  # checked: nothing written yet
    assert not (tmp_path / GRIDS).exists()
    claim_folder(tmp_path, ["grid-b"], dry_run=True)  # a second grid started at once passes the first check ...
    claim_folder(tmp_path, ["grid-a"])  # ... the first reaches its first run: recorded, no run folder yet
    assert json.loads((tmp_path / GRIDS).read_text()) == {"grids": ["grid-a"]}
    with pytest.raises(FGVCError) as e:
        claim_folder(tmp_path, ["grid-b"])
    msg = str(e.value)
    assert "\n" not in msg and "belongs to grid grid-a, not grid-b" in msg and "--force-mix" in msg
    claim_folder(tmp_path, ["grid-a"])  # the same grid again (a shard, another worker): fine
    claim_folder(tmp_path, ["grid-b"], force_mix=True)
    assert grid_names(tmp_path) == ["grid-a", "grid-b"]
    claim_folder(tmp_path, ["grid-b"])  # mixed on purpose before: both belong now


def test_a_folder_from_before_grids_json_belongs_to_its_runs_grid(tmp_path, sparrow_dataset, capsys):
    out = make_out(tmp_path / "old", benchmark="sparrows")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(dict(TINY)))
    code = main(["benchmark", str(grid), "--data", str(sparrow_dataset), "--out", str(out), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "belongs to grid sparrows, not tiny" in err
    assert not (out / GRIDS).exists()  # a dry run writes nothing


def test_force_mix_keeps_each_runs_own_grid_name(sparrow_dataset, tmp_path):
    def stop(epoch, rec):
        raise Stop()

    with pytest.raises(Stop):  # grid A starts its run and is cut off after its first epoch
        _run(sparrow_dataset, tmp_path, A, on_epoch_end=stop)
    with pytest.raises(FGVCError, match="belongs to grid grid-a, not grid-b"):
        _run(sparrow_dataset, tmp_path, B)
    frame, _ = _run(sparrow_dataset, tmp_path, B, force_mix=True)  # resumes A's run, trains its own
    runs = pd.read_csv(tmp_path / "runs.csv").sort_values("seed")
    assert runs.status.tolist() == ["ok", "ok"] and runs.benchmark.tolist() == ["grid-a", "grid-b"]
    (shared,) = runs.run_id[runs.seed == 0]
    assert yaml.safe_load((tmp_path / "runs" / shared / "config.yaml").read_text())["benchmark"] == "grid-a"
    frame, messages = _run(sparrow_dataset, tmp_path, A)  # A again: its run is done; nothing is relabelled
    assert "1 done, 0 to do" in messages[0]
    assert sorted(pd.read_csv(tmp_path / "runs.csv").benchmark) == ["grid-a", "grid-b"]
