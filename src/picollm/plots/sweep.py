"""figures/sweep.png: final validation bits per byte against each swept hyperparameter, and against training
compute (or parameter count) for every run.

One panel per swept key (d_model, train.lr, ...) holding the sweep points and their base run, one line per
base model; then a panel with every run against training FLOPs as picollm.flops counts them (every matmul,
forward + backward, the head at its real width, attention over the full block_size window rather than the
causal half) times the tokens seen (x="params": parameter count), one colour per model type and a line
through the best run of each type at each x. Points are means over seeds with error bars of the 95%
Student-t interval over seeds (none for a single seed). The base run sits on its line when its value of the
key is known (the sweep points' `base_value`, or the base evaluation's `config`); otherwise it is a dotted
horizontal line with its interval shaded.
"""
from __future__ import annotations

import math
import numbers

import matplotlib.ticker
import numpy as np
import pandas as pd

from picollm.plots import SLIDE, model_styles, plt, save
from picollm.stats import few_seeds_note, t_interval
from picollm.tables import read_evals, train_flops

# picollm.flops counts them (every matmul, forward + backward, attention over the full window); the caption says so
X_LABELS = {"train_flops": "training compute (FLOPs)", "params": "parameters"}


def read_runs(evals: dict) -> pd.DataFrame:
    """One row per run of evals = {run: {seed: eval json}}: type, base model, swept key and value (None for
    a run that is not a sweep point), params, train_flops, and bits per byte over seeds (t_interval's keys)."""
    rows = []
    for run, by_seed in read_evals(evals).items():
        first = next(iter(by_seed.values()))
        sweep = first.get("sweep") or {}
        rows.append({"run": run, "type": first["type"], "base": sweep.get("model", run), "key": sweep.get("key"),
                     "value": sweep.get("value"), "base_value": sweep.get("base_value"), "params": first["params"],
                     "train_flops": train_flops(first), "config": first.get("config"),
                     **t_interval(ev["bpb"] for ev in by_seed.values())})
    return pd.DataFrame(rows)


def lookup(config, key: str):
    """config["train"]["lr"] for key "train.lr"; None when the config or the key is missing."""
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


def base_value(runs: pd.DataFrame, base: str, key: str):
    """The base run's value of `key`: carried by its sweep points, or read from its evaluation's config."""
    points = runs[(runs["base"] == base) & (runs["key"] == key)]
    known = points["base_value"].dropna()
    if len(known):
        return known.iloc[0]
    own = runs[runs["run"] == base]
    return lookup(own["config"].iloc[0], key) if len(own) else None


def yerr(rows: pd.DataFrame) -> np.ndarray:
    """Error bar lengths below and above the mean from the t interval; 0 where it is NaN (one seed)."""
    return np.nan_to_num(np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]]))


def value_axis(ax, values: list) -> dict:
    """{value: x}: numbers as themselves (log x when they span more than 10x), anything else (a name such as
    `rope`) evenly spaced in sorted order."""
    if all(isinstance(v, numbers.Number) for v in values):
        positive = [v for v in values if v > 0]
        if len(positive) == len(values) and max(values) / min(values) > 10:
            ax.set_xscale("log")
        ax.set_xticks(sorted(set(values)), [f"{v:g}" for v in sorted(set(values))])
        ax.minorticks_off()
        return {v: v for v in values}
    labels = sorted(set(map(str, values)))
    ax.set_xticks(range(len(labels)), labels)
    return {v: labels.index(str(v)) for v in values}


def key_panel(ax, runs: pd.DataFrame, key: str, styles: dict) -> None:
    """bpb against the value of `key`: one line per base model over its sweep points, the base run on it."""
    points = runs[runs["key"] == key]
    bases = list(dict.fromkeys(points["base"]))
    values = list(points["value"])
    known = {b: base_value(runs, b, key) for b in bases}
    values += [v for v in known.values() if v is not None]  # lookup() gives None for a missing key
    where = value_axis(ax, values)
    for base in bases:
        line = points[points["base"] == base]
        own = runs[runs["run"] == base]
        kind = (own if len(own) else line)["type"].iloc[0]
        style = styles[kind]
        if len(own) and known[base] is not None:
            line = pd.concat([line, own.assign(value=[known[base]])])
        elif len(own):  # the base run's value of the key is unknown: a reference line across the panel
            r = own.iloc[0]
            ax.axhline(r["mean"], color=style["color"], ls=":", lw=2, label=f"{base} (base run)")
            if r["n"] > 1:
                ax.axhspan(r["ci_low"], r["ci_high"], color=style["color"], alpha=0.1, lw=0)
        line = line.assign(x=line["value"].map(where)).sort_values("x")
        ax.errorbar(line["x"], line["mean"], yerr=yerr(line), color=style["color"], marker=style["marker"],
                    ms=9, lw=2.5, capsize=4, label=f"{base} sweep")
        is_base = line["run"] == base
        if is_base.any():
            ax.plot(line.loc[is_base, "x"], line.loc[is_base, "mean"], ls="none", marker=style["marker"], ms=14,
                    mfc="none", mec="black", mew=1.5, label=f"{base} (base run)")
    ax.set(xlabel=key, title=f"sweep of {key}")
    ax.legend(fontsize="x-small")


def frontier(rows: pd.DataFrame, x: str) -> pd.DataFrame:
    """The lowest mean bpb at each x, in order of x: the best a type reached for that compute or size."""
    return rows.loc[rows.groupby(x)["mean"].idxmin()].sort_values(x)


