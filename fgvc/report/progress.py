"""The "Runs under way" report section: where a grid stands while some of its runs have trained
epochs but not ended (paused at a successive-halving rung, or stopped). Such runs have no
row in runs.csv yet, so no other section sees them; a long sweep's report would otherwise say
nothing until its first run ends. Per setting (a run's config without its seed), the mean
validation top-1 over its seeds at the latest epoch all of them have reached: the score the
halving rule ranks on (fgvc.grid.halving). Torch-free; reads only the run folders.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from fgvc.grid.halving import read_val_curve
from fgvc.report.load import CENTER_KEYS
from fgvc.report.markdown import mean_sd, table
from fgvc.runs.read import read_config

UNSHOWN = ("seed", "benchmark")  # what a setting is without (fgvc.grid.halving.setting_of)
LABELS = {"center_weight": "λ"}
COLUMNS = ["method", "setting", "seeds", "epoch", "val_mean", "val_std"]


def under_way(out_dir: Path) -> list[Path]:
    """Run folders with a metrics.csv and no row.json: trained epochs, not ended."""
    runs = out_dir / "runs"
    if not runs.is_dir():
        return []
    return [r for r in sorted(runs.iterdir()) if r.is_dir() and not r.name.startswith(".")
            and (r / "metrics.csv").is_file() and not (r / "row.json").exists()]


def progress_table(folders: list[Path]) -> pd.DataFrame:
    """One row per setting: method, setting (the keys that vary between the method's settings,
    as text; where the method has one setting, the keys that tell it from the other methods),
    seeds, epoch, val_mean, val_std. `epoch` is the latest epoch every seed of the setting has
    reached, and the validation scores are taken there."""
    rows = []
    for run in folders:
        cfg, curve = read_config(run), read_val_curve(run)
        if cfg and curve:
            rows.append({**{k: str(v) for k, v in cfg.items() if k not in UNSHOWN}, "curve": curve})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    keys = [c for c in frame.columns if c != "curve"]
    across = [k for k in keys if k != "method" and frame[k].nunique() > 1]
    out = []
    for method, runs in frame.groupby("method", sort=True):
        # what tells the method's settings apart; with one setting (a confirmation), what
        # tells it from the other methods (its own λ, lr), CE's unused loss keys left out
        varied = [k for k in keys if k != "method" and runs[k].nunique() > 1] or [
            k for k in across if runs[k].notna().all() and not (method == "ce" and k in CENTER_KEYS)]
        for _, group in runs.groupby(keys, sort=False, dropna=False):
            epoch = min(len(c) for c in group.curve)
            scores = pd.Series([c[epoch - 1] for c in group.curve], dtype=float)
            first = group.iloc[0]
            out.append(dict(method=method, setting=", ".join(f"{LABELS.get(k, k)} {first[k]}" for k in varied) or "—",
                            seeds=len(group), epoch=epoch, val_mean=scores.mean(), val_std=scores.std()))
    table_ = pd.DataFrame(out, columns=COLUMNS)
    return table_.sort_values(["method", "epoch", "val_mean"], ascending=[True, False, False],
                              kind="stable").reset_index(drop=True)


def progress_section(out_dir: Path) -> list[str]:
    """Markdown lines of the section; none when every run folder has ended."""
    folders = under_way(out_dir)
    if not folders:
        return []
    frame = progress_table(folders)
    lines = ["## Runs under way", "",
             f"{len(folders)} run folder(s) have trained epochs but not ended (paused at a successive-halving rung, "
             "or stopped): they are in no other section until they end. Their validation top-1 so far, per setting: "
             "the mean ± SD over the seeds at the latest epoch all of them have reached (the score halving ranks "
             "on); the test set is evaluated only when a run ends.", ""]
    if not len(frame):
        return lines
    rows = [[r.method, r.setting, r.seeds, r.epoch, mean_sd(r.val_mean, r.val_std) if math.isfinite(r.val_mean)
             else "—"] for r in frame.itertuples()]
    return lines + [table(["method", "setting", "seeds", "epoch", "validation top-1"], rows), ""]


__all__ = ["under_way", "progress_table", "progress_section"]
