"""tools/gpu_grid.py and fgvc/grid/pack.py (issue 26): a grid trained in one call of a lent GPU
machine, made lean and packed into at most 8 files of at most 16 MiB, then verified and
unpacked into a results folder `fgvc report` reads. Here in the tiny CPU configuration."""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_readme import make_variables, shell_commands
from tiny import make_env

from fgvc.grid.pack import PACK_FILE, PACKS_FILE, PackError, pack_results, plan_parts, unpack_results

ROOT = Path(__file__).resolve().parents[1]
TOOL = runpy.run_path(str(ROOT / "tools" / "gpu_grid.py"))


@pytest.fixture(scope="module")
def trained(sparrow_dataset, tmp_path_factory):
    """gpu-grid run in its tiny CPU mode: 4 runs, --jobs 2, parts of at most 10 KiB (several)."""
    base = tmp_path_factory.mktemp("gpu-grid")
    out, pack = base / "out", base / "pack"
    rc = TOOL["main"](["run", "benchmarks/smoke.yaml", "--out", str(out), "--pack", str(pack), "--device", "cpu",
                       "--jobs", "2", "--data", str(sparrow_dataset), "--set", "seeds=[0,1]", "--part-mb", "0.01"])
    assert rc == 0
    return out, pack


@pytest.mark.slow
def test_grid_packed_unpacked_and_reported(trained, tmp_path, capsys):
    from fgvc.report.report import write_report

    out, pack = trained
    manifest = json.loads((pack / PACK_FILE).read_text())
    files = sorted(p.name for p in pack.iterdir())
    assert len(manifest["parts"]) >= 2 and files == sorted([PACK_FILE] + [p["file"] for p in manifest["parts"]])
    assert all(p["bytes"] <= 10 * 2**10 for p in manifest["parts"])
    assert sorted(manifest["runs"]) == sorted(p.name for p in (out / "runs").iterdir()) and \
        set(manifest["runs"].values()) == {"ok"}
    assert manifest["device"].startswith("cpu:") and manifest["torch"] and manifest["git_commit"]
    for run in (out / "runs").iterdir():  # lean: seed 0 keeps reduced features, seed 1 none; numbers kept
        seed = json.loads((run / "row.json").read_text())["seed"]
        assert (run / "features.npz").is_file() == (str(seed) == "0") and (run / "feature_metrics.json").is_file()
    dest = tmp_path / "home"
    assert TOOL["main"](["unpack", str(pack), str(dest)]) == 0
    assert "4 added" in capsys.readouterr().out
    assert (dest / "runs.csv").read_text() == (out / "runs.csv").read_text()
    assert not list(dest.rglob("checkpoint*.pt")) and list(out.rglob("checkpoint*.pt"))
    assert json.loads((dest / PACKS_FILE).read_text())["packs"] == [manifest]
    assert (write_report(dest)).is_file()
    assert TOOL["main"](["unpack", str(pack), str(dest)]) == 0  # again: identical, nothing changes
    assert "0 added, 4 identical" in capsys.readouterr().out
    assert len(json.loads((dest / PACKS_FILE).read_text())["packs"]) == 1


@pytest.mark.slow
def test_a_second_call_with_the_carried_pack_skips_finished_runs(trained, sparrow_dataset, tmp_path, capfd):
    _, pack = trained
    carried = tmp_path / "carried"  # the next call's tree: the first call's pack (no checkpoints)
    shutil.copytree(pack, carried)
    out, again = tmp_path / "out", tmp_path / "pack2"
    rc = TOOL["main"](["run", "benchmarks/smoke.yaml", "--out", str(out), "--pack", str(again), "--device", "cpu",
                       "--jobs", "2", "--data", str(sparrow_dataset), "--set", "seeds=[0,1]", "--from-pack",
                       str(carried)])
    assert rc == 0
    text = capfd.readouterr().out
    assert "4 done, 0 to do" in text and "packed 0 runs" in text and "left out 4 that came with the call" in text
    manifest = json.loads((again / PACK_FILE).read_text())
    assert manifest["runs"] == {} and len(manifest["unchanged"]) == 4  # only what this call trained travels
    home = tmp_path / "home"
    unpack_results(pack, home)
    (home / "runs" / manifest["unchanged"][0] / "features.npz").unlink(missing_ok=True)  # made leaner here
    found = unpack_results(again, home)
    assert not any(found.values()) and len(json.loads((home / PACKS_FILE).read_text())["packs"]) == 2


