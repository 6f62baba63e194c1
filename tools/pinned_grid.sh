#!/usr/bin/env bash
# Train (or continue) a benchmark grid with the code of one pinned commit, so every run of a
# results folder has the same code however many sessions or machines it takes:
#
#   tools/pinned_grid.sh COMMIT GRID OUT [fgvc benchmark options...]
#   tools/pinned_grid.sh 10ea888 benchmarks/sweep-lambda.yaml results/sweep-lambda-lite0-cpu \
#       --data "$PWD/data/cub_sparrows" --pretrained-file ../shared/weights/tf_efficientnet_lite0.in1k.safetensors
#
# The commit is checked out (clean) in the git worktree $PINNED_DIR/fgvc-pinned-COMMIT
# (default: beside this checkout), created on first use. GRID is read and OUT written inside
# that worktree unless absolute; fgvc runs from there (PYTHONPATH), with --no-progress, under
# this checkout's Python ($PY, default .venv/bin/python).
# Finished runs are skipped, an unfinished one resumes from its last epoch. On Linux glibc
# keeps freed memory (MALLOC_MMAP_MAX_, MALLOC_TRIM_THRESHOLD_): 22-27% faster CPU training
# (docs/speed.md); this changes the allocator, not the code or its results.
# To commit the finished runs: python tools/collect_runs.py <worktree>/OUT OUT (no checkpoints).
# On a new machine, SEED_FROM=DIR (the committed copy, e.g. results/fair-lite0-cpu) first fills
# an OUT that has no runs/ yet with DIR's run folders: ended runs are skipped, and halving keeps
# the scores of runs paused at a rung (they retrain from epoch 1: checkpoints are never committed);
# pass --halving-order method where sessions are short, so at most one method's epochs are lost.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
commit=$1 grid=$2 out=$3
shift 3
repo=$(git rev-parse --show-toplevel)
py=${PY:-$repo/.venv/bin/python}
full=$(git -C "$repo" rev-parse --verify --quiet "$commit^{commit}") || {
  echo "pinned_grid: unknown commit $commit (git fetch, or check the hash)" >&2; exit 2; }
wt=${PINNED_DIR:-$(dirname "$repo")}/fgvc-pinned-${full:0:7}
if [ ! -d "$wt" ]; then
  git -C "$repo" worktree add --detach "$wt" "$full" >&2
fi
if [ "$(git -C "$wt" rev-parse HEAD)" != "$full" ] || [ -n "$(git -C "$wt" status --porcelain --untracked-files=no)" ]; then
  echo "pinned_grid: $wt is not a clean checkout of $full: remove it (git worktree remove --force $wt) and rerun" >&2
  exit 2
fi
cd "$wt"
if [ -n "${SEED_FROM:-}" ] && [ ! -d "$out/runs" ]; then
  [ -d "$repo/$SEED_FROM/runs" ] || [ -d "$SEED_FROM/runs" ] || {
    echo "pinned_grid: SEED_FROM=$SEED_FROM has no runs/ folder (give the committed results folder)" >&2; exit 2; }
  src=$SEED_FROM; [ -d "$repo/$SEED_FROM/runs" ] && src=$repo/$SEED_FROM
  mkdir -p "$out" && cp -r "$src/runs" "$out/runs.seeding" && mv "$out/runs.seeding" "$out/runs"
  echo "pinned_grid: $out seeded with the run folders of $src" >&2
fi
export PYTHONPATH=$wt MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647
echo "pinned_grid: fgvc at ${full:0:7} in $wt: benchmark $grid -> $out" >&2
exec "$py" -m fgvc benchmark "$grid" --out "$out" --no-progress "$@"
