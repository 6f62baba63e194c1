"""A run's inputs, the ones its run id does not name: the dataset (content checksum) and the
pretrained weights (file checksum). A run records them when it starts (`inputs.json`, with the
device it trains on, which a run pruned by successive halving keeps in its row) and
finishes (row.json: weights; provenance.json: dataset). A run folder is reused (skipped
as done, or resumed) only when they equal the inputs given now; otherwise the benchmark
stops before any training with one error naming the run and both checksums, so results
are never silently kept for other data or weights. Run ids stay as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from fgvc.config import RunConfig
from fgvc.errors import FGVCError
from fgvc.io import atomic_write_json

INPUTS = "inputs.json"


def inputs_of(info, winfo: dict) -> dict:
    return dict(dataset=str(info.root), dataset_content_sha256=info.content_sha256, weights=winfo.get("weights"),
                weights_sha256=winfo.get("weights_sha256"))


def write_inputs(run_dir: Path, info, winfo: dict, device: str | None = None) -> None:
    inputs = inputs_of(info, winfo)
    if device:
        inputs["device"] = device
    atomic_write_json(Path(run_dir) / INPUTS, inputs)


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def started_inputs(run_dir: Path) -> dict:
    """The inputs.json a run wrote when it started ({} without one)."""
    return _json(Path(run_dir) / INPUTS)


def recorded_inputs(run_dir: Path) -> dict:
    """What the run folder says its inputs were: the finished run's row.json and
    provenance.json, else inputs.json (an unfinished run); {} when it says nothing."""
    row, prov = _json(run_dir / "row.json"), _json(run_dir / "provenance.json")
    got = started_inputs(run_dir)
    if "weights" in row:
        got.update(weights=row.get("weights"), weights_sha256=row.get("weights_sha256"))
    if prov.get("dataset_content_sha256") and prov.get("command") != "validate":
        got.update(dataset=prov.get("dataset"), dataset_content_sha256=prov["dataset_content_sha256"])
    return got


def _short(sha) -> str:
    return f"{sha[:12]}..." if sha else "none"


def differences(recorded: dict, now: dict) -> list[str]:
    """The inputs that differ, as text; unknown values (older run folders) never differ."""
    out = []
    a, b = recorded.get("dataset_content_sha256"), now.get("dataset_content_sha256")
    if a and b and a != b:
        out.append(f"dataset content sha256 {_short(a)} there ({recorded.get('dataset')}), {_short(b)} now "
                   f"({now.get('dataset')})")
    if "weights" in recorded:
        a, b = recorded.get("weights_sha256"), now.get("weights_sha256")
        if a != b or (a is None and recorded.get("weights") != now.get("weights")):
            out.append(f"weights sha256 {_short(a)} there ({recorded.get('weights')}), {_short(b)} now "
                       f"({now.get('weights')})")
    return out


def check_reuse(configs: list[RunConfig], out: Path, info, winfo_of: Callable[[RunConfig], dict]) -> None:
    """Refuse (FGVCError) when a run folder of `configs` under `out` holds results or a
    checkpoint of other inputs than `info` and `winfo_of(cfg)`."""
    bad = []
    for cfg in configs:
        run_dir = Path(out) / "runs" / cfg.run_id
        if not run_dir.is_dir():
            continue
        diff = differences(recorded_inputs(run_dir), inputs_of(info, winfo_of(cfg)))
        if diff:
            bad.append((cfg.run_id, diff))
    if bad:
        run_id, diff = bad[0]
        more = f" (and {len(bad) - 1} more run(s))" if len(bad) > 1 else ""
        raise FGVCError(f"{out} already holds run {run_id}{more} from other inputs: {'; '.join(diff)}; "
                        "use another --out for these inputs (a run id names the settings, not the data or weights)")


__all__ = ["INPUTS", "inputs_of", "write_inputs", "started_inputs", "recorded_inputs", "differences", "check_reuse"]
