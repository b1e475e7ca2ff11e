"""figures/scaling.png: validation bits per byte against training compute per model type (log-log), with
each type's compute frontier and fitted power law, and final bits per byte against non-embedding parameters.

Left: one faint line per run along its training (the mean over seeds of its validation points), the
frontier of each type drawn bold over them, its fit bpb(C) = E + A C^-alpha dashed over the compute it
was fitted on (picollm.scaling says which points and how), dotted where a frontier that stopped falling is held
at its best out to its type's largest compute, and an X where one type's frontier passes another's for good, its
95% interval over seeds as a bar. Right: the evaluation's whole-split bits per byte
at the end of each run against its non-embedding parameters, mean over seeds with 95% t intervals.
"""
from __future__ import annotations

import math
import textwrap

import matplotlib.ticker
import numpy as np
import pandas as pd

from picollm import scaling
from picollm.plots import DPI, SLIDE, log_y, model_styles, plt, save, sweep
from picollm.plots.sweep import log_x, power_of_ten
from picollm.stats import t_interval


def compute_panel(ax, points: pd.DataFrame, fits: pd.DataFrame, styles: dict) -> list:
    """The left panel; returns its crossing labels (crossing_marks)."""
    means = scaling.mean_curves(points[points["kind"] == "curve"])
    lines = {kind: scaling.mean_line(rows) for kind, rows in means.groupby("type", sort=False)}
    for kind, rows in means.groupby("type", sort=False):
        color = styles[kind]["color"]
        for _, run in rows.groupby("run", sort=False):
            ax.plot(run["train_flops"], run["bpb"], color=color, alpha=0.25, lw=1)
        front = scaling.frontier(rows)
        row = fits.set_index("type").loc[kind]
        ax.plot(front["train_flops"], front["bpb"], color=color, lw=3, marker=styles[kind]["marker"], ms=6,
                label=f"{kind} frontier — {scaling.fit_note(row)}")
        held = lines[kind].tail(2)  # its best, held out to the type's largest compute
        if len(held) == 2 and held["train_flops"].iloc[-1] > front["train_flops"].max():
            ax.plot(held["train_flops"], held["bpb"], color=color, lw=2, ls=":")
        if row["fitted"]:
            used = scaling.fit_points(front)["train_flops"]
            grid = np.geomspace(used.min(), used.max(), 100)
            ax.plot(grid, scaling.predict(row, grid), color=color, ls=(0, (4, 2)), lw=2, alpha=0.9)
            ax.plot(grid, scaling.predict(row, grid), color="black", ls=(0, (1, 5)), lw=1)  # dashed on any colour
    labels = crossing_marks(ax, lines, fits)
    ax.plot([], [], color="0.3", ls=(0, (4, 2)), lw=2, label="dashed: fit E + A·C^(−α) (95% intervals over seeds)")
    ax.plot([], [], color="0.5", alpha=0.4, lw=1, label="faint: one run (mean over seeds) along its training")
    log_x(ax)
    log_y(ax)
    ax.set(xlabel="training compute C (FLOPs: matmuls, fwd + bwd)", ylabel="validation bits per byte (log scale)",
           title="against compute: each type's frontier (bold) and fit")
    return labels


def last_crossing(row, other: str) -> float | None:
    """The last compute at which a tables/scaling.csv row's type crosses type other, as the CSV reads back (one
    crossing is a number, several are text, none is blank); None where they do not cross."""
    found = scaling.read_crossings(row, other)
    return found[-1] if found else None


# Where a crossing's label goes, in points from its X (place_labels): above it to the right, or to the left where
# the right would leave the panel (a crossing near the largest compute), then below.
CROSSING_OFFSETS = [(8, 10), (-8, 10), (8, -10), (-8, -10)]
LEGEND_WIDTH = 72  # characters of a legend entry's line


