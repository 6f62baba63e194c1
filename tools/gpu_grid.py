"""`make gpu-grid` / `make gpu-unpack`: a whole grid trained in one call of a lent GPU machine, and
brought home in the few files such a call returns (docs/gpu.md).

    python3 tools/gpu_grid.py run GRID --out RESULTS --pack PACK [--jobs 8] [--minutes 5] [--compile] [--from-pack DIR]
    python3 tools/gpu_grid.py pack RESULTS PACK
    python3 tools/gpu_grid.py unpack PACK [RESULTS]
    python3 tools/gpu_grid.py budget [--carry .carry ...]

`run` (on the device machine, with its own python: no venv there): `python -m fgvc benchmark GRID
--jobs N --pipeline batched --precision bf16` in a subprocess, as a user would run it (N
processes, each decoding the images once onto the GPU; claims keep them from training a run
twice; a second call on the same RESULTS skips its finished runs), stopped by SIGTERM when
--minutes have passed (each worker keeps its last epoch, as on Ctrl-C); then every finished
run's features made lean as tools/lean_results.py does (the --keep-seeds runs' reduced to 64
PCA dims, the others' dropped, their numbers kept); then RESULTS packed into PACK
(fgvc.grid.pack: at most 7 parts of at most 16 MiB and pack.json; no checkpoints). PACK
defaults to $OUT, the folder the device machine brings back. --from-pack DIR first unpacks an
earlier call's pack into RESULTS (a pack is about a third of its unpacked folder: what fits the
transfer), so that call's finished runs are skipped. `unpack` (here) verifies the
parts and brings the runs into a results folder that `fgvc report` reads like any other.
`budget` (here, before the call) adds up what the call would send, as the device tool counts it
(tracked files, untracked files git does not ignore, the carried paths), against its 64 MiB;
exit status 1 when it does not fit, with the biggest shares and the fix.

With --device cpu, `run` is the tiny configuration (timm's test_resnet, 32 px, one epoch, on
the synthetic CUB tree) that the tests and `make gpu-check DEVICE=cpu` run.
Exit status of `run`: 0 every run ended, 1 some run failed, 3 stopped at --minutes with runs
left (those finished are packed; the others restart at their first epoch next call), 2 an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # fgvc need not be installed on the device machine

from fgvc.errors import FGVCError  # noqa: E402
from fgvc.grid.pack import (MAX_FILES, PART_BYTES, check_pack_folder, pack_results, tree_digest,  # noqa: E402
                            unpack_results)

CARRY = ROOT / ".carry"  # what `make gpu-carry` copies for the device: data, weights, git.json
CARRIED_DATA = CARRY / "cub_sparrows"
CARRIED_WEIGHTS = CARRY / "tf_efficientnet_lite0.in1k.safetensors"
# import name -> pip name: what `fgvc benchmark` and the lean step import (pytorch-metric-learning,
# for the arcface / cosface / supcon / triplet methods only, is named by fgvc when a grid needs it)
REQUIRED = {"torch": "torch", "torchvision": "torchvision", "timm": "timm", "numpy": "numpy", "pandas": "pandas",
            "scipy": "scipy", "sklearn": "scikit-learn", "yaml": "pyyaml", "safetensors": "safetensors",
            "PIL": "pillow", "tqdm": "tqdm"}
TINY_SETS = ["model=test_resnet", "pretrained=false", "epochs=1", "batch_size=8", "image_size=32"]
TINY_DATA = ROOT / ".cache" / "gpu-grid-tiny"  # git-ignored
TRAVEL_LIMIT = 64 * 2**20  # what one device call may send: tree + carried paths (docs/gpu.md)
STOP_GRACE_S = 150  # after SIGTERM: the workers' own grace (fgvc.grid.pool, 60 s) and the parent's wrap-up


def missing_packages(names: dict[str, str] = REQUIRED) -> list[str]:
    """The pip names of the packages this python cannot import (found without importing them)."""
    return [pip for mod, pip in names.items() if importlib.util.find_spec(mod) is None]


def check_packages() -> None:
    missing = missing_packages()
    if missing:
        raise FGVCError(f"{sys.executable} lacks {', '.join(missing)} (gpu-grid needs {', '.join(REQUIRED.values())}); "
                        "the device machine has no internet to pip-install them: use a python that has them "
                        "(PY=...), see docs/gpu.md")


def tiny_data(folder: Path = TINY_DATA) -> Path:
    """The synthetic CUB tree carved into a dataset folder (made once, then reused: same content)."""
    data = folder / "ds"
    if not (data / "manifest.csv").is_file():
        from data_prep.carve import carve
        from data_prep.synthetic import make_cub_tree

        carve(make_cub_tree(folder / "cub"), data)
    return data


def inputs(device: str, data: Path | None, weights: Path | None) -> tuple[Path, list[str], list[str]]:
    """(dataset folder, weight arguments, --set values before the user's) for this device."""
    if device == "cpu":
        return data or tiny_data(), ["--pretrained-file", str(weights)] if weights else [], list(TINY_SETS)
    data, weights = data or CARRIED_DATA, weights or CARRIED_WEIGHTS
    for p in (data / "manifest.csv", weights):
        if not p.exists():
            raise FGVCError(f"{p} is missing: run `make gpu-carry` on the machine the call starts from and carry "
                            ".carry (or give --data / --pretrained-file)")
    return data, ["--pretrained-file", str(weights)], []


def git_env() -> dict[str, str]:
    """FGVC_GIT_COMMIT for the runs' provenance from .carry/git.json, where this copy has no
    .git (the device machine's copy of the tree): the commit `make gpu-carry` saw."""
    if (ROOT / ".git").exists() or "FGVC_GIT_COMMIT" in os.environ:
        return {}
    try:
        return {"FGVC_GIT_COMMIT": str(json.loads((CARRY / "git.json").read_text())["git_commit"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def carried_dirty() -> bool | None:
    try:
        return json.loads((CARRY / "git.json").read_text()).get("git_dirty")
    except (OSError, ValueError, AttributeError):
        return None


def train(cmd: list[str], minutes: float | None) -> tuple[int, bool]:
    """Run the benchmark until it ends or `minutes` pass (then SIGTERM, as Ctrl-C: every worker
    stops where it is); (its exit status, whether the deadline stopped it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **git_env())
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        return proc.wait(timeout=None if minutes is None else minutes * 60), False
    except subprocess.TimeoutExpired:
        print(f"gpu-grid: {minutes:g} min passed: stopping the grid (finished runs are kept)", flush=True)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_GRACE_S), True
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(), True
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE_S)
        raise


def lean(out: Path, keep: set[str], dims: int = 64) -> int:
    """Every finished run's features made lean (tools/lean_results.py); how many were changed."""
    sys.path.insert(0, str(ROOT / "tools"))
    from lean_results import lean_run

    from fgvc.runs.read import read_config

    changed = 0
    for run_dir in sorted((out / "runs").iterdir()) if (out / "runs").is_dir() else []:
        if (run_dir / "row.json").is_file():
            changed += lean_run(run_dir, str(read_config(run_dir).get("seed", "")) in keep, dims) != "left as it is"
    return changed


def digests(out: Path) -> dict[str, dict[str, str]]:
    """run id -> its content (fgvc.grid.pack.tree_digest) for every run folder in OUT now."""
    runs = Path(out) / "runs"
    return {p.name: tree_digest(p) for p in sorted(runs.iterdir()) if p.is_dir()} if runs.is_dir() else {}


def run_meta(device: str, cmd: list[str], rc: int, stopped: bool, started: float) -> dict:
    """What pack.json records of this call: device, torch, python, commit, command, outcome."""
    import torch

    from fgvc.engine.device import describe_device, resolve_device
    from fgvc.engine.provenance import git_state

    os.environ.update(git_env())
    commit, dirty = git_state()
    return dict(device=describe_device(resolve_device(device)), torch=torch.__version__,
                python=platform.python_version(), host=platform.node(), git_commit=commit,
                git_dirty=dirty if dirty is not None else carried_dirty(), command=cmd[2:],
                benchmark_exit=rc, stopped_at_deadline=stopped, seconds=round(time.time() - started))


def cmd_run(args) -> int:
    started = time.time()
    check_packages()
    pack = args.pack or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if pack is None:
        raise FGVCError("no pack folder: give --pack DIR (on the device machine its $OUT, the folder it brings back)")
    check_pack_folder(args.out, pack)
    data, weights, sets = inputs(args.device, args.data, args.pretrained_file)
    if args.from_pack is not None:  # an earlier call's pack, carried (smaller than its unpacked folder)
        found = unpack_results(args.from_pack, args.out)
        print(f"gpu-grid: {args.from_pack} unpacked into {args.out}: {len(found['added'])} runs added, "
              f"{len(found['same'])} there already", flush=True)
    precision = args.precision or ("bf16" if args.device.startswith("cuda") else "auto")
    cmd = [sys.executable, "-m", "fgvc", "benchmark", str(args.grid), "--out", str(args.out), "--jobs",
           str(args.jobs), "--device", args.device, "--pipeline", "batched", "--precision", precision,
           "--no-progress", "--data", str(data), *weights, *(["--compile"] if args.compile else []),
           *[a for s in sets + args.overrides for a in ("--set", s)]]
    print("gpu-grid: " + " ".join(cmd[1:]), flush=True)
    before = digests(args.out)  # runs the call brought (carried, or --from-pack): packed only if they change
    rc, stopped = train(cmd, args.minutes)
    keep = set() if args.keep_seeds.strip() in ("", "none") else set(args.keep_seeds.split(","))
    leaned = lean(args.out, keep)
    after = digests(args.out)
    manifest = pack_results(args.out, pack, run_meta(args.device, cmd, rc, stopped, started),
                            part_bytes=int(args.part_mb * 2**20), max_files=args.max_files,
                            unchanged=[r for r, d in before.items() if after.get(r) == d])
    n = list(manifest["runs"].values())
    print(f"gpu-grid: packed {len(n)} runs of {args.out} ({n.count('ok')} ok, {n.count('failed')} failed, "
          f"{n.count('pruned')} pruned, {n.count('unfinished')} unfinished; {leaned} made lean) and left out "
          f"{len(manifest['unchanged'])} that came with the call unchanged: {len(manifest['parts'])} part(s) + "
          f"pack.json in {pack} ({sum(p['bytes'] for p in manifest['parts']) / 2**20:.2f} MiB); trained on "
          f"{manifest['device']}", flush=True)
    if stopped:
        print("gpu-grid: stopped at --minutes with runs left: call again with this pack carried (RESUME=, "
              "docs/gpu.md); unfinished runs start again at their first epoch", flush=True)
        return 3
    return 0 if rc == 0 else (1 if rc == 1 else 2)


def cmd_pack(args) -> int:
    from fgvc.engine.provenance import git_state

    commit, dirty = git_state()
    m = pack_results(args.out, args.pack, dict(git_commit=commit, git_dirty=dirty, packed_by="gpu_grid.py pack"),
                     part_bytes=int(args.part_mb * 2**20), max_files=args.max_files)
    print(f"gpu-grid: {len(m['runs'])} runs packed into {len(m['parts'])} part(s) + pack.json in {args.pack}")
    return 0


def cmd_unpack(args) -> int:
    from fgvc.grid.pack import read_manifest

    manifest = read_manifest(args.pack)
    out = args.out or ROOT / "results" / Path(str(manifest.get("results", "gpu"))).name
    found = unpack_results(args.pack, out)
    print(f"gpu-grid: unpacked {args.pack} into {out}: {len(found['added'])} added, {len(found['same'])} identical, "
          f"{len(found['replaced'])} replaced, {len(found['kept'])} kept (further along there); runs.csv rebuilt; "
          f"trained on {manifest.get('device', '?')}, torch {manifest.get('torch', '?')}, "
          f"commit {str(manifest.get('git_commit', '?'))[:10]}; next: make report OUT={out}")
    return 0


def travelling_files(root: Path = ROOT) -> list[Path]:
    """The files of `root` a device call sends besides the carried paths: the tracked ones still on
    disk and the untracked ones git does not ignore (`.git/info/exclude` included)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise FGVCError(f"{root}: cannot list the files git tracks ({e}): run budget in a git checkout") from None
    return [p for p in (root / n for n in sorted(set(out.decode().split("\0"))) if n) if p.is_file()]


def share(path: Path, root: Path = ROOT) -> str:
    """The row of the budget table a file counts in: its top folder, or results/<folder>."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) == 1 else "/".join(parts[:2 if parts[0] == "results" and len(parts) > 2 else 1]) + "/"


def travel_budget(carry: list[Path], root: Path = ROOT) -> dict[str, int]:
    """Bytes a device call would send, per share of the tree and per carried path."""
    sizes: dict[str, int] = {}
    for f in travelling_files(root):
        row = share(f, root)
        sizes[row] = sizes.get(row, 0) + f.stat().st_size
    for c in carry:
        c = c if c.is_absolute() else root / c
        if not c.exists():
            raise FGVCError(f"{c}: no such carried path (make gpu-carry writes .carry)")
        files = [c] if c.is_file() else [f for f in c.rglob("*") if f.is_file()]
        sizes[f"carried {c.relative_to(root) if c.is_relative_to(root) else c}"] = sum(f.stat().st_size for f in files)
    return sizes


def hidden_results(root: Path = ROOT) -> bool:
    """Whether results/ is left out of the call (`make gpu-hide-results`: deleted from the index only)."""
    out = subprocess.run(["git", "-C", str(root), "diff", "--cached", "--name-only", "--diff-filter=D", "--", "results"],
                         capture_output=True, text=True)
    return bool(out.stdout.strip())


def cmd_budget(args) -> int:
    sizes = travel_budget(args.carry, args.root)
    if hidden_results(args.root):
        print("results/ is left out of the call (make gpu-hide-results): make gpu-show-results after it, and "
              "commit nothing before that")
    total, limit = sum(sizes.values()), int(args.limit_mib * 2**20)
    for name, n in sorted(sizes.items(), key=lambda kv: -kv[1])[:args.most]:
        print(f"{n / 2**20:9.2f} MiB  {name}")
    print(f"{total / 2**20:9.2f} MiB  in all, of the {limit / 2**20:g} MiB a call may send"
          f" ({(limit - total) / 2**20:+.2f} MiB left)")
    if total <= limit:
        return 0
    print(f"gpu-grid: error: the call would send {total / 2**20:.2f} MiB, over its {limit / 2**20:g} MiB: make the "
          "results folders lean (python tools/lean_results.py results/<folder>), or leave results/ out of the "
          "call (make gpu-hide-results before it, make gpu-show-results after; docs/gpu.md)", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train GRID, make its features lean, pack it (on the device machine)")
    r.add_argument("grid", type=Path, help="benchmark YAML, e.g. benchmarks/fair-lite0.yaml")
    r.add_argument("--out", type=Path, required=True, help="results folder (a second call on it skips finished runs)")
    r.add_argument("--pack", type=Path, default=None, help="folder for the parts and pack.json (default: $OUT)")
    r.add_argument("--device", default="cuda", help="cuda (default) or cpu (the tiny configuration)")
    r.add_argument("--jobs", type=int, default=8, help="runs trained at once on the device (default 8)")
    r.add_argument("--minutes", type=float, default=5.0,
                   help="stop training after this long, then pack (default 5: room for gpu-check before it)")
    r.add_argument("--data", type=Path, default=None, help="dataset folder (default .carry/cub_sparrows; cpu: "
                                                            "the synthetic tree)")
    r.add_argument("--pretrained-file", type=Path, default=None, help="weights (default: .carry's Lite0)")
    r.add_argument("--precision", default=None, help="bf16 (default on CUDA), fp32 or auto (default on CPU)")
    r.add_argument("--compile", action="store_true", help="torch.compile each run (pays only over long runs)")
    r.add_argument("--from-pack", type=Path, default=None, metavar="DIR",
                   help="unpack an earlier call's pack into --out first, so its finished runs are skipped")
    r.add_argument("--keep-seeds", default="0",
                   help="seeds whose features are kept, PCA-reduced (default 0: what fgvc visualize draws); none")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to fgvc benchmark")
    r.set_defaults(func=cmd_run)
    k = sub.add_parser("pack", help="pack an existing results folder")
    k.add_argument("out", type=Path)
    k.add_argument("pack", type=Path)
    k.set_defaults(func=cmd_pack)
    for q in (r, k):
        q.add_argument("--part-mb", type=float, default=PART_BYTES / 2**20, help="largest part, MiB (default 16)")
        q.add_argument("--max-files", type=int, default=MAX_FILES,
                       help="files the pack may take, pack.json included (default 8)")
    u = sub.add_parser("unpack", help="verify a pack and bring its runs into a results folder")
    u.add_argument("pack", type=Path)
    u.add_argument("out", type=Path, nargs="?", default=None, help="results folder (default results/<its name>)")
    u.set_defaults(func=cmd_unpack)
    b = sub.add_parser("budget", help="what a device call would send from this checkout, against its 64 MiB")
    b.add_argument("--carry", type=Path, nargs="*", default=[], help="the paths the call carries (e.g. .carry)")
    b.add_argument("--root", type=Path, default=ROOT, help="the checkout the call starts from (default: this one)")
    b.add_argument("--limit-mib", type=float, default=TRAVEL_LIMIT / 2**20, help="what a call may send (default 64)")
    b.add_argument("--most", type=int, default=12, help="rows of the table, biggest first (default 12)")
    b.set_defaults(func=cmd_budget)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FGVCError as e:
        print(f"gpu-grid: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
