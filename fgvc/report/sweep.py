"""The "Validation sweep" report section: pick lambda and lr on validation, report test.

Runs trained with `val_fraction` > 0 carry `val_top1` (final epoch, on a stratified part
of the training images). For each method the setting with the best mean validation top-1
over seeds is chosen; only then is its test top-1 shown, beside the default recipe's.
The test set never enters the choice. See benchmarks/sweep-lambda.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from fgvc.grid.halving import TIE_DECIMALS, Halving, Trial, read_val_curve, replay
from fgvc.io import save_figure, tight_layout
from fgvc.losses.registry import unused_keys
from fgvc.report.load import CENTER_KEYS, EXTRA_CONFIG_KEYS, TUNED_KEYS, canon
from fgvc.report.markdown import image, mean_sd, number, plain, table, unique_stems
from fgvc.report.stats import mean_ci, sort_key
from fgvc.report.style import DOUBLE, method_color, styled
from fgvc.runs.read import read_config

# The published recipe the sweep is measured against (lambda applies to center loss only).
DEFAULT_RECIPE = {"lr": 0.001, "center_weight": 0.001}
# A confirmation carries CE and this many other methods (the best by validation), plus any
# other that beats CE on validation (issue 27's zoo rule; a sweep of three methods keeps all).
CONFIRM_TOP = 3
SWEEP_COLUMNS = ["n", "val_mean", "val_std", "test_mean", "test_std", "seeds"]


def setting_keys(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """What a sweep varies: lambda and lr first (the tie-break order), then any other
    auxiliary-loss setting that varies between the auxiliary-loss runs (e.g. center_update),
    then any other tuned key that varies within a method (label_smoothing for CE)."""
    aux = runs[runs.method != "ce"]
    extra = [k for k in keys if k in CENTER_KEYS and k != "center_weight" and k in runs.columns
             and aux[k].nunique() > 1]
    # a config-only key is in `keys` only where it varies within a method, its pruned runs counted,
    # or, tuned, between methods (fgvc.report.load.group_keys): one value left among the ended runs
    # is still the choice
    tuned = [k for k in keys if k in TUNED_KEYS and k != "lr" and k in runs.columns
             and (k in EXTRA_CONFIG_KEYS or (runs.groupby("method")[k].nunique() > 1).any())]
    return ["center_weight", "lr"] + extra + tuned


def family_keys(keys: list[str]) -> list[str]:
    """Runs that may be compared in one sweep: same backbone, data split and everything
    else (the tuned settings excepted: they are what the sweep varies per method)."""
    return [k for k in keys if k != "method" and k not in TUNED_KEYS and k not in CENTER_KEYS] + [
        k for k in ("val_fraction", "val_seed") if k not in keys]


def sweep_runs(ok: pd.DataFrame) -> pd.DataFrame:
    """The ok runs that have a validation score, with numeric `val_top1` and the split's
    `val_fraction` / `val_seed` as canonical strings (from config.yaml)."""
    if "val_top1" not in ok.columns:
        return ok.iloc[:0]
    runs = ok.assign(val_top1=pd.to_numeric(ok.val_top1, errors="coerce"))
    runs = runs[np.isfinite(runs.val_top1.astype(float))].copy()
    cfgs = [read_config(Path(d)) for d in runs.run_dir]
    runs["val_fraction"] = [canon(c.get("val_fraction", "")) for c in cfgs]
    runs["val_seed"] = [canon(c.get("val_seed", 0)) for c in cfgs]
    return runs


def sweep_table(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per (family, method, setting): seeds, validation and test top-1 mean and SD.

    One run per seed (the first by run_id), as everywhere in the report.
    """
    by = family_keys(keys) + ["method"] + setting_keys(runs, keys)
    rows = []
    for key, g in runs.groupby(by, sort=False, dropna=False):
        g = g.sort_values("run_id", kind="stable").drop_duplicates("seed")
        vm, vs, _, _ = mean_ci(g.val_top1)
        tm, ts, _, _ = mean_ci(g.top1)
        rows.append({**dict(zip(by, key)), "n": len(g), "val_mean": vm, "val_std": vs, "test_mean": tm,
                     "test_std": ts, "seeds": ",".join(sorted(g.seed, key=sort_key))})
    table = pd.DataFrame(rows, columns=by + SWEEP_COLUMNS)
    order = sorted(range(len(table)), key=lambda i: tuple(sort_key(table.iloc[i][k]) for k in by))
    return table.iloc[order].reset_index(drop=True)


