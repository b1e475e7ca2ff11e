"""figures/lr_schedule.png: the learning rate each run trained with (metrics.csv's `lr` column, logged
at every log step; the mean over seeds, which share the schedule) against optimizer steps, or against
tokens seen with x="tokens_seen".

Runs usually share one schedule (every model and sweep point of a study trains with the same train.*
settings): identical schedules are drawn once, labelled with every run that follows them, so that no line
hides another. The legend sits below the axes, off the curves.
"""
from __future__ import annotations

import textwrap

import matplotlib.ticker
import numpy as np
import pandas as pd

from picollm.plots import SLIDE, model_styles, plt, save, tokens_axis
from picollm.plots.loss_curves import over_seeds, read_metrics

LINESTYLES = ["-", "--", ":", "-."]  # schedules that agree in part (the same warm-up) stay apart
SHARED = "0.2"  # a schedule of several runs: no one run's colour


def same_schedule(a: pd.DataFrame, b: pd.DataFrame, x: str) -> bool:
    """Whether two runs' learning rates agree at the same x values (to float rounding in metrics.csv)."""
    return (len(a) == len(b) and np.array_equal(a[x].to_numpy(), b[x].to_numpy())
            and np.allclose(a["mean"], b["mean"], rtol=1e-9, atol=0))


def schedule_groups(frame: pd.DataFrame, x: str) -> list[tuple[list[str], pd.DataFrame]]:
    """[(runs, their schedule)]: runs with the same schedule together, in the order the runs come."""
    groups: list[tuple[list[str], pd.DataFrame]] = []
    for name, group in frame.groupby("model", sort=False):
        rows = over_seeds(group, "lr")
        match = next((runs for runs, ref in groups if same_schedule(ref, rows, x)), None)
        if match is None:
            groups.append(([name], rows))
        else:
            match.append(name)
    return groups


def group_label(runs: list[str], rows: pd.DataFrame, width: int = 80) -> str:
    """'transformer, lstm, kgram_mlp (same schedule): peak 0.003, last 0.0003', wrapped to `width` chars
    (never inside "same schedule")."""
    names = ", ".join(runs) + (" (same\u00a0schedule)" if len(runs) > 1 else "")
    label = f"{names}: peak {rows['mean'].max():.2g}, last {rows['mean'].iloc[-1]:.2g}"
    return textwrap.fill(label, width)


def figure(metrics: dict, experiment: str, x: str = "step"):
    """The figure plot() saves."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    fig, ax = plt.subplots(figsize=SLIDE, layout="constrained")
    for i, (runs, rows) in enumerate(schedule_groups(frame, x)):
        color = styles[runs[0]]["color"] if len(runs) == 1 else SHARED
        ax.plot(rows[x], rows["mean"], color=color, ls=LINESTYLES[i % len(LINESTYLES)], lw=3,
                label=group_label(runs, rows))
    if x == "tokens_seen":
        tokens_axis(ax)
    ax.set(xlabel="optimizer step" if x == "step" else "tokens seen", ylabel="learning rate", ylim=(0, None),
           title=f"Learning-rate schedule — {experiment}")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:g}"))  # 0.002, not 2 and a 1e-3 apart
    fig.legend(loc="outside lower center", fontsize="small")  # below the axes: the curve spans them
    return fig


def plot(metrics: dict, out, experiment: str, provenance=None, *, x: str = "step") -> None:
    """metrics: {run: {seed: metrics.csv path}}; x: "step" or "tokens_seen"."""
    save(figure(metrics, experiment, x), out, experiment, provenance)
