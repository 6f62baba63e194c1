"""`--shard I/N` and Slurm job arrays: every N-th run of the expanded grid, so N jobs that
expand the same grid in the same order split it between them, whatever is already done."""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

from fgvc.config import RunConfig
from fgvc.errors import FGVCError


class Shard(NamedTuple):
    """Run `index`, `index + count`, `index + 2*count`, ... of the expanded grid (0-based)."""

    index: int
    count: int
    origin: str = "--shard"  # where it came from, for messages

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`--shard I/N` -> Shard(I, N); I is 0-based, so N jobs use I = 0 .. N-1."""
    i, sep, n = str(text).strip().partition("/")
    try:
        shard = Shard(int(i), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None or shard.count < 1 or not 0 <= shard.index < shard.count:
        raise FGVCError(f"invalid --shard {text!r}: expected I/N with 0 <= I < N (I is 0-based), "
                        "e.g. --shard 0/4 ... --shard 3/4 for four jobs")
    return shard


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or not str(raw).strip():
        if default is not None:
            return default
        raise FGVCError(f"{name} is not set although SLURM_ARRAY_TASK_ID is: run inside a Slurm job array "
                        "(sbatch --array=...) or pass --shard I/N")
    try:
        return int(raw)
    except ValueError:
        raise FGVCError(f"invalid {name}={raw!r}: expected an integer; pass --shard I/N instead") from None


def shard_from_env(env: Mapping[str, str]) -> Shard | None:
    """The shard of a Slurm job array task, or None outside an array.

    Task ids need not start at 0 and may be stepped (`--array=1-9:2`): the shard is the
    task's position in the array, (ID - MIN) / STEP, out of SLURM_ARRAY_TASK_COUNT.
    Arrays that are not one evenly spaced range (`--array=1,4,5`) cannot be mapped.
    """
    if env.get("SLURM_ARRAY_TASK_ID") is None:
        return None
    task = _env_int(env, "SLURM_ARRAY_TASK_ID")
    low = _env_int(env, "SLURM_ARRAY_TASK_MIN")
    step = _env_int(env, "SLURM_ARRAY_TASK_STEP", 1)
    count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
    high = _env_int(env, "SLURM_ARRAY_TASK_MAX", low + (count - 1) * step)
    origin = f"Slurm array task {task} of {low}-{high}" + (f":{step}" if step != 1 else "")
    fix = "use one evenly spaced range (sbatch --array=MIN-MAX[:STEP]) or pass --shard I/N"
    if step < 1 or count < 1:
        raise FGVCError(f"invalid Slurm array: SLURM_ARRAY_TASK_STEP={step}, SLURM_ARRAY_TASK_COUNT={count}; {fix}")
    if high != low + (count - 1) * step:
        raise FGVCError(f"Slurm array {low}-{high} with step {step} does not hold {count} tasks "
                        f"(SLURM_ARRAY_TASK_COUNT={count}): not one evenly spaced range; {fix}")
    offset = task - low
    if offset < 0 or offset % step or offset // step >= count:
        raise FGVCError(f"SLURM_ARRAY_TASK_ID={task} is not in the array {low}-{high}:{step}; {fix}")
    return Shard(offset // step, count, origin)


def select_shard(configs: Sequence[RunConfig], shard: Shard | tuple[int, int] | None) -> list[RunConfig]:
    """`configs[i::n]`: every job expands the same grid in the same order, so the
    shards are disjoint and together cover the grid (whatever is already done)."""
    if shard is None:
        return list(configs)
    i, n = shard[0], shard[1]
    if n < 1 or not 0 <= i < n:
        raise FGVCError(f"invalid shard {i}/{n}: expected I/N with 0 <= I < N (I is 0-based)")
    return list(configs[i::n])


__all__ = ["Shard", "parse_shard", "shard_from_env", "select_shard"]
