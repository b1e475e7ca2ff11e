"""figures/p_sweep.png: diversity, repetition, length and self-likelihood of samples against nucleus p.

One line per run over the p values in eval/sampling.csv (the config's sampling.p_values, plus any denser
sweep the evaluate stage drew), the p values evenly spaced so that close ones (0.95, 1) stay readable,
and greedy decoding, the p -> 0 limit, one slot to their left. Each point is the mean over the run's
seeds with an error bar of ± 1 std over seeds (none for one seed). Runs are dodged sideways and drawn
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


def seed_means(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run and decoding: p, the mean and std over seeds (<column>_std) of every panel's measure,
    samples per seed and how many seeds. A sampling.csv without run and seed columns is one seed per model."""
    if "run" not in frame:
        frame = frame.assign(run=frame["model"])
    if "seed" not in frame:
        frame = frame.assign(seed=0)
    columns = [c for c, _ in PANELS]
    groups = frame.groupby(["run", "decoding"], sort=False, dropna=False)
    out = groups[columns].mean().join(groups[columns].std().add_suffix("_std"))
    out = out.join(groups.agg(p=("p", "first"), samples=("samples", "max"), seeds=("seed", "nunique")))
    return out.reset_index()


def plot(sampling_csv, out, experiment: str, provenance=None, *, dodge: float = 0.12) -> None:
    raw = pd.read_csv(sampling_csv)
    frame = seed_means(raw)
    runs = list(dict.fromkeys(frame["run"]))
    styles = model_styles(runs)
    greedy = frame["decoding"] == "greedy"
    p_values = sorted(frame.loc[~greedy, "p"].unique())
    frame["slot"] = frame["p"].map({p: i + 1 for i, p in enumerate(p_values)}).where(~greedy, 0)
    dodge = min(dodge, 0.8 / len(runs))  # many runs still fit between two p slots
    fig, axes = plt.subplots(2, 3, figsize=SLIDE, sharex=True, layout="constrained")
    for ax, (column, title) in zip(axes.flat, PANELS):
        for i, name in enumerate(runs):
            rows = frame[frame["run"] == name].sort_values("slot")
            x = rows["slot"] + (i - (len(runs) - 1) / 2) * dodge
            style = dict(marker=styles[name]["marker"], color=styles[name]["color"], capsize=3, elinewidth=1.5)
            for part, line in [(rows["decoding"] != "greedy", dict(ls="-", ms=8, lw=2, alpha=0.8, label=name)),
                               (rows["decoding"] == "greedy", dict(ls="none", ms=11, mec="black", mew=1.2,
                                                                   alpha=0.9))]:
                ax.errorbar(x[part], rows.loc[part, column], yerr=rows.loc[part, f"{column}_std"].fillna(0),
                            **style, **line)
        ax.set_title(title, fontsize="medium")
        slot_axis(ax, p_values)
    for ax in axes[1]:
        ax.set_xlabel("nucleus p (evenly spaced)", fontsize="small")
    axes.flat[0].plot([], [], ls="none", marker="o", ms=11, color="0.8", mec="black", mew=1.2, label="greedy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    order = [*range(1, len(labels)), 0]  # the runs (error-bar containers) first, then the greedy key;
    # the legend starts at the left, leaving the lower right corner to the experiment stamp
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower left",
               ncols=min(len(labels), 5), fontsize="small" if len(runs) <= 4 else "x-small")
    runs_tokens = dict(zip(raw.get("run", raw["model"]), raw["train_tokens"])) if "train_tokens" in raw else {}
    tokens = train_tokens_note(runs_tokens) if runs_tokens else ""
    n = int(frame["samples"].max()) if len(frame) else 0
    seeds = int(frame["seeds"].max()) if len(frame) else 0
    spread = f"mean over up to {seeds} seeds, bars ± 1 std over seeds" if seeds > 1 else "one seed per run"
    fig.suptitle(f"Sampling measures against nucleus p — {experiment}, {tokens}\n"
                 f"up to {n} samples per point and seed; {spread}", fontsize="medium")
    save(fig, out, experiment, provenance)
