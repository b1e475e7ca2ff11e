"""Figures, one module per figure; each reads only files on disk and stamps the experiment on the image.

Every figure is drawn for a projected slide: seaborn's "talk" fonts and "whitegrid" style (TALK_WHITEGRID) on a
16:9-friendly canvas (SLIDE), saved as a 200 dpi PNG and as an SVG beside it (vector, for slides that scale it;
its text is text).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")  # headless: rules run without a display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from picollm.io import atomic_path  # noqa: E402
from picollm.tables import run_order  # noqa: E402

SLIDE = (13.33, 7.5)  # inches: a 16:9 slide, so a figure projects at its drawn font size
DPI = 200
CHAR_WIDTH = 0.6  # DejaVu Sans' mean character width, in font sizes (a little over, so that lines fit)
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]  # one per model, so overlapping models stay apart
STAMP_GAP = 8  # points between everything drawn and the experiment stamp above it
BUILT_IN = ("kgram_mlp", "lstm", "transformer")  # the model types every study knows: tab10's first colours
# The rcParams seaborn.set_theme(context="talk", style="whitegrid") sets, as matplotlib settings: importing seaborn
# imports scipy.stats, most of a figure job's start-up (tests/test_plots.py holds this copy to seaborn's). Left out:
# image.cmap, seaborn's "rocket", which matplotlib knows only once seaborn is imported; every figure names its map.
TALK_WHITEGRID = {
    "axes.axisbelow": True, "axes.edgecolor": ".8", "axes.grid": True, "axes.labelcolor": ".15",
    "axes.labelsize": 18.0, "axes.linewidth": 1.875, "axes.titlesize": 18.0,
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"],
    "font.size": 18.0, "grid.color": ".8", "grid.linewidth": 1.5,
    "legend.fontsize": 16.5, "legend.title_fontsize": 18.0,
    "lines.linewidth": 2.25, "lines.markersize": 9.0, "lines.solid_capstyle": "round",
    "patch.edgecolor": "w", "patch.force_edgecolor": True, "patch.linewidth": 1.5, "text.color": ".15",
    "xtick.bottom": False, "xtick.color": ".15", "xtick.labelsize": 16.5, "xtick.major.size": 9.0,
    "xtick.major.width": 1.875, "xtick.minor.size": 6.0, "xtick.minor.width": 1.5,
    "ytick.color": ".15", "ytick.labelsize": 16.5, "ytick.left": False, "ytick.major.size": 9.0,
    "ytick.major.width": 1.875, "ytick.minor.size": 6.0, "ytick.minor.width": 1.5,
}
# svg.hashsalt: fixed SVG ids, so the same data gives the same bytes. svg.fonttype none: text as <text>, so that a
# slide tool can edit and search titles and legends; it names DejaVu Sans first (matplotlib ships it, and measured
# every label in it: CHAR_WIDTH), not seaborn's Arial, whose other widths would move text the layout placed.
plt.rcParams.update({**TALK_WHITEGRID, "svg.hashsalt": "picollm", "svg.fonttype": "none", "legend.framealpha": 0.85,
                     "font.sans-serif": ["DejaVu Sans", "Arial", "Liberation Sans", "sans-serif"]})
PALETTE = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # grey: the figures' references


def smoothing_window(n_points: int, smooth: int) -> int:
    """Points a centred running mean spans: at most `smooth` and a tenth of the series, and 1 (no smoothing)
    when that is under 3, where a "smoothed" line would hide the raw one while changing nothing."""
    window = min(smooth, n_points // 10)
    return window if window >= 3 else 1


def smoothed(series: pd.Series, window: int) -> pd.Series:
    """Centred running mean over `window` points, narrowing evenly towards either end (the first point is its
    own mean, the second the mean of three): a trailing mean lags the raw curve, and a centred window cut off
    at an end averages one side only, drawing a falling loss curve's start well below its data. Missing
    values are skipped, as pandas' rolling mean skips them."""
    values = series.to_numpy(dtype=float)
    index = np.arange(len(values))
    to_end = np.minimum(index, len(values) - 1 - index)
    start = index - np.minimum(window // 2, to_end)
    stop = index + np.minimum((window - 1) // 2, to_end) + 1
    present = ~np.isnan(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(present, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(present)])
    with np.errstate(invalid="ignore"):  # a window of missing values only: missing
        means = (sums[stop] - sums[start]) / (counts[stop] - counts[start])
    return pd.Series(means, index=series.index)


FAINT = {"alpha": 0.4, "lw": 0.8, "zorder": 1.5}  # a logged series under the solid lines: thin, light, behind them


def raw_and_smoothed(ax, x: pd.Series, y: pd.Series, smooth: int, color, label: str, shown=None,
                     raw=None) -> int:
    """The running mean of y as a solid line over faint lines of what was logged: `raw`, a list of (x, y) series
    (one per seed), or y itself by default. One solid line of y alone when there are too few points to smooth
    and a single raw series, which it would only repeat. `shown` maps y to what is drawn (np.exp for y given as
    logs: a geometric mean). Returns the running mean's window (1: not smoothed), for lines_note."""
    shown = shown or (lambda values: values)
    raw = [(x, y)] if raw is None else raw
    window = smoothing_window(len(y), smooth)
    if window == 1 and len(raw) == 1:
        ax.plot(x, shown(y), color=color, lw=2.5, label=label)
        return 1
    for raw_x, raw_y in raw:
        ax.plot(raw_x, shown(raw_y), color=color, **FAINT)
    ax.plot(x, shown(smoothed(y, window)), color=color, lw=2.5, label=label)
    return window


def lines_note(windows, mean: str = "mean", seeds: int = 1) -> str:
    """What a figure's solid and faint lines show, from the windows raw_and_smoothed returned for its runs and the
    most seeds a run has (with several, a faint line per seed under their mean): one wording for all of them,
    also when some runs logged too few steps to smooth."""
    means = sorted(w for w in set(windows) if w > 1)
    if seeds == 1 and not means:
        return "every logged step"
    faint = "every logged step" + (" of each seed" if seeds > 1 else "")
    solid = f"{mean} of " + " or ".join(map(str, means)) if means else "unsmoothed (too few steps)"
    note = f"faint: {faint}; solid: {solid}"
    if means and 1 in windows:
        note += ("; a solid line alone: every logged step (too few to smooth)" if seeds == 1
                 else "; unsmoothed where too few steps")
    return note


def model_of(run: str) -> str:
    """The model a run belongs to: transformer.d_model=32 -> transformer (a sweep point is <model>.<key>=<value>)."""
    return run.partition(".")[0]


def families(runs) -> list[list[str]]:
    """The runs grouped by model (transformer, then its sweep points), models in the order they first come."""
    groups = {}
    for run in runs:
        groups.setdefault(model_of(run), []).append(run)
    return list(groups.values())


def model_styles(models) -> dict:
    """{run: {color, marker}} in run_order. A model's sweep points are shades of its colour, light to dark in
    run_order, so a model and its sweep read as one family. The built-in model types keep their colours in
    every figure, whatever other runs it shows (a GRU added to a study repaints none of them); other models
    take the next colours in run_order, and past the palette's end its colours again with other markers."""
    runs = run_order(models)
    models = run_order(map(model_of, runs))
    others = [model for model in models if model not in BUILT_IN]
    styles = {}
    for model in models:
        slot = BUILT_IN.index(model) if model in BUILT_IN else len(BUILT_IN) + others.index(model)
        color, marker = PALETTE[slot % len(PALETTE)], (slot + slot // len(PALETTE)) % len(MARKERS)
        styles[model] = {"color": color, "marker": MARKERS[marker]}
        points = [run for run in runs if run.startswith(model + ".")]
        for i, (run, shade) in enumerate(zip(points, shades(color, len(points)))):
            styles[run] = {"color": shade, "marker": MARKERS[(marker + i + 1) % len(MARKERS)]}
    return {run: styles[run] for run in runs}


def shades(color, n: int) -> list:
    """n shades of `color` from light to dark, none of them the colour itself: the lighter half mixed with
    white, the darker half with black, in even steps out from the colour to 60% white and 50% black. A side's
    one shade is its far end: a two-point sweep's 60% white and 50% black read apart from their model at a
    glance, where 25% black did not."""
    light, dark = (n + 1) // 2, n // 2
    mixes = ([(1.0, a) for a in np.linspace(0.6, 0.2, light + 1)[:-1]]
             + [(0.0, a) for a in np.linspace(0.5, 0.2, dark + 1)[:-1][::-1]])
    return [tuple(c + (end - c) * amount for c in color) for end, amount in mixes]


def run_label(run: str) -> str:
    """A sweep run's name (transformer.d_model=64) as its model over the swept setting, on two lines
    ("transformer" over "d_model=64"): whole, it is wider than a table column holds. Other names as they are."""
    model, dot, setting = run.partition(".")
    return f"{model}\n{setting}" if dot else run


def tokens_axis(ax, ticks: int = 5) -> None:
    """Tokens seen on the x axis as 1,228,800 rather than 1.2e6, few enough ticks for such long labels
    (fewer on a narrow panel)."""
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(ticks))
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))


