#!/bin/bash
# benchmarks/sparrows.yaml (10 runs: 2 methods x 5 seeds) as a Slurm job array, one shard
# of the grid per array task, all writing into the same results/sparrows/.
#
# Submit from the repository root, after `make setup` and `make data` (CUB=... offline):
#
#   JOBID=$(sbatch --parsable docs/slurm-array.sh)
#   # then the report, once every task has finished successfully:
#   sbatch --dependency=afterok:$JOBID --wrap \
#       ".venv/bin/fgvc visualize results/sparrows && .venv/bin/fgvc report results/sparrows"
#
# afterok waits for all tasks of the array and starts only if every one exited 0; a task
# exits 1 when one of its runs failed (see the error column of runs.csv). Use afterany
# to report whatever finished. `fgvc report` rebuilds runs.csv from every run folder's
# row.json first, so it holds the rows of all tasks even if two finished at the same time.
#
# No --shard below: fgvc reads SLURM_ARRAY_TASK_ID/_MIN/_STEP/_COUNT and runs shard
# (ID - MIN) / STEP of COUNT, i.e. runs I, I+COUNT, I+2*COUNT, ... of the expanded grid.
# Any evenly spaced array works: --array=0-9 (one run each), --array=1-5 (two each),
# --array=0-9%4 (at most 4 at a time). Rerunning the array skips finished runs and
# resumes interrupted ones. Check a task's share first with
#   SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_COUNT=10 \
#       .venv/bin/fgvc benchmark benchmarks/sparrows.yaml --out results/sparrows --dry-run
#
# Compute nodes without internet: pass local weights, e.g. WEIGHTS=/path/resnet50.safetensors sbatch ...
#
#SBATCH --job-name=fgvc-sparrows
#SBATCH --array=0-9
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=02:00:00

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
FGVC=${FGVC:-.venv/bin/fgvc}

"$FGVC" benchmark benchmarks/sparrows.yaml --data data/cub_sparrows --out results/sparrows --no-progress \
    ${WEIGHTS:+--pretrained-file "$WEIGHTS"}
