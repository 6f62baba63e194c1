"""The report's *Protocol* section: a reviewer's checks on how a comparison was made, one
line each, `ok` or `warning: ...` (or `error: ...`) with the fix. Any warning or error makes
the report's verdict provisional, and the summary says why.

- budget: every method of a sweep tuned over as many settings and seeds (pruned runs count);
- edge: no chosen numeric setting is the smallest or largest value tried (a natural bound,
  such as label smoothing 0, is no edge);
- convergence: the chosen setting's mean validation top-1 no longer rising over the last
  fifth of the epochs by more than its seed SD;
- seeds: every group has at least 3 seeds;
- confirmation: a folder whose grid names the sweep it was selected from (`selected_from`)
  uses new seeds, exactly the sweep's choices, and the same code (or says how it differs);
  the sweep's own budget, edge and convergence checks are shown too.

Torch-free; reads only the results folders (and git, for what differs between two commits).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fgvc.config import SELECTED_FROM
from fgvc.grid.halving import setting_of
from fgvc.report.load import canon, group_keys, load_runs
from fgvc.report.markdown import number
from fgvc.report.progress import LABELS
from fgvc.report.stats import sort_key
from fgvc.report.sweep import SweepFamily, own_keys, sweep_families, sweep_runs
from fgvc.runs.read import read_config, read_metrics
from fgvc.runs.table import GRID_FILE

MIN_SEEDS = 3
# metrics.csv keeps 6 significant digits, so two equal quantities (a rise of 2 validation images
# and a seed SD of 2 images) can read 0.00003 apart: compared at this many decimals.
RISE_DECIMALS = 3
# Values that bound a setting by its nature: choosing them is no sign the grid was too narrow.
NATURAL_BOUNDS = {"label_smoothing": {"0"}}
_CHECKOUT = Path(__file__).resolve().parents[2]  # the repository this code runs from


@dataclass(frozen=True)
class ProtocolCheck:
    """One protocol check: its name, "ok" / "warning" / "error", the line it prints, and the
    method it is about ("" for the whole comparison), so a leaderboard row answers for its own."""

    name: str
    level: str
    text: str
    method: str = ""

    def line(self) -> str:
        return f"- **{self.name}**: {self.level}: {self.text}"


# --------------------------------------------------------------------------- sweep checks
def tuning_budget(runs: pd.DataFrame) -> dict[str, tuple[int, int, int, int]]:
    """Per method: (distinct settings, seeds, runs, pruned runs) over every run with a
    validation split (pruned and failed runs count: they were part of the budget)."""
    swept = runs[[float(read_config(Path(d)).get("val_fraction") or 0) > 0 for d in runs.run_dir]]
    budget = {}
    for method, g in swept.groupby("method"):
        settings = {setting_of(read_config(Path(d))) for d in g.run_dir}  # as halving ranks them
        budget[method] = (len(settings), g.seed.nunique(), len(g), int((g.status == "pruned").sum()))
    return budget


def budget_text(method: str, budget: tuple[int, int, int, int]) -> str:
    s, n, r, p = budget
    return f"{method} {s} settings x {n} seeds = {r} runs" + (f" ({p} pruned)" if p else "")


def budget_check(runs: pd.DataFrame) -> ProtocolCheck | None:
    """Every method of a sweep tuned over as many settings and seeds (`tuning_budget`)."""
    budget = tuning_budget(runs)
    if len(budget) < 2:
        return None
    text = "; ".join(budget_text(m, b) for m, b in sorted(budget.items()))
    if len({(s, n) for s, n, _, _ in budget.values()}) == 1:
        return ProtocolCheck("tuning budget", "ok", f"every method had the same budget: {text}.")
    return ProtocolCheck("tuning budget", "warning", f"methods had different tuning budgets ({text}); give every method "
                 "the same number of settings and seeds (e.g. CE's label smoothing beside center loss's λ).")


def _tried(fam: SweepFamily, method: str, key: str, runs: pd.DataFrame) -> list[str]:
    frame = runs[runs.method == method]
    return sorted({canon(v) for v in frame[key]}, key=sort_key) if key in frame.columns else []


def edge_checks(fam: SweepFamily, all_runs: pd.DataFrame) -> list[ProtocolCheck]:
    """A chosen numeric setting that is the smallest or largest value tried for its method."""
    out = []
    keys = ["lr"] + [k for k in ("center_weight", *fam.extra) if k != "lr"]
    for method, best in sorted(fam.by_method.items()):
        own = ["lr"] + own_keys(method, keys[1:])
        tried_by = {k: _tried(fam, method, k, all_runs) for k in own}  # pruned runs count: halving may leave one
        if all(len(t) < 2 for t in tried_by.values()):
            continue  # one setting: nothing was chosen
        edges, bounds = [], []
        for key, tried in tried_by.items():
            value, name = canon(best[key]), LABELS.get(key, key)  # λ, not center_weight: every loss has one
            if len(tried) < 2 or value not in tried or not _numeric(tried):
                continue
            if value == tried[-1]:
                edges.append(f"{name} {value} is the largest value tried ({', '.join(tried)}): extend the grid past "
                             f"{value}")
            elif value == tried[0] and value in NATURAL_BOUNDS.get(key, set()):
                bounds.append(f"{name} {value}, the smallest tried, is the smallest it can be")
            elif value == tried[0]:
                edges.append(f"{name} {value} is the smallest value tried ({', '.join(tried)}): extend the grid "
                             f"below {value}")
        if edges:
            out.append(ProtocolCheck(f"grid edge, {method}", "warning", "; ".join(edges) + ".", method))
        else:
            bound = f" ({'; '.join(bounds)})" if bounds else ""
            text = f"its chosen setting lies inside the values tried{bound}."
            out.append(ProtocolCheck(f"grid edge, {method}", "ok", text, method))
    return out


def _numeric(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def convergence_checks(fam: SweepFamily) -> list[ProtocolCheck]:
    """The chosen setting's mean validation top-1 over the last fifth of the epochs."""
    out = []
    for method, best in sorted(fam.by_method.items()):
        runs = fam.runs[(fam.runs.method == method)
                        & (fam.runs[list(_setting_cols(fam))] == best[list(_setting_cols(fam))]).all(axis=1)]
        curves = [m.val_top1.to_numpy(float) for m in (read_metrics(Path(d)) for d in runs.run_dir)
                  if m is not None and "val_top1" in m.columns and m.val_top1.notna().all()]
        if len(curves) < 2 or len({len(c) for c in curves}) != 1 or len(curves[0]) < 5:
            continue
        mean = np.mean(curves, axis=0)
        last = max(1, round(len(mean) / 5))
        rise = float(mean[-1] - mean[-1 - last])
        sd = float(np.std([c[-1] for c in curves], ddof=1))
        what = (f"mean validation top-1 {'rose' if rise > 0 else 'changed'} {number(rise, sign=True)} points over "
                f"the last {last} of {len(mean)} epochs (seed SD {number(sd)})")
        if round(rise, RISE_DECIMALS) > round(sd, RISE_DECIMALS):
            out.append(ProtocolCheck(f"convergence, {method}", "warning", f"its chosen setting was still improving: {what}; "
                             "train longer (more epochs for every method) before confirming.", method))
        else:
            out.append(ProtocolCheck(f"convergence, {method}", "ok", f"{what}.", method))
    return out