def log_y(ax) -> None:
    """Log y axis with plain labels (0.5, 1, 2 rather than 5e-01) spaced so that they never overlap: 1-2-5
    per decade over up to two decades, one per decade beyond, evenly spaced values below ~0.7 decade."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    decades = math.log10(high / low)
    if decades <= 0.7:
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(6, steps=[1, 2, 5, 10]))
    else:
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5) if decades <= 2 else (1,)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def save(fig, path, experiment: str, provenance: dict | None = None) -> None:
    """Save `path` (PNG) and the same figure as SVG beside it, atomically, with the experiment above its top right
    corner and the provenance in their metadata.

    No timestamp goes into either file, so rebuilding from the same data gives the same bytes.
    """
    # The experiment goes above the top right corner of everything drawn (bbox_inches="tight" grows the canvas to
    # hold it), where it overlaps nothing: not below, since a saved figure's legends sit at its bottom edge.
    # It sits STAMP_GAP points above, since a title that reaches the top edge would touch it.
    fig.set_dpi(DPI)
    fig.draw_without_rendering()  # the layout, as the PNG is drawn
    drawn = fig.get_tightbbox()  # inches
    top = drawn.y1 + STAMP_GAP / 72
    fig.text(drawn.x1 / fig.get_figwidth(), top / fig.get_figheight(), f"experiment: {experiment}",
             ha="right", va="bottom", fontsize=10, color="0.4")
    stamped = {k: v for k, v in (provenance or {}).items() if k != "created_utc"}  # the job's record keeps it
    metadata = {"Title": f"{experiment}", "Description": json.dumps(stamped, default=str, sort_keys=True)}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata=metadata)
    with atomic_path(Path(path).with_suffix(".svg")) as tmp:
        fig.savefig(tmp, format="svg", bbox_inches="tight", metadata={**metadata, "Date": None})
    plt.close(fig)
