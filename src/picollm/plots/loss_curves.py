"""figures/loss_curves.png: train and validation loss against tokens seen, per run, averaged over seeds.

Each solid and dashed line is the mean over a run's seeds, with a band of ± 1 standard deviation over seeds (no
band for a single seed); under each solid line, every logged training loss of each seed as a faint line, so
that one seed's spike shows at its full height. Options: `ylim="auto"` zooms on the interesting region (the
first steps' loss, about ln(vocab), would squash the rest, so the first quarter of training runs off the top),
or a (bottom, top) pair; `logy` draws the loss on a log scale.
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from picollm.plots import (SLIDE, families, lines_note, log_y, model_styles, plt, raw_and_smoothed, save, smoothed,
                           smoothing_window, tokens_axis)
from picollm.tables import run_order, seed_paths, train_tokens_note


# picollm.finished.SUMMARY: importing that module would tie the figures' code identity (their reruns) to it
SUMMARY = "summary.json"


def read_beside(metrics: dict) -> list[str]:
    """The summary.json files beside the runs' metrics.csv that the figure reads (its provenance hashes them); the
    same training job writes both, so a rerun that changes one changes the other."""
    return [str(path.with_name(SUMMARY)) for seeds in seed_paths(metrics).values() for path in seeds.values()
            if path.with_name(SUMMARY).is_file()]


def precisions(metrics: dict) -> set:
    """The precisions the runs' validation losses were taken in (summary.json's `precision`: training's, which
    rounds them in about the fourth digit under bf16); empty where no summary says."""
    return {json.loads(Path(path).read_text()).get("precision") for path in read_beside(metrics)} - {None}


def precision_note(metrics: dict) -> str:
    """' (bf16)' when every run's validation losses were taken in one precision, else a pointer to models.md;
    '' where no summary says."""
    found = precisions(metrics)
    if not found:
        return ""
    return f" ({found.pop()})" if len(found) == 1 else " (in each run's training precision: models.md)"


def read_metrics(metrics: dict) -> pd.DataFrame:
    """Every logged row of metrics = {run: {seed: metrics.csv}}, with `model` (the run) and `seed` columns,
    runs in run_order."""
    paths = seed_paths(metrics)
    frames = [pd.read_csv(path).assign(model=run, seed=seed)
              for run in run_order(paths) for seed, path in paths[run].items()]
    return pd.concat(frames, ignore_index=True)


def over_seeds(rows: pd.DataFrame, column: str, window: int = 1) -> pd.DataFrame:
    """Per logged step of one run: tokens seen, `mean` (over seeds, of the raw values), `std` over seeds of
    each seed's running mean over `window` points (the spread of the trend, not of one batch's noise) and
    `seeds` (how many logged this step)."""
    rows = rows.dropna(subset=[column]).sort_values(["seed", "step"])
    trend = rows.groupby("seed")[column].transform(lambda y: smoothed(y, window))
    return (rows.assign(trend=trend).groupby("step")
            .agg(tokens_seen=("tokens_seen", "mean"), mean=(column, "mean"), std=("trend", "std"),
                 seeds=(column, "size")).reset_index())


def seed_band(ax, x, centre, std, color, alpha: float = 0.2, shown=None) -> None:
    """Shade centre ± std (NaN with one seed, which draws nothing); `shown` as raw_and_smoothed takes it."""
    shown = shown or (lambda values: values)
    if std.notna().any():
        ax.fill_between(x, shown(centre - std), shown(centre + std), color=color, alpha=alpha, lw=0)


def positive_log(values: pd.Series) -> pd.Series:
    """The log of each value above 0, and a missing point (skipped by the means) for 0: a log axis has no
    place for it, and one -inf would void every running mean it enters."""
    return np.log(values.where(values > 0))


def mean_and_band(ax, rows: pd.DataFrame, column: str, smooth: int, color, label: str,
                  geometric: bool = False) -> int:
    """`column` of one run against tokens seen, as raw_and_smoothed draws it: each seed's logged values as a
    faint line of its own (a mean over seeds would shrink one seed's spike), the running mean of their mean
    over seeds as the solid line; and a band of ± 1 std over seeds around it. `geometric`: means and std of
    the logs, for a quantity on a log axis, where one spike would lift an arithmetic running mean for its whole
    window. Returns the running mean's window, for lines_note."""
    window = smoothing_window(rows.dropna(subset=[column]).groupby("seed").size().max(), smooth)
    if geometric:
        rows = rows.assign(**{column: positive_log(rows[column])})
    stat = over_seeds(rows, column, window)
    seeds = [(logged["tokens_seen"], logged[column])
             for _, logged in rows.dropna(subset=[column]).sort_values(["seed", "step"]).groupby("seed")]
    back = np.exp if geometric else None
    shown = raw_and_smoothed(ax, stat["tokens_seen"], stat["mean"], smooth, color, label, back, raw=seeds)
    seed_band(ax, stat["tokens_seen"], smoothed(stat["mean"], window), stat["std"], color, shown=back)
    return shown


def tokens_note(frame: pd.DataFrame) -> str:
    """How many tokens each run trained on (its last logged tokens_seen), as train_tokens_note says it."""
    return train_tokens_note(frame.groupby("model", sort=False)["tokens_seen"].max().to_dict())


def most_seeds(frame: pd.DataFrame) -> int:
    """The most seeds any run has."""
    return int(frame.groupby("model")["seed"].nunique().max())


def seeds_note(frame: pd.DataFrame) -> str:
    """'3 seeds' or '1-3 seeds per run', for captions."""
    counts = frame.groupby("model")["seed"].nunique()
    low, high = int(counts.min()), int(counts.max())
    return f"{high} seed{'s' if high > 1 else ''}" if low == high else f"{low}–{high} seeds per run"


def band_note(frame: pd.DataFrame, geometric: bool = False, lines: str = "solid lines") -> str:
    """What the `lines` (all but the seeds' faint ones) and the shaded bands mean, or that there are no bands
    (every run has one seed)."""
    if most_seeds(frame) < 2:
        return "one seed per run: no band"
    if geometric:
        return f"{lines}: geometric mean over {seeds_note(frame)}, bands ± 1 std of the log"
    return f"{lines}: mean over {seeds_note(frame)}, bands ± 1 std"


def auto_ylim(frame: pd.DataFrame, skip: float = 0.25) -> tuple[float, float]:
    """From just below the lowest loss to the highest loss after the first `skip` of training."""
    later = frame[frame["tokens_seen"] >= skip * frame["tokens_seen"].max()]
    losses = later[["train_loss", "val_loss"]].stack()
    low, high = losses.min(), losses.max()
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def val_decimals(lasts: list, bf16: bool = False) -> int:
    """Decimals for the runs' final validation losses (the last rows of over_seeds), one number for every entry
    of a legend so that they read alike: what the widest std needs for two significant digits, at most 4
    significant digits of the largest loss, and at most 3 decimals under bf16, which rounds these losses in
    about the fourth digit."""
    top = max((abs(last["mean"]) for last in lasts if last["mean"] > 0), default=1.0)
    cap = max(0, 3 - math.floor(math.log10(top)))
    if bf16:
        cap = min(cap, 3)
    stds = [last["std"] for last in lasts if last["seeds"] >= 2 and last["std"] > 0]
    need = max((1 - math.floor(math.log10(std)) for std in stds), default=cap)
    return max(0, min(cap, need))


def final_val(stat: pd.DataFrame, decimals: int | None = None) -> str:
    """'2.345 ± 0.012 std' (mean ± 1 std over seeds) at the last validation step, or the value alone for one
    seed, to `decimals` (default: val_decimals of this run alone). The "std" keeps it apart from eval.md's ±,
    a 95% interval of the whole split's loss; a std that rounds to 0 reads "< 0.001"."""
    if stat.empty:
        return "n/a"
    last = stat.iloc[-1]
    decimals = val_decimals([last]) if decimals is None else decimals
    mean = f"{last['mean']:.{decimals}f}"
    if last["seeds"] < 2:
        return mean
    std = f"{last['std']:.{decimals}f}"
    return f"{mean} ± {std if float(std) > 0 else f'< {10.0 ** -decimals:.{decimals}f}'} std"


def legend_columns(groups: list[list], ncols: int) -> list[list]:
    """The groups' entries in at most `ncols` columns, each group in one column, as the shortest columns (up to
    two rows taller than the fewest rows) allow; else column by column as they come, groups split where they
    fall."""
    total = sum(map(len, groups))
    fewest = -(-total // ncols)
    for height in range(fewest, fewest + 3):
        columns = []
        for group in groups:
            if len(group) > height:
                break
            if not columns or len(columns[-1]) + len(group) > height:
                columns.append([])
            columns[-1].extend(group)
        else:
            if len(columns) <= ncols:
                return columns
    entries = [entry for group in groups for entry in group]
    return [entries[i:i + fewest] for i in range(0, total, fewest)]


def legend(ax, styles: dict, finals: dict, windows: set, note: str, precision: str = "", seeds: int = 1) -> None:
    """One entry per run (its colour and marker, final validation loss), a model's sweep points after it, then
    what solid, faint and dashed lines and the bands mean; in columns under the axes when there are more runs
    than fit over the curves (beside them, a legend taller than it is wide would leave a blank column under
    it), a model and its sweep points in one column where they fit, padded with blank rows."""
    def entry(name):
        s = styles[name]
        return Line2D([], [], color=s["color"], marker=s["marker"], lw=2.5, ms=8,
                      label=f"{name} (val {finals[name]})")
    groups = [[entry(name) for name in group] for group in families(styles)]
    parts = f"train — {lines_note(windows, seeds=seeds)}".split("; ")
    if len(styles) > 4:  # narrow, in a legend of three columns as wide as the slide
        parts = ["\n".join(textwrap.wrap(part, 34)) for part in parts]
    groups.append([Line2D([], [], color="0.3", lw=2.5, label=";\n".join(parts)),
                   Line2D([], [], color="0.3", ls="--", marker="o", ms=6, lw=1.5, label="validation")])
    spread = ", mean ± 1 std over seeds" if seeds > 1 else ""
    title = f"final val loss on training's val subset{precision}{spread}\n{note}"
    if len(styles) <= 4:
        ax.legend(handles=sum(groups, []), title=title, fontsize="small", title_fontsize="x-small")
        return
    columns = legend_columns(groups, 3)
    height = max(map(len, columns))  # equal columns: matplotlib fills them in order, each `height` rows
    blank = Line2D([], [], lw=0, label="")
    handles = [handle for column in columns for handle in column + [blank] * (height - len(column))]
    ax.figure.legend(handles=handles, title=title, loc="outside lower center", ncols=len(columns),
                     fontsize="x-small", title_fontsize="x-small")


def plot(metrics: dict, out, experiment: str, provenance=None, *, smooth: int = 10, ylim=None,
         logy: bool = False) -> None:
    """metrics: {run: {seed: metrics.csv path}}."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    fig, ax = plt.subplots(figsize=SLIDE, layout="constrained")  # a legend outside narrows the axes, not the slide
    windows, vals = set(), {}
    for name, group in frame.groupby("model", sort=False):
        style = styles[name]
        windows.add(mean_and_band(ax, group, "train_loss", smooth, style["color"], f"{name} train"))
        val = vals[name] = over_seeds(group, "val_loss")
        ax.plot(val["tokens_seen"], val["mean"], ls="--", marker=style["marker"], color=style["color"], ms=8,
                lw=1.5)
        seed_band(ax, val["tokens_seen"], val["mean"], val["std"], style["color"], alpha=0.12)
    decimals = val_decimals([val.iloc[-1] for val in vals.values() if not val.empty], "bf16" in precisions(metrics))
    finals = {name: final_val(val, decimals) for name, val in vals.items()}
    if ylim is not None:
        ax.set_ylim(auto_ylim(frame) if ylim == "auto" else ylim)
    if logy:
        log_y(ax)
    zoom = "\n(y zoomed: earlier, higher losses run off the top)" if ylim == "auto" else ""
    ax.set(xlabel="tokens seen", ylabel="cross-entropy (nats/token)" + (", log scale" if logy else ""),
           title=f"Loss curves — {experiment}, {tokens_note(frame)}{zoom}")
    tokens_axis(ax)
    legend(ax, styles, finals, windows, band_note(frame, lines="solid and dashed lines"), precision_note(metrics),
           most_seeds(frame))
    save(fig, out, experiment, provenance)
