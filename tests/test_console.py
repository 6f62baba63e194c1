"""One line per epoch on the console for every run, also under --no-progress (which only
drops the bars), and a resumed run says so."""

from __future__ import annotations

import pytest
import yaml
from tiny import TINY, tiny_config

from fgvc.grid.benchmark import run_benchmark
from fgvc.cli import main
from fgvc.config import RunConfig
from fgvc.config import RunOptions

pytestmark = pytest.mark.slow


class Stop(KeyboardInterrupt):
    pass


def _stop_after_first(epoch, rec):
    if epoch == 0:
        raise Stop()


def test_benchmark_prints_each_epoch_and_the_resume_without_bars(sparrow_dataset, tmp_path, capsys):
    ce, center = (RunConfig(**tiny_config(method=m, epochs=2)).run_id for m in ("ce", "center"))
    out = tmp_path / "out"
    with pytest.raises(Stop):  # the CE run is cut after its first epoch: the benchmark below resumes it
        run_benchmark(None, RunOptions(data=sparrow_dataset, out=out, progress=False, on_epoch_end=_stop_after_first),
                      dict(TINY, epochs=2), echo=lambda m: None)
    capsys.readouterr()
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k != "benchmark"}
                                   | {"name": "tiny", "epochs": 2, "methods": ["ce", "center"]}))
    assert main(["benchmark", str(grid), "--data", str(sparrow_dataset), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert f"{ce}: resuming after epoch 1" in lines
    epochs = [line.split(" loss ")[0] for line in lines if ": epoch " in line]
    assert epochs == [f"{ce}: epoch 2/2", f"{center}: epoch 1/2", f"{center}: epoch 2/2"]
    assert any(line.startswith(f"{center}: done: top1 ") for line in lines)
    assert "\r" not in text and "batch/s" not in text and "it/s" not in text  # no bars
