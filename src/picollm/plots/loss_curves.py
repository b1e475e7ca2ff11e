"""figures/loss_curves.png: train and validation loss against tokens seen, per run, averaged over seeds.

Each line is the mean over a run's seeds, with a band of ± 1 standard deviation over seeds (no band for
a single seed). Options: `ylim="auto"` zooms on the interesting region (the first steps' loss, about
ln(vocab), would squash the rest, so the first quarter of training runs off the top), or a (bottom, top)
pair; `logy` draws the loss on a log scale.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from picollm.plots import (SLIDE, lines_note, log_y, model_styles, plt, raw_and_smoothed, save, smoothed,
                           smoothing_window, tokens_axis)
from picollm.tables import plus_minus, run_order, seed_paths, train_tokens_note


# picollm.finished.SUMMARY: importing that module would tie the figures' code identity (their reruns) to it
SUMMARY = "summary.json"


def read_beside(metrics: dict) -> list[str]:
    """The summary.json files beside the runs' metrics.csv that the figure reads (its provenance hashes them); the
    same training job writes both, so a rerun that changes one changes the other."""
    return [str(path.with_name(SUMMARY)) for seeds in seed_paths(metrics).values() for path in seeds.values()
            if path.with_name(SUMMARY).is_file()]


def precision_note(metrics: dict) -> str:
    """' (bf16)' when every run's validation losses were taken in one precision (summary.json's `precision`:
    training's, which rounds them in about the fourth digit under bf16), else a pointer to models.md; '' where
    no summary says."""
    found = {json.loads(Path(path).read_text()).get("precision") for path in read_beside(metrics)} - {None}
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
    """`column` of one run against tokens seen: the mean over seeds as raw_and_smoothed draws it, and a band
    of ± 1 std over seeds around its running mean. `geometric`: means and std of the logs, for a quantity on a
    log axis, where one spike would lift an arithmetic running mean for its whole window. Returns the running
    mean's window, for lines_note."""
    window = smoothing_window(rows.dropna(subset=[column]).groupby("seed").size().max(), smooth)
    if geometric:
        rows = rows.assign(**{column: positive_log(rows[column])})
    stat = over_seeds(rows, column, window)
    back = np.exp if geometric else None
    shown = raw_and_smoothed(ax, stat["tokens_seen"], stat["mean"], smooth, color, label, back)
    seed_band(ax, stat["tokens_seen"], smoothed(stat["mean"], window), stat["std"], color, shown=back)
    return shown


def tokens_note(frame: pd.DataFrame) -> str:
    """How many tokens each run trained on (its last logged tokens_seen), as train_tokens_note says it."""
    return train_tokens_note(frame.groupby("model", sort=False)["tokens_seen"].max().to_dict())


def seeds_note(frame: pd.DataFrame) -> str:
    """'3 seeds' or '1-3 seeds per run', for captions."""
    counts = frame.groupby("model")["seed"].nunique()
    low, high = int(counts.min()), int(counts.max())
    return f"{high} seed{'s' if high > 1 else ''}" if low == high else f"{low}–{high} seeds per run"


def band_note(frame: pd.DataFrame, geometric: bool = False) -> str:
    """What a shaded band means, or that there are none (every run has one seed)."""
    if frame.groupby("model")["seed"].nunique().max() < 2:
        return "one seed per run: no band"
    if geometric:
        return f"lines: geometric mean over {seeds_note(frame)}, bands ± 1 std of the log"
    return f"lines: mean over {seeds_note(frame)}, bands ± 1 std"


def auto_ylim(frame: pd.DataFrame, skip: float = 0.25) -> tuple[float, float]:
    """From just below the lowest loss to the highest loss after the first `skip` of training."""
    later = frame[frame["tokens_seen"] >= skip * frame["tokens_seen"].max()]
    losses = later[["train_loss", "val_loss"]].stack()
    low, high = losses.min(), losses.max()
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def final_val(stat: pd.DataFrame) -> str:
    """'2.345 ± 0.012 std' (mean ± 1 std over seeds, the std to two significant digits) at the last
    validation step, or the value alone for one seed. The "std" keeps it apart from eval.md's ±, a 95%
    interval of the whole split's loss."""
    if stat.empty:
        return "n/a"
    last = stat.iloc[-1]
    if last["seeds"] < 2:
        return f"{last['mean']:.4g}"
    return plus_minus(last["mean"], last["mean"] - last["std"], last["mean"] + last["std"]) + " std"


def legend(ax, styles: dict, finals: dict, windows: set, note: str, precision: str = "") -> None:
    """One entry per run (its colour and marker, final validation loss), then what solid, faint and dashed
    lines and the bands mean; in columns under the axes when there are more runs than fit over the curves
    (beside them, a legend taller than it is wide would leave a blank column under it)."""
    handles = [Line2D([], [], color=s["color"], marker=s["marker"], lw=2.5, ms=8, label=f"{name} (val {finals[name]})")
               for name, s in styles.items()]
    handles += [Line2D([], [], color="0.3", lw=2.5, label="train — " + lines_note(windows).replace("; ", ";\n")),
                Line2D([], [], color="0.3", ls="--", marker="o", ms=6, lw=1.5, label="validation")]
    title = f"final val loss on training's val subset{precision}, mean ± 1 std over seeds\n{note}"
    if len(styles) <= 4:
        ax.legend(handles=handles, title=title, fontsize="small", title_fontsize="x-small")
    else:
        ax.figure.legend(handles=handles, title=title, loc="outside lower center", ncols=3, fontsize="x-small",
                         title_fontsize="x-small")


def plot(metrics: dict, out, experiment: str, provenance=None, *, smooth: int = 10, ylim=None,
         logy: bool = False) -> None:
    """metrics: {run: {seed: metrics.csv path}}."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    fig, ax = plt.subplots(figsize=SLIDE, layout="constrained")  # a legend outside narrows the axes, not the slide
    windows, finals = set(), {}
    for name, group in frame.groupby("model", sort=False):
        style = styles[name]
        windows.add(mean_and_band(ax, group, "train_loss", smooth, style["color"], f"{name} train"))
        val = over_seeds(group, "val_loss")
        ax.plot(val["tokens_seen"], val["mean"], ls="--", marker=style["marker"], color=style["color"], ms=8,
                lw=1.5)
        seed_band(ax, val["tokens_seen"], val["mean"], val["std"], style["color"], alpha=0.12)
        finals[name] = final_val(val)
    if ylim is not None:
        ax.set_ylim(auto_ylim(frame) if ylim == "auto" else ylim)
    if logy:
        log_y(ax)
    zoom = "\n(y zoomed: earlier, higher losses run off the top)" if ylim == "auto" else ""
    ax.set(xlabel="tokens seen", ylabel="cross-entropy (nats/token)" + (", log scale" if logy else ""),
           title=f"Loss curves — {experiment}, {tokens_note(frame)}{zoom}")
    tokens_axis(ax)
    legend(ax, styles, finals, windows, band_note(frame), precision_note(metrics))
    save(fig, out, experiment, provenance)