def crossing_marks(ax, lines: dict, fits: pd.DataFrame) -> list:
    """Where one type's frontier passes another's for good (their last crossing, tables/scaling.csv), an X on the
    frontiers with its 95% interval over seeds as a bar, labelled which passes which and in how many of the
    seed redraws the same type ends ahead. lines: each type's scaling.mean_line. Returns the labels, for
    place_labels once the figure is drawn."""
    rows = fits.set_index("type")
    types = list(rows.index)
    labels = []
    for kind, other in ((kind, other) for i, kind in enumerate(types) for other in types[i + 1:]):
        at = last_crossing(rows.loc[kind], other)
        if at is None:
            continue
        ahead, behind = (kind, other) if scaling.ends_ahead(lines[kind], lines[other]) else (other, kind)
        low, high, agree = (rows.loc[kind].get(f"crosses_{other}_{end}", math.nan)
                            for end in ("ci_low", "ci_high", "same_order"))
        # at is rounded to 3 digits in the CSV, its bounds are not: a bound within rounding of it is a bar of 0
        xerr = [[max(at - low, 0.0)], [max(high - at, 0.0)]] if low == low else None
        y = float(scaling.at_compute(lines[kind], [at])[0])
        ax.errorbar([at], [y], xerr=xerr, fmt="X", color="black", ms=10, capsize=5, lw=1.5, zorder=6,
                    label=None if labels else "X: one frontier passes another for good (bar: 95% interval)")
        agreed = f"\n(in {agree:.0%} of seed redraws)" if agree == agree else ""
        # out of the layout: a label is no reason to shrink the panel, and place_labels keeps it inside it
        labels.append(ax.annotate(f"{ahead} passes {behind}{agreed}", (at, y), xytext=CROSSING_OFFSETS[0],
                                  textcoords="offset points", fontsize="x-small", ma="left", zorder=6, in_layout=False,
                                  bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="0.6")))
    return labels


def params_panel(ax, points: pd.DataFrame, styles: dict) -> None:
    finals = points[points["kind"] == "final"]
    clipped = False
    for kind, rows in finals.groupby("type", sort=False):
        stats = pd.DataFrame([{"run": run, "params": g["params_non_embedding"].iloc[0], **t_interval(g["bpb"])}
                              for run, g in rows.groupby("run", sort=False)])
        best = stats.loc[stats.groupby("params")["mean"].idxmin()].sort_values("params")  # several budgets: the best
        clipped |= sweep.clipped(stats)
        ax.errorbar(stats["params"], stats["mean"], yerr=sweep.yerr(stats), ls="none", marker=styles[kind]["marker"],
                    ms=8, capsize=4, color=styles[kind]["color"], label=kind)
        ax.plot(best["params"], best["mean"], color=styles[kind]["color"], lw=2)
        for _, point in stats[stats["params"].duplicated(keep=False)].iterrows():  # runs of one size: say which
            ax.annotate(point["run"], (point["params"], point["mean"]), xytext=(6, 0), textcoords="offset points",
                        fontsize="x-small", color=styles[kind]["color"], va="center")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))  # a narrow panel: few labels
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(power_of_ten))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    split = "capped split" if finals.get("capped", pd.Series(False)).any() else "whole split"
    ax.set(xlabel="non-embedding parameters", ylabel="validation bits per byte (linear scale)",
           title=f"at the end of training ({split})" + (f"\n{sweep.CLIPPED}" if clipped else ""))
    ax.legend(fontsize="x-small")


def plot(inputs: dict, out, experiment: str, provenance=None) -> None:
    """inputs: {"points": tables/scaling_points.csv, "fits": tables/scaling.csv}."""
    points, fits = pd.read_csv(inputs["points"]), pd.read_csv(inputs["fits"])
    styles = model_styles(list(dict.fromkeys(points["type"])))
    fig, (left, right) = plt.subplots(1, 2, figsize=SLIDE, width_ratios=[1.8, 1], layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))  # room for the experiment stamp under the legend
    crossing_labels = compute_panel(left, points, fits, styles)
    params_panel(right, points, styles)
    handles, labels = left.get_legend_handles_labels()
    labels = [textwrap.fill(label, LEGEND_WIDTH) for label in labels]  # two columns within a slide's width
    fig.legend(handles, labels, loc="outside lower left", ncols=2, fontsize="x-small")  # clear of the curves
    seeds = int(fits["seeds"].min())
    fig.suptitle(f"How each model type scales — {experiment}: validation bits per byte (lower is better), {seeds} seed"
                 f"{'s' if seeds > 1 else ''} per run", fontsize="medium")
    fig.set_dpi(DPI)
    fig.draw_without_rendering()  # the layout as saved, which place_labels reads
    sweep.place_labels(left, crossing_labels, CROSSING_OFFSETS)
    save(fig, out, experiment, provenance)
