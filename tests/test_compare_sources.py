"""`fgvc compare` flags NaN rows and different benchmarks / datasets; output piped into
`head` ends quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from report_fixtures import make_out

from fgvc.report.compare import compare

ROOT = Path(__file__).resolve().parents[1]


def test_nan_top1_rows_are_left_out_and_flagged(tmp_path, capsys):
    out = make_out(tmp_path / "a", seeds=(0, 1, 2), failed=False)
    runs = pd.read_csv(out / "runs.csv")
    bad = runs.run_id[runs.method == "center"].iloc[0]
    runs.loc[runs.run_id == bad, "top1"] = float("nan")
    runs.to_csv(tmp_path / "nan.csv", index=False)
    text = compare([out / "runs.csv", tmp_path / "nan.csv"])
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nan.csv'}: 1 row(s) without a numeric top-1 left out ({bad})" in err
    center = next(line for line in text.splitlines() if "| center | 0.001 |" in line)
    assert "| 3 | 2 |" in center  # n [1] = 3 seeds, n [2] = 2: the NaN row is not counted


def test_different_benchmarks_and_datasets_are_warned(tmp_path, capsys):
    a = make_out(tmp_path / "a", failed=False)
    b = make_out(tmp_path / "b", failed=False, benchmark="cub200")
    compare([a / "runs.csv", b / "runs.csv"])
    err = capsys.readouterr().err
    assert "[1] and [2] come from different benchmarks (sparrows vs cub200)" in err
    assert "different datasets" not in err
    for prov in (b / "runs").glob("*/provenance.json"):
        prov.write_text(json.dumps(dict(json.loads(prov.read_text()), dataset_content_sha256="e" * 64)))
    compare([a / "runs.csv", b / "runs.csv"])
    assert "[1] and [2] were trained on different datasets (content sha256" in capsys.readouterr().err
    compare([a / "runs.csv", a / "runs.csv"])
    assert capsys.readouterr().err == ""


def _first_line_then_close(args: list[str]) -> tuple[str, int, str]:
    """Like `fgvc ARGS | head -1`: read one line, close the pipe, let the command go on."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "fgvc", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    return first, proc.wait(timeout=120), err


def test_output_piped_into_head_ends_quietly(sparrow_dataset, tmp_path):
    grid = tmp_path / "big.yaml"  # about 200 KB of "to do" lines: more than a pipe holds
    grid.write_text(yaml.safe_dump({"name": "big", "model": "test_resnet", "pretrained": False, "epochs": 1,
                                    "methods": ["ce"], "seeds": list(range(3000))}))
    first, code, err = _first_line_then_close(["benchmark", str(grid), "--data", str(sparrow_dataset), "--out",
                                               str(tmp_path / "out"), "--dry-run"])
    assert first.startswith("benchmark big: 3000 runs in grid") and code in (0, 141)
    assert err == ""
    out = make_out(tmp_path / "a", seeds=tuple(range(40)), failed=False)
    first, code, err = _first_line_then_close(["compare", str(out / "runs.csv"), str(out / "runs.csv")])
    assert first.startswith("# fgvc compare") and code in (0, 141) and err == ""