def _setting_cols(fam: SweepFamily) -> list[str]:
    return [k for k in ("center_weight", "lr", *fam.extra) if k in fam.runs.columns]


def seeds_check(groups) -> ProtocolCheck | None:
    few = [f"{g.label} ({len(g.runs)})" for g in groups if len(g.runs) < MIN_SEEDS]
    if not groups:
        return None
    if few:
        return ProtocolCheck("seeds", "warning", f"groups with fewer than {MIN_SEEDS} seeds: {', '.join(few)}; an interval "
                     f"over so few seeds is unreliable: run at least {MIN_SEEDS}.")
    return ProtocolCheck("seeds", "ok", f"every group has at least {MIN_SEEDS} seeds.")


def sweep_checks(runs: pd.DataFrame, prefix: str = "") -> list[ProtocolCheck]:
    """Budget, edge and convergence checks of the sweep in `runs` (all statuses)."""
    ok = runs[runs.status == "ok"]
    swept = sweep_runs(ok)
    if not len(swept):
        return []
    keys = group_keys(runs)
    checks = [c for c in [budget_check(runs)] if c is not None]
    for fam in sweep_families(swept, keys):
        checks += edge_checks(fam, runs[runs.run_id.isin(swept.run_id) | (runs.status != "ok")])
        checks += convergence_checks(fam)
    return [replace(c, name=prefix + c.name) for c in checks]


