"""Running a grid of runs, in the order a benchmark does it:

- `benchmark`: a YAML grid -> plan (done / to do), preflight, train, runs.csv (`run_benchmark`);
- `shards`: `--shard I/N` and Slurm job arrays (every N-th run of the expanded grid);
- `halving`: successive halving for sweeps (the grid key `halving`);
- `worker`: one worker of the work queue (claim, train, wait, take over);
- `claims`: the claim files that keep workers on one OUT from training a run twice;
- `pool`: `--jobs N`, N worker processes on one device;
- `signals`: Ctrl-C / SIGTERM and parent death, stopping every worker where it is.
- `pack`: a results folder as at most 8 files of at most 16 MiB and back, verified (a GPU call's limits).

The package itself imports nothing (fgvc.config reads `halving`'s rule, torch-free).
"""
