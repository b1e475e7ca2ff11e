"""figures/p_sweep.png: diversity, repetition, length and self-likelihood of samples against nucleus p.

One line per model over the p values in eval/sampling.csv (the config's sampling.p_values, plus any denser
sweep the evaluate stage drew); greedy decoding, the p -> 0 limit, is the star at the left edge.
"""
from __future__ import annotations

import pandas as pd
import seaborn as sns

from picollm.plots import plt, save
from picollm.tables import train_tokens_note

PANELS = [("distinct_1", "distinct-1 (unique tokens / tokens)"), ("distinct_2", "distinct-2 (token bigrams)"),
          ("distinct_3", "distinct-3 (token trigrams)"), ("rep_4", "repeated token 4-grams within a sample"),
          ("mean_loglik", "mean log-likelihood of own samples\n(nats/token)"),
          ("mean_tokens", "mean sample length (tokens)")]


def plot(sampling_csv, out, experiment: str, provenance=None) -> None:
    frame = pd.read_csv(sampling_csv)
    models = list(dict.fromkeys(frame["model"]))
    palette = dict(zip(models, sns.color_palette("tab10", len(models))))
    sweep = frame[frame["decoding"] != "greedy"].sort_values("p")
    greedy = frame[frame["decoding"] == "greedy"]
    p_values = sorted(sweep["p"].unique())
    greedy_x = 0.0 if not p_values else min(0.0, p_values[0] - 0.1)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, (column, label) in zip(axes.flat, PANELS):
        for name in models:
            rows = sweep[sweep["model"] == name]
            ax.plot(rows["p"], rows[column], "o-", color=palette[name], ms=4, lw=1.5, label=name)
            g = greedy[greedy["model"] == name]
            ax.plot([greedy_x] * len(g), g[column], "*", color=palette[name], ms=12, mec="black", mew=0.5)
        ax.set_title(label, fontsize=9)
        ticks = p_values if len(p_values) <= 8 else [0.25, 0.5, 0.75, 1.0]  # a dense sweep: round ticks
        ax.set_xticks([greedy_x, *ticks])
        ax.set_xticklabels(["greedy", *(f"{p:g}" for p in ticks)], fontsize=8, rotation=45)
        ax.set_xlabel("nucleus p", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].plot([], [], "*", color="0.5", ms=12, mec="black", mew=0.5, label="greedy")
    axes.flat[0].legend(fontsize=8)
    tokens = train_tokens_note(dict(zip(frame["model"], frame["train_tokens"]))) if "train_tokens" in frame else ""
    n = int(frame["samples"].max()) if len(frame) else 0
    fig.suptitle(f"Sampling measures against nucleus p — {experiment}, {tokens} (up to {n} samples per point)",
                 fontsize=10)
    fig.tight_layout()
    save(fig, out, experiment, provenance)