# --------------------------------------------------------------------------- confirmation
def selected_from(out_dir: Path, benchmarks: list[str]) -> Path | None:
    """The sweep a confirmation folder names: `selected_from` in OUT/grid.yaml, else in this
    checkout's benchmarks/<benchmark>.yaml; a path relative to the folder that holds OUT."""
    for path in [out_dir / GRID_FILE] + [_CHECKOUT / "benchmarks" / f"{b}.yaml" for b in benchmarks]:
        try:
            grid = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(grid, dict) and grid.get(SELECTED_FROM):
            return sweep_dir_of(out_dir, str(grid[SELECTED_FROM]))
    return None


def sweep_dir_of(out_dir: Path, selected: str) -> Path:
    """The results folder a `selected_from` value names: a path relative to the folder that
    holds OUT (the sweep's results beside the confirmation's), or an absolute one."""
    name = Path(selected)
    return name if name.is_absolute() else out_dir.parent / name


def confirmation_checks(out_dir: Path, runs: pd.DataFrame) -> list[ProtocolCheck]:
    """Seeds, settings and code of a confirmation against the sweep it names, then the sweep's
    own checks for the methods the confirmation carries (its choice is only as fair as its
    budget; a method the confirmation left out compares with nothing here)."""
    sweep_dir = selected_from(out_dir, sorted(set(runs.benchmark) - {""}))
    if sweep_dir is None:
        return []
    if not (sweep_dir / "runs.csv").is_file() and not (sweep_dir / "runs").is_dir():
        return [ProtocolCheck("confirmation", "error", f"the sweep it names ({SELECTED_FROM}: {sweep_dir.name}) is not "
                      "beside this folder: put that results folder there to check the choice.")]
    sweep = load_runs(sweep_dir)
    ok = runs[runs.status == "ok"]
    checks = [_seed_overlap(ok, sweep), _settings_match(ok, sweep), _same_code(ok, sweep[sweep.status == "ok"])]
    return checks + sweep_checks(sweep[sweep.method.isin(set(ok.method))], prefix="sweep: ")


def planned_checks(configs: list, sweep_dir: Path) -> list[ProtocolCheck]:
    """A confirmation grid's runs (RunConfigs, not yet trained) against the sweep it names:
    new seeds and the sweep's chosen settings, as `confirmation_checks` will say of the trained
    folder; an error too while the sweep has runs under way (its choice is not final). fgvc
    benchmark refuses to start a grid with an error here: hours of training on a setting the
    sweep did not choose are caught before they are spent."""
    from fgvc.report.progress import under_way

    if not (sweep_dir / "runs.csv").is_file():
        return [ProtocolCheck("confirmation", "warning", f"the sweep it names ({sweep_dir}) is not there: its choice "
                              "cannot be checked before training.")]
    pending = under_way(sweep_dir)
    if pending:
        return [ProtocolCheck("confirmation", "error", f"the sweep it names ({sweep_dir}) has {len(pending)} run(s) "
                              "under way: its choice is not final; let it end first.")]
    planned = pd.DataFrame([{k: canon(v) for k, v in c.identity().items()} | {"seed": canon(c.seed), "status": "ok"}
                            for c in configs])
    sweep = load_runs(sweep_dir)
    return [_seed_overlap(planned, sweep), _settings_match(planned, sweep)]


def _seed_overlap(ok: pd.DataFrame, sweep: pd.DataFrame) -> ProtocolCheck:
    shared = sorted(set(ok.seed) & set(sweep.seed), key=sort_key)
    if shared:
        return ProtocolCheck("new seeds", "error", f"seeds {', '.join(shared)} were used by the sweep that chose these "
                     "settings: confirm on seeds that took no part in the choice.")
    return ProtocolCheck("new seeds", "ok", f"seeds {', '.join(sorted(set(ok.seed), key=sort_key))} took no part in the "
                 f"sweep's choice (seeds {', '.join(sorted(set(sweep.seed), key=sort_key))}).")


