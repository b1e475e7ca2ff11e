"""figures/resources.png: where the study's time went, from tables/resources.csv (every job's benchmark file).

Two panels, one bar per stage in pipeline order (every figure_* rule is one stage, "figures"): the jobs'
wall-clock seconds and their CPU seconds, summed. A bar is split by run for the stages that run once per run
and seed (train, sample, evaluate: the sum over seeds), in the run's colour of every other figure; study-wide
jobs are grey. Each bar ends with its total, and the CPU panel's with the peak memory of the stage's largest
job. CPU and memory are what each job counted (its provenance record); where Snakemake's samples stand in for
them (a job that wrote no record), the stage's CPU seconds say "at least", and a stage whose jobs ended before
Snakemake first sampled them says so rather than showing 0. Jobs run side by side, so the
wall-clock bars add up to more than the study took.
"""
from __future__ import annotations

import matplotlib.ticker
import numpy as np
import pandas as pd

from picollm.plots import SLIDE, model_styles, plt, save
from picollm.tables import run_order

# the pipeline's order; a stage not named here comes after these, alphabetically
STAGES = ["download", "train_tokenizer", "tokenize", "train", "sample", "sampling_reference", "evaluate", "snapshots",
          "tables", "eval_tables", "scaling", "figures", "provenance_table", "export"]
STUDY_WIDE = "study-wide jobs"
GREY = "0.65"


def stage_of(rule: str) -> str:
    return "figures" if rule.startswith("figure_") else rule


def seconds(value: float) -> str:
    return f"{value:,.1f} s" if value < 100 else f"{value:,.0f} s"


def by_stage(frame: pd.DataFrame, column: str, stages: list, who: list) -> pd.DataFrame:
    """{stage x run (or STUDY_WIDE)}: the sum of `column` (a job that NA left unmeasured counts 0)."""
    table = frame.pivot_table(index="stage", columns="who", values=column, aggfunc="sum", fill_value=0.0)
    return table.reindex(index=stages, columns=who, fill_value=0.0).fillna(0.0)


def bar_note(column: str, total: float, sampled: bool, peak: float) -> str:
    """The text at a bar's end: its seconds, and on the CPU panel the stage's peak memory."""
    if column != "cpu_s":
        return seconds(total)
    if total == 0:  # Snakemake samples a job's CPU and memory now and then
        return "ended before it was sampled"
    note = f"at least {seconds(total)} (sampled)" if sampled else seconds(total)  # samples miss the last seconds
    return note + (f", peak {peak:,.0f} MiB" if peak >= 1 else "")  # under 1 MiB: a sample of the job's shell alone


def figure(path, experiment: str):
    """The figure plot() saves."""
    frame = pd.read_csv(path)
    frame["stage"] = frame["rule"].map(stage_of)
    # a job of one run and seed; a per-seed job of no run (the reference samples) is study-wide
    frame["who"] = np.where(frame["seed"].notna() & frame["run"].notna(), frame["run"].astype(str), STUDY_WIDE)
    stages = sorted(frame["stage"].unique(), key=lambda s: (STAGES.index(s) if s in STAGES else len(STAGES), s))
    runs = run_order(frame.loc[frame["who"] != STUDY_WIDE, "who"])
    who = [*runs, STUDY_WIDE]
    colors = {**{r: style["color"] for r, style in model_styles(runs).items()}, STUDY_WIDE: GREY}
    peak = frame.groupby("stage")["max_rss_mib"].max().reindex(stages)
    # a stage with a job whose CPU and memory only Snakemake's samples measured (it wrote no usage of its own)
    measured_by = frame.get("measured_by", pd.Series("snakemake samples", index=frame.index))
    sampled = (~measured_by.str.startswith("job")).groupby(frame["stage"]).any().reindex(stages)

    fig, axes = plt.subplots(1, 2, figsize=SLIDE, sharey=True, layout="constrained")
    y = np.arange(len(stages))
    for ax, column, label in zip(axes, ("wall_s", "cpu_s"), ("wall-clock seconds", "CPU seconds")):
        table = by_stage(frame, column, stages, who)
        left = np.zeros(len(stages))
        for name in who:
            ax.barh(y, table[name], left=left, color=colors[name], label=name if column == "wall_s" else None)
            left += table[name].to_numpy()
        for i, total in enumerate(left):
            ax.text(total, i, f" {bar_note(column, total, sampled.iloc[i], peak.iloc[i])}", va="center",
                    fontsize="x-small")
        ax.set_xlim(0, left.max() * (1.45 if column == "wall_s" else 1.8) or 1)  # room for the notes at the bars' ends
        ax.set(xlabel=label, title=f"{label}: {seconds(left.sum())} in all")
        ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))  # as the notes: 1,378 s
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(y, stages)
    axes[0].invert_yaxis()  # the pipeline reads top to bottom
    fig.suptitle(f"Where the time went — {experiment}, {len(frame)} jobs (they overlap when run in parallel)",
                 fontsize="medium")
    fig.legend(loc="outside lower center", ncol=min(len(who), 4), fontsize="small")
    return fig


def plot(path, out, experiment: str, provenance=None) -> None:
    """path: tables/resources.csv."""
    save(figure(path, experiment), out, experiment, provenance)
