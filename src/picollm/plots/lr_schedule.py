"""figures/lr_schedule.png: the learning rate each run trained with (metrics.csv's `lr` column, logged
at every log step; the mean over seeds, which share the schedule) against optimizer steps, or against
tokens seen with x="tokens_seen".

The `lr` column is train.lr times the schedule. A run with train.optimizer: muon trains only its embeddings,
head and norms at that rate (AdamW); its hidden matrices follow the same shape scaled to train.muon_lr, drawn as
a line of its own in the run's colour. Each run's optimizer and rates come from the config its training job
recorded in the summary.json beside its metrics.csv.

Runs usually share one schedule (every model and sweep point of a study trains with the same train.*
settings): runs with identical schedules (AdamW rates, or rates of unknown optimizers) are drawn once, labelled
with every run that follows them, so that no line hides another. The legend sits below the axes, off the curves.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd

from picollm.plots import SLIDE, model_styles, plt, save, tokens_axis
from picollm.plots import loss_curves
from picollm.plots.loss_curves import SUMMARY, over_seeds, read_metrics
from picollm.tables import recorded_train, seed_paths

LINESTYLES = ["-", "--", ":", "-."]  # schedules that agree in part (the same warm-up) stay apart
SHARED = "0.2"  # a schedule of several runs: no one run's colour
read_beside = loss_curves.read_beside  # the summary.json files it reads too (picollm.commands.figure hashes them)
UNKNOWN_NOTE = ("a run without a summary.json beside its metrics.csv has no recorded optimizer: its line is "
                "train.lr, and under train.optimizer: muon its hidden matrices train at train.muon_lr on the "
                "same shape")


def recorded_optimizer(paths: dict) -> dict | None:
    """{optimizer, lr, muon_lr} of one run ({seed: metrics.csv}; its seeds share them), from the config its
    training job recorded in the summary.json beside metrics.csv (the same job writes both, so a rerun that
    changes one changes the other); None where no seed has one."""
    for path in paths.values():
        summary = Path(path).with_name(SUMMARY)
        if not summary.is_file():
            continue
        train = recorded_train(json.loads(summary.read_text()))
        if train and "lr" in train:
            muon = train.get("optimizer") == "muon"
            return {"optimizer": "muon" if muon else "adamw", "lr": train["lr"],
                    "muon_lr": train.get("muon_lr") if muon else None}
    return None


def same_schedule(a: pd.DataFrame, b: pd.DataFrame, x: str) -> bool:
    """Whether two runs' learning rates agree at the same x values (to float rounding in metrics.csv)."""
    return (len(a) == len(b) and np.array_equal(a[x].to_numpy(), b[x].to_numpy())
            and np.allclose(a["mean"], b["mean"], rtol=1e-9, atol=0))


def schedule_groups(frame: pd.DataFrame, x: str, optimizers: dict | None = None
                    ) -> list[tuple[list[str], pd.DataFrame]]:
    """[(runs, their lr column's schedule)]: runs with the same schedule together, in the order the runs come;
    a run whose optimizer is known (`optimizers`: {run: recorded_optimizer}) never with one whose is not, since
    the line means the AdamW rate only for the first. A Muon run's other rate is a line of its own (muon_lines)."""
    optimizers = optimizers or {}
    groups: list[tuple[list[str], pd.DataFrame]] = []
    for name, group in frame.groupby("model", sort=False):
        rows = over_seeds(group, "lr")
        match = next((runs for runs, ref in groups if same_schedule(ref, rows, x)
                      and (optimizers.get(runs[0]) is None) == (optimizers.get(name) is None)), None)
        if match is None:
            groups.append(([name], rows))
        else:
            match.append(name)
    return groups


def rates(rows: pd.DataFrame, optimizer: dict | None) -> str:
    """'peak 0.002, last 0.0002' of the drawn line: 'AdamW peak ...' where the optimizer is known."""
    peak, last = rows["mean"].max(), rows["mean"].iloc[-1]
    return f"{'' if optimizer is None else 'AdamW '}peak {peak:.2g}, last {last:.2g}"


def group_label(runs: list[str], rows: pd.DataFrame, optimizer: dict | None = None, width: int = 90) -> str:
    """'transformer, lstm, kgram_mlp (same schedule): peak 0.003, last 0.0003' (rates says how a known
    optimizer reads), wrapped to `width` chars (never inside "same schedule")."""
    names = ", ".join(runs) + (" (same\u00a0schedule)" if len(runs) > 1 else "")
    return textwrap.fill(f"{names}: {rates(rows, optimizer)}", width)


def muon_lines(frame: pd.DataFrame, optimizers: dict) -> list[tuple[str, pd.DataFrame]]:
    """[(run, the rate of its hidden matrices)] of each Muon run: its lr column scaled by muon_lr / lr."""
    lines = []
    for name, group in frame.groupby("model", sort=False):
        optimizer = optimizers.get(name)
        if optimizer is not None and optimizer["optimizer"] == "muon":
            rows = over_seeds(group, "lr")
            lines.append((name, rows.assign(mean=rows["mean"] * optimizer["muon_lr"] / optimizer["lr"])))
    return lines


def figure(metrics: dict, experiment: str, x: str = "step"):
    """The figure plot() saves."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    optimizers = {run: recorded_optimizer(paths) for run, paths in seed_paths(metrics).items()}
    fig, ax = plt.subplots(figsize=SLIDE, layout="constrained")
    groups = schedule_groups(frame, x, optimizers)
    for i, (runs, rows) in enumerate(groups):
        color = styles[runs[0]]["color"] if len(runs) == 1 else SHARED
        ax.plot(rows[x], rows["mean"], color=color, ls=LINESTYLES[i % len(LINESTYLES)], lw=3,
                label=group_label(runs, rows, optimizers[runs[0]]))
    for i, (run, rows) in enumerate(muon_lines(frame, optimizers), start=len(groups)):
        ax.plot(rows[x], rows["mean"], color=styles[run]["color"], ls=LINESTYLES[i % len(LINESTYLES)], lw=3,
                label=f"{run}'s hidden matrices: Muon peak {rows['mean'].max():.2g}, last {rows['mean'].iloc[-1]:.2g}")
    if x == "tokens_seen":
        tokens_axis(ax)
    ax.set(xlabel="optimizer step" if x == "step" else "tokens seen", ylabel="learning rate", ylim=(0, None),
           title=f"Learning-rate schedule — {experiment}")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:g}"))  # 0.002, not 2 and a 1e-3 apart
    # below the axes: the curve spans them
    legend = fig.legend(loc="outside lower center", fontsize="small")
    if any(o is None for o in optimizers.values()):  # say what the line is where the config is not at hand
        legend.set_title(textwrap.fill(UNKNOWN_NOTE, 110), prop={"size": "x-small"})
    return fig


def plot(metrics: dict, out, experiment: str, provenance=None, *, x: str = "step") -> None:
    """metrics: {run: {seed: metrics.csv path}}; x: "step" or "tokens_seen"."""
    save(figure(metrics, experiment, x), out, experiment, provenance)
