"""figures/lr_schedule.png: the learning rate each run trained with (metrics.csv's `lr` column, logged
at every log step; the mean over seeds, which share the schedule) against optimizer steps, or against
tokens seen with x="tokens_seen"."""
from __future__ import annotations

import matplotlib.ticker

from picollm.plots import SLIDE, model_styles, plt, save, tokens_axis
from picollm.plots.loss_curves import over_seeds, read_metrics

LINESTYLES = ["-", "--", ":", "-."]  # runs sharing one schedule draw the same line: dashes keep each visible


def plot(metrics: dict, out, experiment: str, provenance=None, *, x: str = "step") -> None:
    """metrics: {run: {seed: metrics.csv path}}; x: "step" or "tokens_seen"."""
    frame = read_metrics(metrics)
    styles = model_styles(list(metrics))
    fig, ax = plt.subplots(figsize=SLIDE)
    for i, (name, group) in enumerate(frame.groupby("model", sort=False)):
        rows = over_seeds(group, "lr")
        ax.plot(rows[x], rows["mean"], color=styles[name]["color"], ls=LINESTYLES[i % len(LINESTYLES)], lw=3,
                label=f"{name} (peak {rows['mean'].max():.2g}, last {rows['mean'].iloc[-1]:.2g})")
    if x == "tokens_seen":
        tokens_axis(ax)
    ax.set(xlabel="optimizer step" if x == "step" else "tokens seen", ylabel="learning rate", ylim=(0, None),
           title=f"Learning-rate schedule — {experiment}")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:g}"))  # 0.002, not 2 and a 1e-3 apart
    ax.legend(fontsize="small" if len(metrics) > 4 else "medium")
    save(fig, out, experiment, provenance)
