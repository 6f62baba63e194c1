"""`make benchmark` offline: one message names every missing input (data source and
weights) and the command to type, before anything is done."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import data_prep.prepare
import fgvc.models
from data_prep._cli import run
from data_prep.preflight import main
from tiny import make_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(data_prep.prepare, "reachable", lambda url: False)
    monkeypatch.setattr(fgvc.models, "_hub_reachable", lambda: False)
    monkeypatch.setattr(fgvc.models, "_cached_hub_file", lambda full: None)


def _err(capsys, argv) -> str:
    assert run(main, argv) == 2
    msg = capsys.readouterr().err.strip()
    assert msg.startswith("error: ") and "\n" not in msg
    return msg


def test_both_missing_inputs_in_one_message(offline, tmp_path, capsys):
    msg = _err(capsys, ["--data", str(tmp_path / "data"), "--bench", "benchmarks/sparrows.yaml"])
    assert "missing 2 inputs, nothing was done" in msg
    assert "data: no dataset in" in msg and "weights: no pretrained weights for resnet50.tv_in1k" in msg
    assert msg.endswith("run: make benchmark CUB=/path/to/CUB_200_2011.tgz WEIGHTS=/path/to/weights.safetensors")
    assert not (tmp_path / "data").exists()


def test_the_suggestion_keeps_what_was_typed(offline, cub_tree, tmp_path, capsys):
    typed = f"BENCH=benchmarks/sparrows-lite0.yaml CUB={cub_tree} JOBS=2"
    msg = _err(capsys, ["--data", str(tmp_path / "data"), "--source", str(cub_tree),
                        "--bench", "benchmarks/sparrows-lite0.yaml", "--typed", typed])
    assert "missing an input" in msg and "data:" not in msg  # CUB= is there: only the weights are missing
    assert msg.endswith(f"run: make benchmark BENCH=benchmarks/sparrows-lite0.yaml CUB={cub_tree} JOBS=2 "
                        "WEIGHTS=/path/to/weights.safetensors")
    msg = _err(capsys, ["--data", str(tmp_path / "data"), "--source", str(tmp_path / "nope.tgz"),
                        "--bench", "benchmarks/nope.yaml", "--typed", f"CUB={tmp_path / 'nope.tgz'} BENCH=nope"])
    assert "missing 2 inputs" in msg and "nope.tgz: not found" in msg and "benchmark file not found" in msg
    assert msg.endswith("run: make benchmark BENCH=nope CUB=/path/to/CUB_200_2011.tgz")
    msg = _err(capsys, ["--data", str(tmp_path / "data"), "--source", str(cub_tree),
                        "--bench", "benchmarks/sparrows.yaml", "--weights", str(tmp_path / "w.safetensors")])
    assert "weights file not found" in msg and msg.endswith("WEIGHTS=/path/to/weights.safetensors")


def test_all_inputs_present(offline, sparrow_dataset, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")  # present is all the preflight checks; fgvc benchmark's own preflight reads it
    assert main(["--data", str(sparrow_dataset), "--bench", "benchmarks/sparrows.yaml",
                 "--weights", str(weights)]) == 0
    assert "inputs ok" in capsys.readouterr().out


def test_make_benchmark_checks_first():
    """The preflight is the first thing `make benchmark` does after setup (make -n: nothing runs)."""
    lines = subprocess.run(["make", "-n", "benchmark", "VENV=/nonexistent-venv", "CUB=x.tgz"], cwd=ROOT, env=make_env(),
                           capture_output=True, text=True, check=True).stdout.replace("\\\n", " ").splitlines()
    steps = [i for i, line in enumerate(lines) if "data_prep.preflight" in line or "data_prep.prepare" in line
             or "fgvc benchmark" in line]
    assert [("preflight" in lines[i], "prepare" in lines[i]) for i in steps] == [(True, False), (False, True),
                                                                                   (False, False)]
    assert '--weights "" --typed "CUB=x.tgz VENV=/nonexistent-venv"' in lines[steps[0]]
