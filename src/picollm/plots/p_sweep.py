"""figures/p_sweep.png: diversity, repetition, length, story endings, English words and self-likelihood of
samples against nucleus p, read against real validation stories.

One line per run over the p values in eval/sampling.csv (the config's sampling.p_values, plus any denser
sweep the evaluate stage drew), the p values evenly spaced so that close ones (0.95, 1) stay readable,
and greedy decoding, the p -> 0 limit, one slot to their left. Each point is the mean over the run's
seeds with an error bar of ± 1 std over seeds (none for one seed). Runs are dodged sideways and drawn
with their own markers, so equal values do not hide one another. The reference rows (real validation stories
cut to the samples' length) are a dashed grey line across each panel, in a band of ± 1 std over their draws.
"""
from __future__ import annotations

import math

import pandas as pd

from picollm.plots import SLIDE, model_styles, plt, save
from picollm.tables import run_order, train_tokens_note

PANELS = [("distinct_1", "distinct-1 (unique tokens)"), ("distinct_2", "distinct-2 (token bigrams)"),
          ("distinct_3", "distinct-3 (token trigrams)"), ("rep_4", "repeated 4-grams in a sample"),
          ("english_word_share", "words in an English word list"),
          ("ended_share", "stories ended (end-of-text\nwithin max_new_tokens)"),
          ("mean_tokens", "sample length (tokens)"), ("mean_words", "sample length (words)"),
          ("mean_loglik", "own-sample log-likelihood\n(nats/token)")]
REFERENCE = "reference"  # the decoding of real validation stories' rows (picollm.sample_metrics.REFERENCE)
NOT_ENGLISH = "not applicable:\nthe study's text\nis not English"
NO_ENDS = " (no reference)"  # after the panel's title; the figure's title says why (NO_ENDS_WHY)
NO_ENDS_WHY = "no validation-text line for lengths and endings: that text marks no story ends"
# the reference has no model (no log-likelihood) and, for a text that is not English, no English words: any other
# measure it leaves empty is a length or ending of a text without story ends (picollm.sample_metrics.UNENDED)
NO_REFERENCE = ("mean_loglik", "english_word_share")
REFERENCE_STYLE = dict(color="0.3", ls="--", lw=2, zorder=1.5)
REFERENCE_LABEL = "validation text"  # excerpts of the validation split's stories, cut to the samples' length


def excerpts(n: int) -> str:
    return f"{n} excerpt{'' if n == 1 else 's'}"


def slot_axis(ax, p_values: list[float]) -> None:
    """x ticks: greedy at 0, then each p value at 1, 2, ... (every other label past 8 values)."""
    step = 1 if len(p_values) <= 8 else 2
    ticks = [0, *range(1, len(p_values) + 1, step)]
    ax.set_xticks(ticks, ["greedy", *(f"{p:g}" for p in p_values[::step])])
    ax.tick_params(axis="x", labelsize="small", labelrotation=45 if len(ticks) > 6 else 0)
    ax.axvline(0.5, color="0.6", ls=":", lw=1.5)  # greedy is not on the p scale


