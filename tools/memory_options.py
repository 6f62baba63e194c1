"""Peak resident memory and step time of a CPU training run under glibc allocator settings (issue 26, item 5).

    python tools/memory_options.py --pretrained-file ../shared/weights/tf_efficientnet_lite0.in1k.safetensors

Each candidate below replaces fgvc's mallopt settings (fgvc.engine.device.MALLOC_SETTINGS, applied
by `keep_freed_memory` when a CPU run configures its backends) in a fresh process, which then runs
`fgvc.speed.measure.measure_fgvc` (fgvc's loaders, `train_one_epoch` and `predict` on the real
data: --warmup-batches untimed steps, then per repeat --train-batches timed steps and one pass over
the test set) and reports its peak resident memory (getrusage ru_maxrss: the process's whole life,
decoded images and model included). The candidates are interleaved (A B C, A B C, ... for --rounds)
so that the drift of a busy machine falls on all of them alike. Writes
OUT/<device>-<model>-memory.csv (one row per process, `seconds_per_step` = batch / train img/s) and a
provenance JSON beside it, and prints each candidate's medians.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

from fgvc.engine.device import M_MMAP_MAX as MMAP_MAX, M_MMAP_THRESHOLD as MMAP_THRESHOLD, M_TRIM_THRESHOLD as TRIM

MB = 1 << 20
CANDIDATES: dict[str, dict[int, int] | None] = {  # name: mallopt settings (None: fgvc's MALLOC_SETTINGS now)
    "fgvc": None,
    "glibc-defaults": {},  # every allocation above 32 MB a fresh mmap, unmapped when freed
    "no-mmap-trim-2GB": {MMAP_MAX: 0, TRIM: 2**31 - 1},  # fgvc's settings before issue 26
    "no-mmap-trim-256MB": {MMAP_MAX: 0, TRIM: 256 * MB},
    "mmap-above-256MB": {MMAP_THRESHOLD: 256 * MB, TRIM: 2**31 - 1},
    "mmap-above-128MB": {MMAP_THRESHOLD: 128 * MB, TRIM: 2**31 - 1},
    "mmap-above-64MB": {MMAP_THRESHOLD: 64 * MB, TRIM: 2**31 - 1},
    "mmap-above-128MB-trim-eval": {MMAP_THRESHOLD: 128 * MB, TRIM: 2**31 - 1},
    "fgvc-trim-eval": None,
    "fgvc-eval-batch-64": None,
}
# malloc_trim(0) before and after every evaluation pass
TRIM_AROUND_EVAL = {"mmap-above-128MB-trim-eval", "fgvc-trim-eval"}
# evaluation in batches of 64, as fgvc did on CPU before commit d711ae4 (since then: the training batch)
EVAL_BATCH_64 = {"fgvc-eval-batch-64"}
COLUMNS = ["candidate", "round", "settings", "precision", "peak_rss_gb", "seconds_per_step", "train_img_s",
           "eval_img_s", "train_batches_timed", "repeats"]
NAMES = {TRIM: "M_TRIM_THRESHOLD", MMAP_THRESHOLD: "M_MMAP_THRESHOLD", MMAP_MAX: "M_MMAP_MAX"}


def describe(name: str) -> str:
    from fgvc.engine.device import MALLOC_SETTINGS

    settings = MALLOC_SETTINGS if CANDIDATES[name] is None else CANDIDATES[name]
    text = " ".join(f"{NAMES.get(k, k)}={v}" for k, v in settings.items()) or "glibc defaults"
    return (text + (" malloc_trim(0) around evaluation" if name in TRIM_AROUND_EVAL else "")
            + (" evaluation batch 64" if name in EVAL_BATCH_64 else ""))


def trimmed(fn):
    """`fn` with the free heap returned to the system (glibc malloc_trim) before and after it: an
    evaluation pass then starts from a heap not fragmented by the training steps."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")

    def wrapper(*args, **kwargs):
        libc.malloc_trim(0)
        try:
            return fn(*args, **kwargs)
        finally:
            libc.malloc_trim(0)
    return wrapper