def choose(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The best setting per (family, method) by mean validation top-1; ties -> smaller
    lambda, then smaller lr (then the other setting keys in order)."""
    setting = setting_keys(table, keys)
    best = []
    for _, g in table.groupby(family_keys(keys) + ["method"], sort=False, dropna=False):
        rank = sorted(g.index, key=lambda i: (-round(float(g.val_mean[i]), TIE_DECIMALS),
                                              *(sort_key(g[k][i]) for k in setting)))
        best.append(rank[0])
    return table.loc[sorted(best)]


def _is_default(row: pd.Series) -> bool:
    if not math.isclose(float(row.lr), DEFAULT_RECIPE["lr"]):
        return False
    return row.method == "ce" or math.isclose(float(row.center_weight), DEFAULT_RECIPE["center_weight"])


def own_keys(method: str, extra: list[str]) -> list[str]:
    """The varied settings of `extra` that `method` reads: CE its tuned keys (label smoothing),
    an auxiliary loss the auxiliary-loss keys it uses (arcface has no center_update)."""
    unused = set(unused_keys(method))
    return [k for k in extra if (k in CENTER_KEYS) == (method != "ce") and k not in unused]


def _lam(row: pd.Series, extra: list[str]) -> str:
    """The lambda cell (with any other varied setting of the row's method); CE has no lambda."""
    text = ", ".join(f"{k}={row[k]}" for k in own_keys(row.method, extra))
    if row.method == "ce":
        return text or "—"
    return str(row.center_weight) + (f" ({text})" if text else "")


LINE_STYLES = ("-", "--", ":", "-.")  # one per auxiliary-loss method; colour is the lr
LINE_MARKERS = "osD^v"


def best_ce(ce: pd.DataFrame, own: list[str]) -> pd.DataFrame:
    """Per lr, the CE row the validation would pick among CE's own settings (e.g. label
    smoothing): the band a method is measured against at that lr."""
    if not own or not len(ce):
        return ce
    rows = [g.sort_values("val_mean", ascending=False, kind="stable").iloc[0] for _, g in ce.groupby("lr", sort=False)]
    return pd.DataFrame(rows)


@styled
def sensitivity_figure(table: pd.DataFrame, keys: list[str], title: str, path: Path,
                       chosen: list[pd.Series] | None = None) -> Path:
    """Validation and test top-1 against lambda (log axis), mean ± SD over seeds, one line
    per (auxiliary-loss method, lr): colour = lr, line style and marker = method; each CE
    baseline as a horizontal band (mean ± SD) in its lr's colour (where CE tunes a knob of its
    own, such as label smoothing, the knob value validation prefers at that lr); the settings
    chosen on validation ringed."""
    extra = [k for k in setting_keys(table, keys) if k not in ("center_weight", "lr")]
    line_keys = ["method", "lr"] + extra
    aux = table[table.method != "ce"]
    ce_own = [k for k in extra if k not in CENTER_KEYS and table[table.method == "ce"][k].nunique() > 1]
    ce = best_ce(table[table.method == "ce"], ce_own)
    lines = sorted({tuple(r[k] for k in line_keys) for _, r in aux.iterrows()},
                   key=lambda t: tuple(sort_key(x) for x in t))
    lr_color = {lr: method_color(i) for i, lr in enumerate(sorted(set(table.lr), key=sort_key))}
    methods = sorted(set(aux.method), key=sort_key)
    fig = Figure(figsize=(DOUBLE, 3.0))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (col, sd, name) in zip(axes, (("val_mean", "val_std", "validation"), ("test_mean", "test_std", "test"))):
        for t in lines:
            c = aux[(aux[line_keys] == pd.Series(t, index=line_keys)).all(axis=1)]
            c = c.assign(lam=c.center_weight.astype(float)).sort_values("lam")
            k = methods.index(t[0])
            mine = aux[aux.method == t[0]]  # name only what varies within this method
            label = ", ".join([t[0], f"lr {t[1]}"] + [f"{key}={v}" for key, v in zip(extra, t[2:])
                                                      if mine[key].nunique() > 1])
            ax.errorbar(c.lam, c[col], yerr=c[sd].fillna(0.0), color=lr_color[t[1]], ls=LINE_STYLES[k % 4],
                        marker=LINE_MARKERS[k % 5], ms=4, capsize=2, label=f"{label} (n={int(c.n.max())})")
        for _, r in sorted(ce.iterrows(), key=lambda ir: sort_key(ir[1].lr)):
            half = float(r[sd]) if math.isfinite(float(r[sd])) else 0.0
            own = "".join(f", {key}={r[key]}" for key in ce_own)
            ax.axhline(r[col], color=lr_color[r.lr], ls="--", lw=1,
                       label=f"CE, lr {r.lr}{own} (n={int(r.n)}), band ± SD")
            ax.axhspan(r[col] - half, r[col] + half, color=lr_color[r.lr], alpha=0.12, lw=0)
        for i, b in enumerate(chosen or []):
            ax.plot([float(b.center_weight)], [b[col]], ls="none", marker="o", ms=10, mfc="none", mec="black",
                    mew=1.5, label="setting chosen on validation" if i == 0 else None)
        ax.set_xscale("log")
        lams = sorted({float(v) for v in aux.center_weight})
        if lams:  # ticks at the values tried, written plainly
            ax.set_xticks(lams, [f"{v:g}" for v in lams])
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("loss weight λ (center_weight, log scale)")
        ax.set_ylabel(f"{name} top-1 (%), mean ± SD")
        ax.set_title(f"{name} (final epoch)")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(title)
    tight_layout(fig)  # texts as written, not mathtext
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
    return save_figure(fig, path)


INTRO = ("Runs with a validation split hold out a stratified part of each class's training images (`val_fraction`, "
         "fixed by `val_seed`: the same images for every run) and score it at the final epoch. For each method the "
         "setting (λ, lr) with the highest **mean validation top-1 over seeds** is chosen; ties go to the smaller λ, "
         "then the smaller lr. The test set plays no part in the choice: its accuracy is shown only afterwards, for "
         "the chosen setting (and, where the sweep ran it, the default recipe: lr 0.001, λ 0.001). These runs "
         "train on (1 - val_fraction) of the training images, so their test accuracies are not comparable to runs "
         "on the full training set.")


@dataclass
class SweepFamily:
    """The runs of one sweep family (see `family_keys`), its rows of `sweep_table` and `choose`."""

    key: tuple  # the family_keys values
    values: dict  # family key -> value
    settings: pd.DataFrame  # every setting of the family (rows of sweep_table)
    best: pd.DataFrame  # the setting chosen per method (rows of choose)
    runs: pd.DataFrame
    name: str  # the backbone, with any other family key that varies between families
    extra: list[str]  # varied center-loss settings besides lambda and lr

    @property
    def split(self) -> str:
        return f"val_fraction {self.values['val_fraction']}, val_seed {self.values['val_seed']}"

    @property
    def by_method(self) -> dict[str, pd.Series]:
        return {b.method: b for _, b in self.best.iterrows()}


def sweep_families(runs: pd.DataFrame, keys: list[str]) -> list[SweepFamily]:
    """The sweep's families in sort order, each with its settings and choices."""
    every, fam = sweep_table(runs, keys), family_keys(keys)
    chosen = choose(every, keys)

    def member(frame: pd.DataFrame, fvals: tuple) -> pd.DataFrame:
        return frame[(frame[fam] == pd.Series(fvals, index=fam)).all(axis=1)]

    out = []
    for fvals in sorted({tuple(r[k] for k in fam) for _, r in every.iterrows()},
                        key=lambda t: tuple(sort_key(x) for x in t)):
        values = dict(zip(fam, fvals))
        others = [f"{k}={values[k]}" for k in fam if k not in ("model", "weights", "val_fraction", "val_seed")
                  and every[k].nunique() > 1]
        name = f"{values.get('model', '')}" + (f" ({', '.join(others)})" if others else "")
        settings = member(every, fvals)
        out.append(SweepFamily(fvals, values, settings, member(chosen, fvals), member(runs, fvals), name,
                           setting_keys(settings, keys)[2:]))
    return out


def sweep_section(ok: pd.DataFrame, keys: list[str], caption: Callable[[pd.DataFrame], str], fig_dir: Path,
                  out_dir: Path, pruned: int = 0, going: int = 0) -> list[str]:
    """Markdown lines of the "Validation sweep" section; none when no run has val_top1.
    `pruned`: how many of the folder's runs successive halving stopped; `going`: how many are
    still under way (a rung not yet decided). With either, the tables hold only the settings that
    ended, and a replay of the rule on them would mean nothing."""
    runs = sweep_runs(ok)
    if not len(runs):
        return []
    fams = sweep_families(runs, keys)
    lines = ["## Validation sweep", "", INTRO, ""]
    names = [f"sweep_lambda_{f.name}" for f in fams]
    stems = unique_stems([n + (f"_{f.split}" if names.count(n) > 1 else "") for n, f in zip(names, fams)],
                         [f.key for f in fams])
    for f, stem in zip(fams, stems):
        cap = caption(f.runs)
        if len(fams) > 1:
            lines += [f"### {f.name}, {f.split}", ""]
        lines += _chosen_table(f, cap)
        lines += _tuned_difference(f)
        lines += _confirm_block(f)
        lines += _settings_table(f, cap)
        lines += _halved(pruned, going) if pruned or going else _halving_replay(f)
        # halving leaves one setting per method at the last epoch: its sensitivity is in the rung figure
        lines += [] if pruned else _sensitivity(f, keys, cap, fig_dir, out_dir, stem)
    return lines


def _replay_setting(row, cols: list[str]) -> str:
    """A setting as the replay names it: `λ 0.01, lr 0.01` (CE: `lr 0.01`, with its own keys)."""
    reads = own_keys(row.method, cols)
    own = [k for k in cols if k == "lr" or k in reads]
    return ", ".join(f"{'λ' if k == 'center_weight' else k} {getattr(row, k) if hasattr(row, k) else row[k]}"
                     for k in own)


def _halved(pruned: int, going: int) -> list[str]:
    """Why no replay of the rule follows: the tables hold only the runs that ended."""
    stopped = (f"the {pruned} run(s) stopped at a rung are listed, with their scores there, under *Pruned by "
               "successive halving*, and every setting at each rung (a method's sensitivity to its knob, as a table "
               "and a figure) under *Successive halving, setting by setting*")
    if not going:
        return [f"This sweep was trained with successive halving: the tables above hold the settings that reached "
                f"the last epoch; {stopped}.", ""]
    return [f"This sweep is still being trained: the tables above hold only the runs that have ended; the {going} "
            f"run(s) not yet ended are under *Runs under way*, with their validation top-1 so far"
            f"{'; ' + stopped if pruned else ''}.", ""]


def _halving_replay(f: SweepFamily) -> list[str]:
    """What successive halving (rungs at a third and two thirds of the epochs, keep half:
    benchmarks/fair-lite0.yaml's rule) would have done to this sweep, trained in full:
    the settings it finishes, whether the choice is among them, and the epochs it saves."""
    cols = [k for k in ("center_weight", "lr", *f.extra) if k in f.runs.columns]
    trials = []
    for r in f.runs.itertuples():
        curve = read_val_curve(Path(r.run_dir))  # the reader halving itself decides on
        if not curve or all(math.isnan(v) for v in curve):
            return []
        trials.append(Trial(r.run_id, r.method, _replay_setting(r, cols), curve, epochs=len(curve)))
    epochs = {t.epochs for t in trials}
    if len(epochs) != 1 or min(epochs) < 6 or len({t.setting for t in trials}) < 4:
        return []
    n = epochs.pop()
    rule = Halving((round(n / 3), round(2 * n / 3)), 0.5)
    d, full, spent = replay(trials, rule)
    finished = {m: sorted({t.setting for t in trials if t.group == m and t.run_id in d.alive})
                for m in sorted({t.group for t in trials})}
    kept = "; ".join(f"{m} ({') and ('.join(s)})" for m, s in finished.items())
    chosen = all(_replay_setting(b, cols) in finished.get(m, []) for m, b in f.by_method.items())
    return [f"Successive halving, replayed on these full runs (rungs at epochs {rule.rungs[0]} and {rule.rungs[1]}, "
            "the better half of each method's settings by mean validation top-1 kept at each): it would have "
            f"trained {spent} of the {full} epochs ({number(100 * (1 - spent / full), 0)}% saved) and finished "
            f"{kept}; the settings chosen above are {'among' if chosen else '**not** all among'} them.", ""]


def _chosen_table(f: SweepFamily, cap: str) -> list[str]:
    """The setting chosen per method, its test top-1 and, where the sweep ran it, the default
    recipe's (a zoo's trunk is fixed at another lr: no default column then)."""
    t, rows = f.settings, []
    default = t.apply(_is_default, axis=1)
    for _, b in f.best.iterrows():
        row = [b.method, _lam(b, f.extra), b.lr, int(b.n), mean_sd(b.val_mean, b.val_std),
               mean_sd(b.test_mean, b.test_std)]
        if default.any():
            d = t[(t.method == b.method) & default]
            row += [mean_sd(d.iloc[0].test_mean, d.iloc[0].test_std), number(b.test_mean - d.iloc[0].test_mean,
                    sign=True)] if len(d) else ["— (not in this sweep)", "—"]
        rows.append(row)
    beside, cols = ((" beside the default recipe's (lr 0.001, λ 0.001)", ["test top-1 (default recipe)",
                     "chosen minus default"]) if default.any() else ("", []))
    return [f"*Table: setting chosen per method by mean validation top-1 ({f.split}), and its final-epoch test "
            f"top-1 (%){beside}; mean ± SD (ddof 1) over seeds.{cap}*",
            "",
            table(["method", "chosen λ", "chosen lr", "n", "validation top-1", "test top-1 (chosen)", *cols], rows),
            ""]


def confirm_methods(best: pd.DataFrame, top: int = CONFIRM_TOP) -> list[str]:
    """The methods a confirmation carries (the zoo's rule, issue 27): CE, the `top` other methods
    with the best mean validation top-1 at their chosen settings, and any other whose mean beats
    CE's; every method when the sweep has no CE. Ties go to the method's name. Validation only."""
    methods = sorted(best.method)
    if "ce" not in methods:
        return methods
    val = {b.method: round(float(b.val_mean), TIE_DECIMALS) for _, b in best.iterrows()}
    others = sorted((m for m in methods if m != "ce"), key=lambda m: (-val[m], m))
    keep = set(others[:top]) | {m for m in others if val[m] > val["ce"]}
    return ["ce", *[m for m in others if m in keep]]


def confirm_cases(f: SweepFamily) -> list[dict[str, str]]:
    """The chosen settings of the methods `confirm_methods` keeps, as the `cases` of a benchmark
    YAML (fgvc.config.load_grid; values as the runs.csv text), in the sweep's method order."""
    keep, cases = confirm_methods(f.best), []
    for _, b in f.best.iterrows():
        if b.method not in keep:
            continue
        keys = {"methods": b.method, "lr": b.lr}
        if b.method != "ce":
            keys |= {"center_weight": b.center_weight}
        cases.append(keys | {k: b[k] for k in own_keys(b.method, f.extra)})
    return cases


def _confirm_block(f: SweepFamily) -> list[str]:
    """The chosen settings as the `cases` of a benchmark YAML, for a confirmation on new seeds and
    the full training set (tools/confirm_grid.py writes the whole YAML)."""
    keep = confirm_methods(f.best)
    left = [f"{b.method} ({number(b.val_mean)})" for _, b in f.best.sort_values("method").iterrows()
            if b.method not in keep]
    cases = ["  - {" + ", ".join(f"{k}: {v}" for k, v in c.items()) + "}" for c in confirm_cases(f)]
    return ["To confirm the choice on seeds that took no part in it, train each method at its chosen setting on "
            "the full training set (`val_fraction: 0`): these `cases` in a benchmark YAML with the sweep's other "
            "keys and new `seeds`." + (
                f" It carries CE, the {CONFIRM_TOP} other methods with the best mean validation top-1 and any other "
                f"that beats CE on validation; left out: {', '.join(left)}." if left else ""),
            "", "```yaml", "cases:", *cases, "```", ""]


def _tuned_difference(f: SweepFamily) -> list[str]:
    """Each auxiliary-loss method minus CE, each at its chosen setting (when both were swept)."""
    by_method = f.by_method
    if "ce" not in by_method:
        return []
    ce = by_method["ce"]
    ce_text = f"lr {ce.lr}" + (f", {_lam(ce, f.extra)}" if _lam(ce, f.extra) != "—" else "")
    lines = []
    for method, ct in sorted(by_method.items()):
        if method == "ce":
            continue
        name = "center loss" if method == "center" else method
        lines += [f"Tuned on validation, {name} (λ {_lam(ct, f.extra)}, lr {ct.lr}) minus CE ({ce_text}) = "
                  f"{number(ct.test_mean - ce.test_mean, sign=True)} test top-1 points (difference of the means "
                  "over seeds).", ""]
    return lines


def _settings_table(f: SweepFamily, cap: str) -> list[str]:
    """Every setting of the family, the chosen ones and the default recipe marked."""
    mark, t = set(f.best.index), f.settings
    rows = [[r.method, _lam(r, f.extra), r.lr, int(r.n), mean_sd(r.val_mean, r.val_std),
             mean_sd(r.test_mean, r.test_std),
             "; ".join(x for x in ("**chosen**" if i in mark else "", "default recipe" if _is_default(r) else "")
                       if x) or ""]
            for i, r in t.iterrows()]
    lines = [f"*Table: every setting of the sweep, validation and test top-1 (%), mean ± SD over seeds.{cap}*",
             "", table(["method", "λ", "lr", "n", "validation top-1", "test top-1", ""], rows), ""]
    if t.n.nunique() > 1:
        lines += [f"Settings have different numbers of seeds ({', '.join(sorted({str(int(n)) for n in t.n}))}); "
                  "a mean over fewer seeds is noisier.", ""]
    return lines


def _sensitivity(f: SweepFamily, keys: list[str], cap: str, fig_dir: Path, out_dir: Path, stem: str) -> list[str]:
    """The family's sensitivity figure, linked, with its caption."""
    title = f"λ sensitivity: {f.name}, {f.split}" + (f"\n{plain(cap).strip()}" if cap else "")
    fig = sensitivity_figure(f.settings, keys, title, fig_dir / f"{stem}.png",
                             chosen=[b for m, b in sorted(f.by_method.items()) if m != "ce"])
    return [image(f"λ sensitivity, {f.name}", fig, out_dir), "",
            f"*Figure: final-epoch validation (left) and test (right) top-1 against the loss weight λ "
            f"(log axis), mean ± SD over seeds, one line per method and lr (colour: lr; line style: method); "
            f"dashed line and band: the CE baseline of that lr (mean ± SD; where CE tunes a knob of its own, the "
            f"value validation prefers at that lr); ring: the setting chosen on validation. {f.split}.{cap}*", ""]


__all__ = ["sweep_section", "sweep_families", "SweepFamily", "sweep_runs", "sweep_table", "choose",
           "sensitivity_figure", "setting_keys", "family_keys", "DEFAULT_RECIPE", "best_ce",
           "confirm_methods", "confirm_cases", "CONFIRM_TOP", "own_keys"]