@pytest.mark.slow
def test_unpack_refuses_a_finished_run_with_other_content(trained, tmp_path):
    _, pack = trained
    dest = tmp_path / "home"
    unpack_results(pack, dest)
    first, second = sorted((dest / "runs").iterdir())[:2]
    (first / "train.log").write_text("edited by hand\n")
    (second / "row.json").unlink()  # a run still under way there: the pack's finished one replaces it
    before = (first / "train.log").read_text()
    with pytest.raises(PackError, match=rf"differ from the pack's \({first.name}\)"):
        unpack_results(pack, dest)
    assert (first / "train.log").read_text() == before and not (second / "row.json").exists()
    shutil.rmtree(first)
    found = unpack_results(pack, dest)
    assert found["added"] == [first.name] and found["replaced"] == [second.name]
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_a_damaged_or_missing_part_fails_in_one_line_naming_it(trained, tmp_path, capsys):
    _, pack = trained
    copy = tmp_path / "pack"
    shutil.copytree(pack, copy)
    part = copy / "part-02.tar.gz"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    assert TOOL["main"](["unpack", str(copy), str(tmp_path / "home")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "part-02.tar.gz is damaged" in err and "fetch it again" in err
    assert not (tmp_path / "home").exists()
    part.unlink()
    assert TOOL["main"](["unpack", str(copy), str(tmp_path / "home")]) == 2
    assert "part-02.tar.gz, listed in pack.json, is missing" in capsys.readouterr().err


def _fake_results(folder: Path, runs: int, kib: int) -> Path:
    """A results folder of `runs` run folders with `kib` KiB of incompressible bytes each."""
    for k in range(runs):
        run = folder / "runs" / f"run-{k}"
        run.mkdir(parents=True)
        (run / "metrics.csv").write_bytes(os.urandom(kib * 1024))
        (run / "checkpoint.pt").write_bytes(os.urandom(64 * 1024))  # never packed
    return folder


def test_results_that_do_not_fit_fail_clearly(tmp_path, capsys):
    out = _fake_results(tmp_path / "out", runs=3, kib=20)
    manifest = pack_results(out, tmp_path / "fits", part_bytes=2**20)
    assert len(manifest["parts"]) == 1 and manifest["runs"] == dict.fromkeys(["run-0", "run-1", "run-2"],
                                                                              "unfinished")
    assert TOOL["main"](["pack", str(out), str(tmp_path / "many"), "--part-mb", "0.03", "--max-files", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "need 3 parts" in err and "at most 2 fit" in err
    assert not (tmp_path / "many" / PACK_FILE).exists()
    assert TOOL["main"](["pack", str(out), str(tmp_path / "big"), "--part-mb", "0.015"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"runs/run-\d is 0.02 MiB compressed, over the 0.01 MiB a part may hold", err), err
    with pytest.raises(PackError, match="is the results folder"):
        pack_results(out, out / "pack")


def test_parts_are_planned_first_fit_within_the_limits():
    sizes = {"a": 9000, "b": 6000, "c": 5000, "d": 1000}
    assert plan_parts(sizes, 15096, 3) == [["a", "d"], ["b", "c"]]  # 11000 bytes each, SLACK_BYTES aside
    with pytest.raises(PackError, match="at most 1 fit"):
        plan_parts(sizes, 15096, 1)


def test_the_deadline_stops_the_grid_with_sigterm():
    started = time.perf_counter()
    rc, stopped = TOOL["train"]([sys.executable, "-c", "import time; time.sleep(60)"], minutes=0.02)
    assert stopped and rc == -15 and time.perf_counter() - started < 20


def test_a_tree_without_git_takes_the_commit_make_gpu_carry_saw(tmp_path, monkeypatch):
    (tmp_path / ".carry").mkdir()
    (tmp_path / ".carry" / "git.json").write_text('{"git_commit": "abc123", "git_dirty": true}')
    tool = TOOL["git_env"].__globals__  # the module's own globals (run_path returns a copy)
    monkeypatch.setitem(tool, "ROOT", tmp_path)  # the device's copy: no .git
    monkeypatch.setitem(tool, "CARRY", tmp_path / ".carry")
    monkeypatch.delenv("FGVC_GIT_COMMIT", raising=False)
    assert TOOL["git_env"]() == {"FGVC_GIT_COMMIT": "abc123"} and TOOL["carried_dirty"]() is True
    monkeypatch.setitem(tool, "ROOT", ROOT)
    assert TOOL["git_env"]() == {}  # a checkout: git itself says


def test_a_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(TOOL["REQUIRED"], "no_such_module_here", "no-such-package")
    with pytest.raises(Exception, match=r"lacks no-such-package \(gpu-grid needs .*no internet"):
        TOOL["check_packages"]()


def _doc_commands() -> list[list[str]]:
    """docs/gpu.md's shell commands, split at `&&`."""
    found = []
    for line in shell_commands((ROOT / "docs" / "gpu.md").read_text(encoding="utf-8")):
        tokens, current = shlex.split(line), []
        for t in tokens + ["&&"]:
            if t == "&&":
                found.append(current)
                current = []
            else:
                current.append(t)
    return [c for c in found if c]


@pytest.mark.parametrize("tokens", [c for c in _doc_commands() if c[0] == "make" or any(
    t.endswith("gpu_grid.py") for t in c)], ids=shlex.join)
def test_the_commands_of_docs_gpu_run_as_written(tokens):
    """make: the target exists and every VAR= is read (make -n: nothing runs); the tool: it parses."""
    if tokens[0] == "make":
        unknown = [a.split("=")[0] for a in tokens[1:] if "=" in a and a.split("=")[0] not in make_variables()]
        assert not unknown, f"the Makefile reads no {unknown}"
        done = subprocess.run(["make", "-n", *tokens[1:], "VENV=/nonexistent-venv"], cwd=ROOT, env=make_env(),
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    else:
        at = next(i for i, t in enumerate(tokens) if t.endswith("gpu_grid.py"))
        TOOL["build_parser"]().parse_args(tokens[at + 1:])


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout


def test_the_budget_counts_what_a_call_sends_and_hiding_results_leaves_them_out(tmp_path, capsys):
    """Tracked and untracked-not-ignored files and the carried paths count; ignored files do not;
    `make gpu-hide-results` takes results/ out of the count and `gpu-show-results` puts it back as it was."""
    repo = tmp_path / "repo"
    (repo / "fgvc").mkdir(parents=True)
    (repo / "results" / "a" / "runs").mkdir(parents=True)
    (repo / "fgvc" / "x.py").write_bytes(b"x" * 1000)
    (repo / "results" / "a" / "runs" / "p.csv").write_bytes(b"p" * 5000)
    (repo / ".gitignore").write_text("/.carry/\n/junk\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "start")
    (repo / "new.txt").write_bytes(b"n" * 300)  # untracked, not ignored: travels
    (repo / "junk").write_bytes(b"j" * 9000)  # ignored: does not
    (repo / ".carry").mkdir()
    (repo / ".carry" / "w.bin").write_bytes(b"w" * 2000)
    sizes = TOOL["travel_budget"]([Path(".carry")], repo)
    assert sizes == {"fgvc/": 1000, "results/a/": 5000, ".gitignore": 15, "new.txt": 300, "carried .carry": 2000}
    argv = ["budget", "--root", str(repo), "--carry", ".carry"]
    assert TOOL["main"]([*argv, "--limit-mib", str(8000 / 2**20)]) == 1
    out = capsys.readouterr()
    assert "over its" in out.err and "gpu-hide-results" in out.err and "results/a/" in out.out

    make = ["make", "-s", "-f", str(ROOT / "Makefile"), "VENV=/nonexistent-venv"]
    subprocess.run([*make, "gpu-hide-results"], cwd=repo, env=make_env(), check=True, capture_output=True)
    assert "results/a/" not in TOOL["travel_budget"]([], repo)
    assert TOOL["main"]([*argv, "--limit-mib", str(8000 / 2**20)]) == 0
    assert "left out of the call" in capsys.readouterr().out
    subprocess.run([*make, "gpu-show-results"], cwd=repo, env=make_env(), check=True, capture_output=True)
    assert TOOL["travel_budget"]([], repo)["results/a/"] == 5000
    assert _git(repo, "status", "--porcelain") == "?? new.txt\n"  # the index as it was, the exclude line gone

    (repo / "results" / "a" / "runs" / "p.csv").write_bytes(b"q")
    hide = subprocess.run([*make, "gpu-hide-results"], cwd=repo, env=make_env(), capture_output=True, text=True)
    assert hide.returncode != 0 and "uncommitted changes" in hide.stderr