def point_label(r) -> str:
    """A base run by its name, a sweep point by what it changes (d_model=64): the colour gives the type."""
    if pd.isna(r.key):
        return r.run
    return f"{r.key}={r.value:g}" if isinstance(r.value, numbers.Number) else f"{r.key}={r.value}"


def beside_base(runs: pd.DataFrame, x: str) -> pd.Series:
    """Sweep points at their base run's x (a learning rate changes neither compute nor size): drawn hollow
    and unlabelled, as their labels would pile up on one another; their own panel tells them apart."""
    base_x = runs.set_index("run")[x]
    return runs["key"].notna() & np.isclose(runs["base"].map(base_x).astype(float), runs[x].astype(float))


def one_budget(runs: pd.DataFrame) -> bool:
    """Whether every run trained on about the same compute (train.flops): then a compute axis is one point wide,
    its ticks crowd, and a line through the runs traces step rounding, not a trend."""
    return bool(runs["train_flops"].max() < 2 * runs["train_flops"].min())


def compute_panel(ax, runs: pd.DataFrame, x: str, styles: dict, why: str = "") -> None:
    """bpb of every run against training FLOPs or parameters (log x), coloured by type; `why`: a note on the
    choice of x, for the title."""
    hollow = beside_base(runs, x)
    for kind, rows in runs.groupby("type", sort=False):
        style = dict(color=styles[kind]["color"], marker=styles[kind]["marker"], ms=9, ls="none", capsize=4)
        shown, quiet = rows[~hollow[rows.index]], rows[hollow[rows.index]]
        ax.errorbar(shown[x], shown["mean"], yerr=yerr(shown), **style, label=kind)
        if len(quiet):
            ax.errorbar(quiet[x], quiet["mean"], yerr=yerr(quiet), **style, mfc="white", alpha=0.8)
        best = frontier(rows, x)
        ax.plot(best[x], best["mean"], color=style["color"], lw=2, alpha=0.7)
        for r in shown.itertuples():
            last = getattr(r, x) == runs[x].max()  # labelled to its left: to its right is the panel's edge
            ax.annotate(point_label(r), (getattr(r, x), r.mean), xytext=(-6 if last else 6, 4),
                        textcoords="offset points", ha="right" if last else "left", fontsize="xx-small",
                        color=style["color"])
    ax.margins(x=0.12)  # room beside the outermost points for their labels
    log_x(ax)
    note = "\nhollow: sweep points at their base run's x" if hollow.any() else ""
    ax.set_xlabel(X_LABELS[x])
    head = f"every run{why}" + ("\n" if why else " — ")
    ax.set_title(f"{head}line: best of each type{note}", fontsize="small" if note or why else "medium")


def power_of_ten(x: float, _=None) -> str:
    """5e10 as 5×10¹⁰ (mathtext); matplotlib's own log formatter drops some 2 and 5 labels."""
    exponent = math.floor(math.log10(x) + 1e-9)
    mantissa = round(x / 10 ** exponent, 6)
    power = f"10^{{{exponent}}}"
    return f"${power}$" if mantissa == 1 else f"${mantissa:g}\\times{power}$"


def log_x(ax) -> None:
    """Log x axis labelled at 1, 2, 3, 5 x 10^k within a decade, 1, 2, 5 x 10^k over up to two, every decade
    beyond: denser labels (matplotlib's minor-tick labels) run into each other on a narrow panel."""
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    decades = math.log10(high / low)
    subs = (1, 2, 3, 5) if decades <= 1 else (1, 2, 5) if decades <= 2 else (1,)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(power_of_ten))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot(evals: dict, out, experiment: str, provenance=None, *, x: str = "train_flops") -> None:
    """evals: {run: {seed: eval/<run>/seed<k>.json}}; x: "train_flops" or "params" for the last panel
    (parameters, whatever x says, when every run had one FLOP budget: one_budget)."""
    runs = read_runs(evals)
    styles = model_styles(list(dict.fromkeys(runs["type"])))
    keys = list(runs["key"].dropna().unique())
    n = len(keys) + 1
    rows = 1 if n <= 3 else 2
    columns = math.ceil(n / rows)
    widths = [1] * (columns - 1) + [1.5] if rows == 1 else None  # the every-run panel holds the most points
    fig, axes = plt.subplots(rows, columns, figsize=SLIDE, sharey=True, squeeze=False, layout="constrained",
                             width_ratios=widths)
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))  # room for the experiment stamp under the last panel
    for ax, key in zip(axes.flat, keys):
        key_panel(ax, runs, key, styles)
    why = ""
    if x == "train_flops" and one_budget(runs):
        x, why = "params", " by size (all on one FLOP budget)"
    compute_panel(axes.flat[len(keys)], runs, x, styles, why)
    handles, labels = axes.flat[len(keys)].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower left", ncols=len(labels), fontsize="small",
               title="model type", title_fontsize="small")  # below the panels, clear of the labelled points
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.supylabel("validation bits per byte")  # once: per-row labels collide on two short rows
    seeds = runs["n"]
    count = (f"{seeds.max()} seed{'s' if seeds.max() > 1 else ''}" if seeds.min() == seeds.max()
             else f"{seeds.min()}–{seeds.max()} seeds per run")
    bars = "error bars: 95% Student-t interval over seeds" if seeds.max() > 1 else "one seed per run: no error bars"
    bars += " (none for a single seed)" if seeds.min() == 1 < seeds.max() else ""
    bars += f"\n{note}" if (note := few_seeds_note(int(seeds.min()))) else ""
    fig.suptitle(f"Validation bits per byte (lower is better) — {experiment}\nmean over {count}; {bars}",
                 fontsize="medium")
    save(fig, out, experiment, provenance)