def _settings_match(ok: pd.DataFrame, sweep: pd.DataFrame) -> ProtocolCheck:
    swept = sweep_runs(sweep[sweep.status == "ok"])
    fams = sweep_families(swept, group_keys(sweep)) if len(swept) else []
    if len(fams) != 1:
        return ProtocolCheck("settings", "warning", f"the sweep has {len(fams)} families of settings: its choice is not one "
                     "setting per method; check the confirmation's settings by hand.")
    fam, wrong = fams[0], []
    for method, g in ok.groupby("method"):
        best = fam.by_method.get(method)
        if best is None:
            wrong.append(f"{method} was not in the sweep")
            continue
        for key in ["lr"] + own_keys(method, [k for k in _setting_cols(fam) if k != "lr"]):
            have = sorted({canon(v) for v in g[key]}) if key in g.columns else []
            if have != [canon(best[key])]:
                wrong.append(f"{method} {key} {', '.join(have) or '—'} (the sweep chose {canon(best[key])})")
    if wrong:
        return ProtocolCheck("settings", "error", f"not the sweep's choice: {'; '.join(wrong)}; train each method at the "
                     "setting its sweep chose.")
    return ProtocolCheck("settings", "ok", "each method runs at the setting its sweep chose on validation.")


def _same_code(ok: pd.DataFrame, sweep_ok: pd.DataFrame) -> ProtocolCheck:
    mine, theirs = sorted(set(ok.git_commit) - {""}), sorted(set(sweep_ok.git_commit) - {""})
    if mine == theirs and len(mine) == 1:
        return ProtocolCheck("same code", "ok", f"sweep and confirmation trained from one commit, {mine[0][:7]}.")
    diff = _fgvc_diff(theirs, mine)
    short = lambda cs: ", ".join(c[:7] for c in cs) or "unknown"  # noqa: E731
    return ProtocolCheck("same code", "warning", f"the sweep trained from {short(theirs)}, the confirmation from "
                 f"{short(mine)}; {diff}. Say why the difference cannot matter, or rerun one from the other's commit "
                 "(tools/pinned_grid.sh) and compare the two (`fgvc compare`).")


def _fgvc_diff(a: list[str], b: list[str]) -> str:
    """How the training code (files under fgvc/) differs between the commits, where this
    repository has them."""
    if len(a) != 1 or len(b) != 1:
        return "several commits on one side"
    try:
        out = subprocess.run(["git", "diff", "--name-only", a[0], b[0], "--", "fgvc/"], cwd=_CHECKOUT,
                             capture_output=True, text=True, timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "this repository does not hold both commits, so whether fgvc/ differs is unknown"
    if not out:
        return "no file under fgvc/ differs between them"
    return f"{len(out)} file(s) under fgvc/ differ between them"


# --------------------------------------------------------------------------- section
def protocol_checks(out_dir: Path, runs: pd.DataFrame, groups) -> list[ProtocolCheck]:
    checks = sweep_checks(runs) + confirmation_checks(out_dir, runs)
    seeds = seeds_check(groups)
    return checks + ([seeds] if seeds is not None else [])


def provisional(checks: list[ProtocolCheck]) -> str:
    """Why the verdict is provisional ("" when every check is ok)."""
    bad = [c.name for c in checks if c.level != "ok"]
    return f"provisional: the protocol checks flag {'; '.join(bad)} (see *Protocol*)" if bad else ""


def protocol_section(checks: list[ProtocolCheck]) -> list[str]:
    if not checks:
        return []
    return ["## Protocol", "", "A reviewer's checks on how the comparison was made (docs/protocol.md): equal tuning "
            "budgets, no choice at the edge of the grid, training converged, enough seeds, and a confirmation on new "
            "seeds at exactly the sweep's choice with the same code. A warning or error makes the verdict "
            "provisional.", ""] + [c.line() for c in checks] + [""]


__all__ = ["ProtocolCheck", "MIN_SEEDS", "NATURAL_BOUNDS", "tuning_budget", "budget_text", "budget_check",
           "edge_checks", "convergence_checks", "seeds_check", "sweep_checks", "selected_from", "sweep_dir_of",
           "confirmation_checks", "planned_checks", "protocol_checks", "provisional", "protocol_section"]