def seed_means(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run and decoding: p, the mean and std over seeds (<column>_std) of every panel's measure,
    samples per seed and how many seeds. A sampling.csv without run and seed columns is one seed per model;
    a measure it lacks is NaN."""
    if "run" not in frame:
        frame = frame.assign(run=frame["model"])
    if "seed" not in frame:
        frame = frame.assign(seed=0)
    columns = [c for c, _ in PANELS]
    frame = frame.assign(**{c: math.nan for c in columns if c not in frame})
    groups = frame.groupby(["run", "decoding"], sort=False, dropna=False)
    out = groups[columns].mean().join(groups[columns].std().add_suffix("_std"))
    out = out.join(groups.agg(p=("p", "first"), samples=("samples", "max"), seeds=("seed", "nunique")))
    return out.reset_index()


def draw_reference(ax, reference: pd.DataFrame, column: str, measured: bool = True) -> str:
    """The real stories' value as a dashed line across the panel, ± 1 std over its draws as a band. Returns a
    note for the panel's title: for a length or ending measure the reference left empty (`measured`:
    sampling.csv has the column), why there is no line."""
    if reference.empty or pd.isna(reference[column].iloc[0]):
        return NO_ENDS if not reference.empty and measured and column not in NO_REFERENCE else ""
    mean, std = reference[column].iloc[0], reference[f"{column}_std"].iloc[0]
    if std > 0:
        ax.axhspan(mean - std, mean + std, color="0.5", alpha=0.15, lw=0, zorder=1)
    ax.axhline(mean, **REFERENCE_STYLE)
    return ""


def figure(sampling_csv, experiment: str, dodge: float = 0.12):
    raw = pd.read_csv(sampling_csv)
    means = seed_means(raw)
    is_reference = means["decoding"] == REFERENCE
    reference, frame = means[is_reference], means[~is_reference].copy()
    runs = run_order(frame["run"])
    styles = model_styles(runs)
    greedy = frame["decoding"] == "greedy"
    p_values = sorted(frame.loc[~greedy, "p"].unique())
    frame["slot"] = frame["p"].map({p: i + 1 for i, p in enumerate(p_values)}).where(~greedy, 0)
    dodge = min(dodge, 0.8 / len(runs))  # many runs still fit between two p slots
    fig, axes = plt.subplots(3, 3, figsize=SLIDE, sharex=True, layout="constrained")
    unended = False
    for ax, (column, title) in zip(axes.flat, PANELS):
        note = draw_reference(ax, reference, column, measured=column in raw)
        for i, name in enumerate(runs):
            rows = frame[frame["run"] == name].sort_values("slot")
            x = rows["slot"] + (i - (len(runs) - 1) / 2) * dodge
            style = dict(marker=styles[name]["marker"], color=styles[name]["color"], capsize=3, elinewidth=1.5)
            for part, line in [(rows["decoding"] != "greedy", dict(ls="-", ms=7, lw=2, alpha=0.8, label=name)),
                               (rows["decoding"] == "greedy", dict(ls="none", ms=9, mec="black", mew=1.2,
                                                                   alpha=0.9))]:
                ax.errorbar(x[part], rows.loc[part, column], yerr=rows.loc[part, f"{column}_std"].fillna(0),
                            **style, **line)
        if column == "english_word_share" and column in raw and means[column].isna().all():
            ax.text(0.5, 0.5, NOT_ENGLISH, transform=ax.transAxes, ha="center", va="center", fontsize="small",
                    color="0.35")
            ax.set_yticks([])
        ax.margins(y=0.15)  # a reference line at the edge of the data stays off the frame
        ax.set_title(title + note, fontsize="small")
        unended = unended or bool(note)
        ax.tick_params(axis="y", labelsize="x-small")
        slot_axis(ax, p_values)
    for ax in axes[-1]:
        ax.set_xlabel("nucleus p (evenly spaced)", fontsize="small")
    key = axes.flat[0]
    key.plot([], [], ls="none", marker="o", ms=9, color="0.8", mec="black", mew=1.2, label="greedy")
    if not reference.empty:
        band = ", ± 1 std" if reference["seeds"].max() > 1 else ""
        key.plot([], [], **REFERENCE_STYLE, label=f"{REFERENCE_LABEL} ({excerpts(int(reference['samples'].max()))}{band})")
    handles, labels = key.get_legend_handles_labels()
    # the runs (error-bar containers) first, then the greedy and reference keys (lines, listed first by
    # matplotlib)
    keys = len(labels) - len(runs)
    order = [*range(keys, len(labels)), *range(keys)]
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower left",
               ncols=min(len(labels), 5), fontsize="small" if len(runs) <= 4 else "x-small")
    runs_tokens = dict(zip(raw.get("run", raw["model"]), raw["train_tokens"])) if "train_tokens" in raw else {}
    tokens = train_tokens_note(runs_tokens) if runs_tokens else ""
    n = int(frame["samples"].max()) if len(frame) else 0
    seeds = int(frame["seeds"].max()) if len(frame) else 0
    spread = f"mean over up to {seeds} seeds, bars ± 1 std over seeds" if seeds > 1 else "one seed per run"
    why = f"\n{NO_ENDS_WHY}" if unended else ""
    fig.suptitle(f"Sampling measures against nucleus p — {experiment}, {tokens}\n"
                 f"up to {n} samples per point and seed; {spread}{why}", fontsize="medium")
    return fig


def plot(sampling_csv, out, experiment: str, provenance=None, *, dodge: float = 0.12) -> None:
    save(figure(sampling_csv, experiment, dodge), out, experiment, provenance)
