"""figures/sweep.png: final validation bits per byte against each swept hyperparameter, and against training
compute (or parameter count) for every run.

One panel per swept key (d_model, train.lr, ...) holding the sweep points and their base run, one line per
base model; then a panel with every run against training FLOPs as picollm.flops counts them (every matmul,
forward + backward, the head at its real width, attention over the full block_size window rather than the
causal half) times the tokens seen (x="params": parameter count), one colour per model type and a line
through the best run of each type at each x, each point named where its name overlaps no other (place_labels).
Points are means over seeds with error bars of the 95% Student-t interval over seeds (none for a single seed),
clipped at 0 bits per byte. The base run sits on its line when its value of the
key is known (the sweep points' `base_value`, or the base evaluation's `config`); otherwise it is a dotted
horizontal line with its interval shaded.
"""
from __future__ import annotations

import math
import numbers

import matplotlib.container
import matplotlib.ticker
import matplotlib.transforms
import numpy as np
import pandas as pd

from picollm.plots import DPI, SLIDE, model_styles, plt, save
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
    """Error bar lengths below and above the mean from the t interval, its lower end clipped at 0 (no bits per byte
    are below 0, but two seeds' t factor of 12.7 can reach there: clipped() says so); 0 where it is NaN (one
    seed)."""
    low = rows["ci_low"].clip(lower=0.0)
    return np.nan_to_num(np.vstack([rows["mean"] - low, rows["ci_high"] - rows["mean"]]))


def clipped(rows: pd.DataFrame) -> bool:
    """Whether any t interval of `rows` reaches below 0, where yerr clips it."""
    return bool((rows["ci_low"] < 0).any())


CLIPPED = "bars clipped at 0 bits per byte"

# Where place_labels tries a point's label, in points from the point: right of it, then left, a little above or
# below its level, then further above or below.
OFFSETS = [(6, 2), (6, -2), (-6, 2), (-6, -2), (6, 12), (6, -12), (-6, 12), (-6, -12), (6, 22), (6, -22),
           (-6, 22), (-6, -22)]


def place_labels(ax, labels: list, offsets=OFFSETS) -> None:
    """Moves each annotation of `labels`, in order, to the first of `offsets` at which its text stays inside the
    axes and clear of the labels placed before it and of the axes' error bars and their markers; where none is
    clear, to the one inside the axes that overlaps them least. Call it on a drawn figure: where a label lands in
    pixels is known only after the layout, at the dpi it is saved at (plots.DPI). The labels must be out of the
    layout (in_layout=False), so that moving them moves nothing else."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = error_bar_boxes(ax)

    def move(label, dx, dy):
        label.xyann = (dx, dy)
        label.set(ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top")
        box = label.get_window_extent(renderer)
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        return (not inside, sum(overlap(box, other) for other in placed)), box

    for label in labels:
        scores = []
        for offset in offsets:
            score, box = move(label, *offset)
            if score == (False, 0):
                break
            scores.append((score, offset))
        else:
            box = move(label, *min(scores, key=lambda tried: tried[0])[1])[1]  # the first of the least
        placed.append(box)


def error_bar_boxes(ax) -> list:
    """Pixel boxes of every marker and bar of the axes' error bars (ax.errorbar), which a label should not cover."""
    points_px = ax.figure.dpi / 72
    boxes = []
    for bars in ax.containers:
        if not isinstance(bars, matplotlib.container.ErrorbarContainer):
            continue
        points, _, lines = bars.lines
        half = points.get_markersize() / 2 * points_px
        boxes += [matplotlib.transforms.Bbox.from_extents(x - half, y - half, x + half, y + half)
                  for x, y in ax.transData.transform(np.column_stack(points.get_data()).astype(float))]
        for collection in lines:
            width = max(collection.get_linewidth()) / 2 * points_px
            for segment in collection.get_segments():
                (x0, y0), (x1, y1) = ax.transData.transform(segment)
                boxes.append(matplotlib.transforms.Bbox.from_extents(min(x0, x1) - width, min(y0, y1) - width,
                                                                     max(x0, x1) + width, max(y0, y1) + width))
    return boxes


def overlap(a, b) -> float:
    """The area two boxes share (0 when they do not meet)."""
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


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
                ax.axhspan(max(r["ci_low"], 0.0), r["ci_high"], color=style["color"], alpha=0.1, lw=0)
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


def compute_panel(ax, runs: pd.DataFrame, x: str, styles: dict, why: str = "") -> list:
    """bpb of every run against training FLOPs or parameters (log x), coloured by type; `why`: a note on the
    choice of x, for the title. Returns the points' labels, for place_labels once the figure is drawn."""
    hollow = beside_base(runs, x)
    labels = []
    for kind, rows in runs.groupby("type", sort=False):
        style = dict(color=styles[kind]["color"], marker=styles[kind]["marker"], ms=9, ls="none", capsize=4)
        shown, quiet = rows[~hollow[rows.index]], rows[hollow[rows.index]]
        ax.errorbar(shown[x], shown["mean"], yerr=yerr(shown), **style, label=kind)
        if len(quiet):
            ax.errorbar(quiet[x], quiet["mean"], yerr=yerr(quiet), **style, mfc="white", alpha=0.8)
        best = frontier(rows, x)
        ax.plot(best[x], best["mean"], color=style["color"], lw=2, alpha=0.7)
        labels += [ax.annotate(point_label(r), (getattr(r, x), r.mean), xytext=OFFSETS[0], textcoords="offset points",
                               fontsize="xx-small", color=style["color"], in_layout=False,  # see place_labels
                               bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.7))  # over lines
                   for r in shown.itertuples()]
    ax.margins(x=0.12)  # room beside the outermost points for their labels
    log_x(ax)
    note = "\nhollow: sweep points at their base run's x" if hollow.any() else ""
    ax.set_xlabel(X_LABELS[x])
    head = f"every run{why}" + ("\n" if why else " — ")
    ax.set_title(f"{head}line: best of each type{note}", fontsize="small" if note or why else "medium")
    return sorted(labels, key=lambda label: label.xy[0])  # placed left to right: the first takes its first choice


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
    named = compute_panel(axes.flat[len(keys)], runs, x, styles, why)
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
    notes = "; ".join(filter(None, [few_seeds_note(int(seeds.min())), CLIPPED if clipped(runs) else ""]))
    bars += f"\n{notes}" if notes else ""
    fig.suptitle(f"Validation bits per byte (lower is better) — {experiment}\nmean over {count}; {bars}",
                 fontsize="medium")
    fig.set_dpi(DPI)
    fig.draw_without_rendering()  # the layout as saved, which place_labels reads
    place_labels(axes.flat[len(keys)], named)
    save(fig, out, experiment, provenance)
