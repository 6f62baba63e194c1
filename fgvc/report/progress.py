"""The "Runs under way" report section: where a grid stands while some of its runs have trained
epochs but not ended (paused at a successive-halving rung, or stopped). Such runs have no
row in runs.csv yet, so no other section sees them; a long sweep's report would otherwise say
nothing until its first run ends. Per setting (a run's config without its seed), the mean
validation top-1 over its seeds at the latest epoch all of them have reached: the score the
halving rule ranks on (fgvc.grid.halving). And the "Successive halving, setting by setting"
section: once halving has pruned, every setting of the sweep at each rung, the pruned ones
beside those that ended (the sweep's tables hold only the latter), as a table and a figure.
Torch-free; reads only the run folders.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

import pandas as pd

from fgvc.grid.halving import PRUNED, decision_curve, read_val_curve
from fgvc.report import figures
from fgvc.report.load import CENTER_KEYS, canon
from fgvc.report.markdown import image, mean_sd, number, table
from fgvc.report.stats import sort_key
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


def _settings(folders: list[Path], curve_of: Callable[[Path], list[float]] = read_val_curve) -> pd.DataFrame:
    """One row per run folder with a validation curve: method, setting (as text: the keys that
    vary between the method's settings; where the method has one setting, the keys that tell it
    from the other methods, CE's unused loss keys left out), curve and run (the folder)."""
    rows = []
    for run in folders:
        cfg, curve = read_config(run), curve_of(run)
        if cfg and curve:
            rows.append({**{k: canon(v) for k, v in cfg.items() if k not in UNSHOWN}, "curve": curve, "run": str(run)})
    if not rows:
        return pd.DataFrame(columns=["method", "setting", "curve", "run"])
    frame = pd.DataFrame(rows)
    keys = [c for c in frame.columns if c not in ("method", "curve", "run")]
    across = [k for k in keys if frame[k].nunique() > 1]
    setting = pd.Series("—", index=frame.index)
    for method, runs in frame.groupby("method", sort=True):
        varied = [k for k in keys if runs[k].nunique() > 1] or [
            k for k in across if runs[k].notna().all() and not (method == "ce" and k in CENTER_KEYS)]
        setting[runs.index] = [", ".join(f"{LABELS.get(k, k)} {r[k]}" for k in varied) or "—"
                               for _, r in runs.iterrows()]
    return frame.assign(setting=setting)[["method", "setting", "curve", "run"]]


def progress_table(folders: list[Path]) -> pd.DataFrame:
    """One row per setting: method, setting (`_settings`), seeds, epoch, val_mean, val_std.
    `epoch` is the latest epoch every seed of the setting has reached, and the validation scores
    are taken there."""
    out = []
    for (method, setting), group in _settings(folders).groupby(["method", "setting"], sort=False):
        epoch = min(len(c) for c in group.curve)
        scores = pd.Series([c[epoch - 1] for c in group.curve], dtype=float)
        out.append(dict(method=method, setting=setting, seeds=len(group), epoch=epoch, val_mean=scores.mean(),
                        val_std=scores.std()))
    table_ = pd.DataFrame(out, columns=COLUMNS)
    return table_.sort_values(["method", "epoch", "val_mean"], ascending=[True, False, False],
                              kind="stable").reset_index(drop=True)


def standings_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """Every setting of a halved sweep (runs.csv rows, ended and pruned, with `run_dir`): its mean
    validation top-1 over seeds at each rung and at the last epoch (NaN where its runs stopped
    before), as the rule read them (fgvc.grid.halving.decision_curve), and where it stopped;
    with the epochs. Empty where no run was pruned."""
    pruned = runs[runs.status == PRUNED]
    if not len(pruned):
        return pd.DataFrame(), []
    swept = runs[runs.status.isin(("ok", PRUNED))]
    frame = _settings([Path(d) for d in swept.run_dir], decision_curve)
    trained = pd.to_numeric(swept.epochs, errors="coerce")
    stopped = {str(Path(d)): f"pruned at epoch {e:.0f}" if st == PRUNED else "ended"
               for d, st, e in zip(swept.run_dir, swept.status, trained)}
    frame["stopped"] = frame.run.map(stopped)
    epochs = sorted({int(e) for e in trained[swept.status == PRUNED].dropna()})
    epochs += [e for e in [max((len(c) for c in frame.curve), default=0)] if e and e not in epochs]
    out = []
    for (method, setting), group in frame.groupby(["method", "setting"], sort=False):
        at = {f"epoch {e}": (sum(c[e - 1] for c in group.curve) / len(group)
                             if all(len(c) >= e for c in group.curve) else None) for e in epochs}
        out.append(dict(method=method, setting=setting, seeds=len(group), **at, stopped=group.stopped.iloc[0]))
    natural = lambda text: tuple(sort_key(t) for t in re.split(r"[ ,]+", text))  # noqa: E731  (λ 300 before λ 1000)
    frame = pd.DataFrame(out)
    order = sorted(range(len(frame)), key=lambda i: (frame.method[i], natural(frame.setting[i])))
    return frame.iloc[order].reset_index(drop=True), epochs


def standings_section(runs: pd.DataFrame, fig_dir: Path, out_dir: Path) -> list[str]:
    """Markdown lines of the section, with its figure in `fig_dir`; none for a sweep that halving
    did not prune."""
    table_, epochs = standings_table(runs)
    if not len(table_):
        return []
    fig = figures.standings_figure(table_, epochs, "Successive halving: validation top-1 at each rung",
                                   fig_dir / "halving_standings.png")
    cols = [f"epoch {e}" for e in epochs]
    rows = [[r["method"], r["setting"], r["seeds"], *(number(r[c]) if pd.notna(r[c]) else "—" for c in cols),
             r["stopped"]] for _, r in table_.iterrows()]
    return ["## Successive halving, setting by setting", "",
            "Every setting the sweep tried, pruned ones included, with its mean validation top-1 over seeds at each "
            "rung and at the last epoch (where its runs got there): at a rung every setting of a method has trained "
            "the same epochs, so this is where a method's sensitivity to its own knob shows. The tables of the "
            "sweep hold only the settings that ended; the test set plays no part here.", "",
            table(["method", "setting", "seeds", *(f"validation top-1, {c}" for c in cols), "stopped"], rows), "",
            image("Successive halving, setting by setting", fig, out_dir), "",
            "*Figure: the table above, one panel per method on one shared axis: each setting's mean validation top-1 "
            "over seeds against the method's own knob, one line per rung (darker: later epochs); a pruned setting's "
            "line stops at the rung it was stopped at.*", ""]


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


__all__ = ["under_way", "progress_table", "progress_section", "standings_table", "standings_section"]
