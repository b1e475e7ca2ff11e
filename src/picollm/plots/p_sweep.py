"""figures/p_sweep.png: diversity, repetition, length and self-likelihood of samples against nucleus p.

One line per model over the p values in eval/sampling.csv (the config's sampling.p_values, plus any denser
sweep the evaluate stage drew), the p values evenly spaced so that close ones (0.95, 1) stay readable,
and greedy decoding, the p -> 0 limit, one slot to their left. Models are dodged sideways and drawn
with their own markers, so equal values do not hide one another.
"""
from __future__ import annotations

import pandas as pd

from picollm.plots import SLIDE, model_styles, plt, save
from picollm.tables import train_tokens_note

PANELS = [("distinct_1", "distinct-1 (unique tokens)"), ("distinct_2", "distinct-2 (token bigrams)"),
          ("distinct_3", "distinct-3 (token trigrams)"), ("rep_4", "repeated 4-grams in a sample"),
          ("mean_loglik", "own-sample log-likelihood\n(nats/token)"), ("mean_tokens", "sample length (tokens)")]


def slot_axis(ax, p_values: list[float]) -> None:
    """x ticks: greedy at 0, then each p value at 1, 2, ... (every other label past 8 values)."""
    step = 1 if len(p_values) <= 8 else 2
    ticks = [0, *range(1, len(p_values) + 1, step)]
    ax.set_xticks(ticks, ["greedy", *(f"{p:g}" for p in p_values[::step])])
    ax.tick_params(axis="x", labelsize="small", labelrotation=45 if len(ticks) > 6 else 0)
    ax.axvline(0.5, color="0.6", ls=":", lw=1.5)  # greedy is not on the p scale


def plot(sampling_csv, out, experiment: str, provenance=None, *, dodge: float = 0.12) -> None:
    frame = pd.read_csv(sampling_csv)
    models = list(dict.fromkeys(frame["model"]))
    styles = model_styles(models)
    greedy = frame["decoding"] == "greedy"
    p_values = sorted(frame.loc[~greedy, "p"].unique())
    frame["slot"] = frame["p"].map({p: i + 1 for i, p in enumerate(p_values)}).where(~greedy, 0)
    fig, axes = plt.subplots(2, 3, figsize=SLIDE, sharex=True, layout="constrained")
    for ax, (column, title) in zip(axes.flat, PANELS):
        for i, name in enumerate(models):
            rows = frame[frame["model"] == name].sort_values("slot")
            x = rows["slot"] + (i - (len(models) - 1) / 2) * dodge
            sweep, g = rows["decoding"] != "greedy", rows["decoding"] == "greedy"
            ax.plot(x[sweep], rows.loc[sweep, column], ls="-", marker=styles[name]["marker"], ms=8, lw=2,
                    color=styles[name]["color"], alpha=0.8, label=name)
            ax.plot(x[g], rows.loc[g, column], ls="none", marker=styles[name]["marker"], ms=11,
                    color=styles[name]["color"], mec="black", mew=1.2, alpha=0.9)
        ax.set_title(title, fontsize="medium")
        slot_axis(ax, p_values)
    for ax in axes[1]:
        ax.set_xlabel("nucleus p (evenly spaced)", fontsize="small")
    axes.flat[0].plot([], [], ls="none", marker="o", ms=11, color="0.8", mec="black", mew=1.2, label="greedy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    tokens = train_tokens_note(dict(zip(frame["model"], frame["train_tokens"]))) if "train_tokens" in frame else ""
    n = int(frame["samples"].max()) if len(frame) else 0
    fig.suptitle(f"Sampling measures against nucleus p — {experiment}, {tokens}, up to {n} samples per point",
                 fontsize="medium")
    save(fig, out, experiment, provenance)