def measure_with(name: str, args, info, device, k: int) -> dict:
    """In the fresh process: `measure_fgvc` under candidate `name`, and the process's peak resident memory."""
    from fgvc.data import loaders
    from fgvc.engine import device as device_mod, loop
    from fgvc.speed.measure import measure_fgvc

    if CANDIDATES[name] is not None:  # read by keep_freed_memory when measure_fgvc configures the backends
        device_mod.MALLOC_SETTINGS = CANDIDATES[name]
    if name in TRIM_AROUND_EVAL:  # measure_fgvc imports predict from fgvc.engine.loop when called
        loop.predict = trimmed(loop.predict)
    if name in EVAL_BATCH_64:  # called by fgvc.data.loaders.build_loaders for every evaluation loader
        loaders.eval_batch_size = lambda train_batch_size, device: max(train_batch_size, 64)
    res = measure_fgvc(args, info, device, k)
    return dict(res, peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9)  # KiB on Linux


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str], int]:
    from fgvc.cli.tools import add_speed_parser

    tool = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tool.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidates to measure")
    tool.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each candidate once per round)")
    own, rest = tool.parse_known_args(argv)
    names = [o for o in own.only.split(",") if o]
    unknown = [o for o in names if o not in CANDIDATES]
    if unknown or own.rounds < 1:
        tool.error(f"unknown candidate(s) {', '.join(unknown)}: choose from {', '.join(CANDIDATES)}"
                   if unknown else "--rounds must be >= 1")
    parser = argparse.ArgumentParser(prog="fgvc")
    add_speed_parser(parser.add_subparsers(dest="command", required=True))
    defaults = ["speed", "--model", "tf_efficientnet_lite0", "--train-batches", "3", "--warmup-batches", "1",
                "--repeats", "1", "--device", "cpu", "--precision", "bf16"]
    return parser.parse_args(defaults + rest), names, own.rounds


def main(argv: list[str]) -> int:
    import pandas as pd
    import torch

    from fgvc.data.dataset import load_dataset_info
    from fgvc.io import atomic_path, atomic_write_json
    from fgvc.names import slug
    from fgvc.speed.measure import device_slug, in_fresh_process, speed_provenance

    args, names, rounds = parse(argv)
    device = torch.device(args.device)
    if device.type != "cpu":
        raise SystemExit("memory_options.py measures CPU runs (glibc's allocator): use --device cpu")
    info = load_dataset_info(args.data)
    prov = speed_provenance(args, info, device)  # at the start: a commit made meanwhile did not measure
    rows = []
    for r in range(rounds):
        for name in names:
            print(f"round {r + 1}/{rounds}: measuring {name} ({describe(name)}) ...", flush=True)
            res = in_fresh_process(measure_with, name, args, info, device, args.train_batches)
            rows.append(dict(candidate=name, round=r + 1, settings=describe(name),
                             precision=res["precision"], peak_rss_gb=round(res["peak_rss_gb"], 2),
                             seconds_per_step=round(args.batch_size / res["train_img_s"], 3),
                             train_img_s=round(res["train_img_s"], 2), eval_img_s=round(res["eval_img_s"], 2),
                             train_batches_timed=args.train_batches, repeats=args.repeats))
            print(f"  peak {rows[-1]['peak_rss_gb']} GB, {rows[-1]['seconds_per_step']} s/step", flush=True)
    table = pd.DataFrame(rows, columns=COLUMNS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{device_slug(device)}-{slug(args.model)}-memory"
    with atomic_path(out / f"{stem}.csv") as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_json(out / f"{stem}.json", dict(prov, rounds=rounds,
                                                 candidates={n: describe(n) for n in names}))
    summary = table.groupby("candidate", sort=False)[["peak_rss_gb", "seconds_per_step"]].median()
    summary["step_vs_first"] = (summary.seconds_per_step / summary.seconds_per_step.iloc[0]).round(3)
    print(summary.to_string())
    print(f"wrote {stem}.csv and {stem}.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
