"""`make gpu-check`: run, in one command, every CUDA path of fgvc that the CPU tests cannot
reach, and print one PASS / FAIL line per step (exit 1 if any failed).

On a GPU (`--device cuda`, the default): EfficientNet-Lite0 with the local ImageNet weights on
the real sparrow photos (prepared dataset and weights copied into `.carry/` by
`make gpu-carry`), 2 epochs per run; then `fgvc speed` for Lite0 and for ResNet50 (random
init: timing needs no weights) with `--measure-grid`, whose CSVs go to results/speed/.
With `--device cpu` the same steps run in a tiny configuration (a small timm test model on a
synthetic CUB tree), so CI tests the script itself; nothing is written under results/.

Every step runs `python -m fgvc ...` (or tools/gpu_grid.py) in a subprocess, as a user would.
The gpu-grid step is `make gpu-grid`'s path end to end (it took over the former jobs4 step):
4 runs under --jobs 4 (batched, bf16 on CUDA; --jobs 2 on CPU), made lean and packed, then
unpacked, reported, and called again on the unpacked folder, which must skip every run (a
second call on carried results).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_grid import CARRIED_DATA, CARRIED_WEIGHTS, REQUIRED, TINY_SETS, missing_packages, tiny_data

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("batched-bf16", "gpu-grid", "deterministic-jobs2", "compile", "torchrun-1", "validate-on-cpu", "speed")
REPORT_PACKAGES = {"matplotlib": "matplotlib", "statsmodels": "statsmodels", **REQUIRED}  # fgvc report's


def fgvc(*args: str, env: dict | None = None, timeout: int = 600) -> str:
    """Run `python -m fgvc ARGS`; raise with the last lines of its output on failure."""
    cmd = [sys.executable, "-m", "fgvc", *args]
    return _run(cmd, env, timeout)


def _run(cmd: list[str], env: dict | None, timeout: int) -> str:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {}))
    p = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        tail = " | ".join((p.stdout + p.stderr).strip().splitlines()[-4:])
        raise RuntimeError(f"exit {p.returncode}: {tail}")
    return p.stdout


def setup(device: str, work: Path) -> dict:
    """Data, weights and the per-run settings of this configuration."""
    if device == "cpu":
        data = tiny_data(work)
        sets = [*TINY_SETS, "seeds=[0]"]
        return dict(data=data, weights=[], sets=sets, speed_models=[("test_resnet", ["--no-pretrained"])], speed_extra=[
            "--batch-size", "8", "--image-size", "32", "--train-batches", "2", "--warmup-batches", "1",
            "--repeats", "1", "--workers", "0"], speed_out=work / "speed", nproc_env={})
    data, weights = CARRIED_DATA, CARRIED_WEIGHTS
    for p in (data / "manifest.csv", weights):
        if not p.exists():
            raise SystemExit(f"error: {p} missing: run `make gpu-carry` here first and carry .carry")
    return dict(data=data, weights=["--pretrained-file", str(weights)], sets=["epochs=2", "seeds=[0]"],
                speed_models=[("tf_efficientnet_lite0", ["--pretrained-file", str(weights)]),
                              ("resnet50.tv_in1k", ["--no-pretrained", "--measure-grid", "--jobs", "5"])],
                speed_extra=[], speed_out=ROOT / "results" / "speed", nproc_env={})


def bench(cfg: dict, out: Path, device: str, *extra: str, env: dict | None = None) -> Path:
    sets = [a for s in cfg["sets"] for a in ("--set", s)]
    fgvc("benchmark", "benchmarks/smoke.yaml", "--data", str(cfg["data"]), "--out", str(out), "--device", device,
         "--no-progress", *cfg["weights"], *sets, *extra, env=env)
    return out


def predictions(out: Path) -> dict[str, str]:
    return {d.name: (d / "predictions.csv").read_text() for d in sorted((out / "runs").iterdir())}


def grid_tool(*args: str, timeout: int = 600) -> str:
    return _run([sys.executable, str(ROOT / "tools" / "gpu_grid.py"), *map(str, args)], None, timeout)


def grid_step(cfg: dict, device: str, work: Path) -> str:
    """tools/gpu_grid.py run -> unpack -> fgvc report -> run again on the unpacked folder."""
    out, pack, home = work / "grid", work / "pack", work / "home"
    sets = [a for s in [*cfg["sets"], "seeds=[0,1]"] for a in ("--set", s)]
    small = ["--part-mb", "0.01"] if device == "cpu" else []  # several parts on the tiny runs too
    jobs = "2" if device == "cpu" else "4"  # on 2 CPU cores each further worker is only a slower start
    common = ["--device", device, "--jobs", jobs, "--minutes", "4", "--data", cfg["data"], *cfg["weights"], *sets]
    grid_tool("run", "benchmarks/smoke.yaml", "--out", out, "--pack", pack, *common, *small)
    manifest = json.loads((pack / "pack.json").read_text())
    grid_tool("unpack", pack, home)
    assert (home / "runs.csv").read_text() == (out / "runs.csv").read_text(), "unpacked runs.csv differs"
    assert list(manifest["runs"].values()) == ["ok"] * 4, manifest["runs"]
    missing = missing_packages(REPORT_PACKAGES)
    if missing:
        reported = f"report not run here (no {', '.join(missing)}): run it where the pack lands"
    else:
        fgvc("report", str(home))
        reported = "reported"
    again = grid_tool("run", "benchmarks/smoke.yaml", "--out", home, "--pack", work / "pack2", *common)
    assert "4 done, 0 to do" in again, "a second call on the unpacked results trained again"
    return (f"4 runs under --jobs {jobs} on {manifest['device']}, {len(manifest['parts'])} part(s) "
            f"{sum(p['bytes'] for p in manifest['parts']) / 2**20:.2f} MiB, unpacked, {reported}; "
            "a second call skipped them")


def run_step(name: str, cfg: dict, device: str, work: Path) -> str:
    """One check; returns a short detail for the PASS line, raises on failure."""
    if name == "batched-bf16":
        out = bench(cfg, work / name, device, "--pipeline", "batched", "--precision", "auto")
        prov = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/provenance.json"))]
        import torch

        sys.path.insert(0, str(ROOT))  # fgvc need not be installed on the device machine
        from fgvc.engine.device import resolve_precision

        want = resolve_precision("auto", torch.device(device))  # bf16 on CUDA and on CPUs with bf16 instructions
        assert all(p["pipeline"] == "batched" and p["precision"] == want for p in prov), prov
        return f"{len(prov)} runs, pipeline batched, {want}"
    if name == "gpu-grid":
        return grid_step(cfg, device, work)
    if name == "deterministic-jobs2":
        import torch

        together = predictions(bench(cfg, work / "det-jobs", device, "--jobs", "2", "--deterministic"))
        # --jobs 2 gives each job half the CPU threads: alone with as many (CPU kernels depend on it)
        threads = {"OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // 2))}
        alone = predictions(bench(cfg, work / "det-alone", device, "--deterministic", env=threads))
        assert together == alone, "predictions under --jobs 2 differ from the same runs alone"
        return f"{len(alone)} runs identical to the same runs alone"
    if name == "compile":
        out = bench(cfg, work / name, device, "--compile", "--set", "methods=[center]")
        return f"{len(predictions(out))} run with torch.compile"
    if name == "torchrun-1":
        sets = [a for s in cfg["sets"] if not s.startswith("seeds") for a in ("--set", s)]
        _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "fgvc", "train",
              "--config", "benchmarks/smoke.yaml", "--data", str(cfg["data"]), "--out", str(work / name),
              "--device", device, "--no-progress", *cfg["weights"], *sets, "--set", "method=center"], None, 600)
        (prov,) = [json.loads(p.read_text()) for p in (work / name / "runs").glob("*/provenance.json")]
        return f"world size {prov['world_size']}"
    if name == "validate-on-cpu":
        (run_dir,) = sorted((work / "compile" / "runs").iterdir())
        fgvc("validate", str(run_dir), "--device", "cpu", "--out", str(work / name), "--no-progress")
        a = (run_dir / "predictions.csv").read_text().splitlines()
        b = (work / name / "predictions.csv").read_text().splitlines()
        same = sum(x.split(",")[2] == y.split(",")[2] for x, y in zip(a[1:], b[1:])) / max(len(a) - 1, 1)
        assert same >= 0.98, f"only {same:.1%} of the predicted classes agree"
        return f"{same:.1%} of test predictions agree with the run's own"
    if name == "speed":
        for model, extra in cfg["speed_models"]:
            fgvc("speed", "--data", str(cfg["data"]), "--model", model, "--device", device, "--grid",
                 "benchmarks/sparrows.yaml" if device != "cpu" else "benchmarks/smoke.yaml", "--out",
                 str(cfg["speed_out"]), *extra, *cfg["speed_extra"], timeout=900)
        return f"CSVs in {cfg['speed_out']}"
    raise ValueError(name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (the tiny configuration CI runs)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {', '.join(STEPS)}")
    args = p.parse_args(argv)
    missing = missing_packages()
    if missing:  # every step would fail on the same import
        print(f"gpu-check: {sys.executable} lacks {', '.join(missing)}; the device machine has no internet to "
              "pip-install them: use a python that has them (PY=...), see docs/gpu.md", file=sys.stderr)
        return 2
    failed = 0
    with tempfile.TemporaryDirectory(prefix="fgvc-gpu-check-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("FGVC_CACHE_DIR", str(work / "cache"))
        cfg = setup(args.device, work)
        for name in args.steps.split(","):
            t0 = time.perf_counter()
            try:
                detail = run_step(name, cfg, args.device, work)
                print(f"PASS {name} ({time.perf_counter() - t0:.0f}s): {detail}", flush=True)
            except Exception as e:  # each step reports and the next one runs
                failed += 1
                print(f"FAIL {name} ({time.perf_counter() - t0:.0f}s): {type(e).__name__}: {e}", flush=True)
    print(f"gpu-check ({args.device}): {len(args.steps.split(',')) - failed} steps passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
