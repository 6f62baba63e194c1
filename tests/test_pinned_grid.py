"""tools/pinned_grid.sh: a grid trained with the code of one pinned commit, from its own worktree."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny import TINY

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "pinned_grid.sh"
pytestmark = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                                reason="needs git and a git checkout")


def _tool(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, PY=sys.executable, **(env_extra or {}))
    return subprocess.run(["bash", str(TOOL), *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=600)


def test_usage_and_unknown_commit_are_refused():
    r = _tool()
    assert r.returncode == 2 and "tools/pinned_grid.sh COMMIT GRID OUT" in r.stderr
    r = _tool("0000000", "grid.yaml", "out")
    assert r.returncode == 2 and "unknown commit 0000000" in r.stderr


@pytest.mark.slow
def test_a_grid_trains_with_the_pinned_commit_and_continues(sparrow_dataset, tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({("name" if k == "benchmark" else k): v for k, v in TINY.items()}))
    out, pinned = tmp_path / "out", tmp_path / "pinned"
    pinned.mkdir()
    args = (head[:10], str(grid), str(out), "--data", str(sparrow_dataset))
    try:
        r = _tool(*args, env_extra={"PINNED_DIR": str(pinned)})
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"fgvc at {head[:7]}" in r.stderr
        runs = pd.read_csv(out / "runs.csv")
        assert list(runs.status) == ["ok"]
        prov = json.loads(next((out / "runs").glob("*/provenance.json")).read_text())
        assert prov["git_commit"] == head and prov["git_dirty"] is False
        again = _tool(*args, env_extra={"PINNED_DIR": str(pinned)})
        assert again.returncode == 0 and "1 done, 0 to do" in again.stdout
        # a new machine: a fresh OUT seeded from the committed copy skips what already ended
        seeded = tmp_path / "seeded"
        bad = _tool(head[:10], str(grid), str(seeded), env_extra={"PINNED_DIR": str(pinned),
                                                                  "SEED_FROM": str(tmp_path / "nowhere")})
        assert bad.returncode == 2 and "has no runs/ folder" in bad.stderr and not seeded.exists()
        r = _tool(head[:10], str(grid), str(seeded), "--data", str(sparrow_dataset),
                  env_extra={"PINNED_DIR": str(pinned), "SEED_FROM": str(out)})
        assert r.returncode == 0 and "seeded with the run folders" in r.stderr and "1 done, 0 to do" in r.stdout
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(pinned / f"fgvc-pinned-{head[:7]}")], cwd=ROOT,
                       capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)
