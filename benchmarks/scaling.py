"""The scaling study, config/scaling.yaml, run whole on this machine: its wall time, and its result.

`snakemake --cores N all --configfile config/scaling.yaml` in a temporary --directory (the study reads the local
TinyStories files in ../shared/tinystories), timed end to end, with the CPU the rest of the machine used
meanwhile; its figure is kept as <out>/scaling.png. The record holds the fitted exponents with their intervals, whether the frontiers cross, the
compute-matched comparisons, and where each run starts to repeat its training text (the local files are small).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.common import REPO, Sizes
from benchmarks.study import LAST_RUN, TINYSTORIES_TRAIN, snakemake
from picollm.data.check import read_meta
from picollm.scaling import read_crossings, with_interval

TITLE = "The scaling study (config/scaling.yaml)"
CONFIG = REPO / "config" / "scaling.yaml"


def unavailable(sz: Sizes):
    if not TINYSTORIES_TRAIN.is_file():
        return f"scaling: skipped, {TINYSTORIES_TRAIN} is absent (the study reads the local TinyStories files)", False
    return None


def crossing_text(r, other: str) -> str:
    """'lstm at 2.7e+11 and 3.4e+11 FLOPs (the last's 95% CI 1.2e+11 to 6e+11; the same type ends ahead in 87% of
    seed redraws)', from a tables/scaling.csv row as read back (a single crossing reads as a number), or '' where
    its frontier does not cross other's."""
    found = read_crossings(r, other)
    if not found:
        return ""
    low, high, agree = (r.get(f"crosses_{other}_{end}", float("nan")) for end in ("ci_low", "ci_high", "same_order"))
    which = "the last's " if len(found) > 1 else ""
    said = [f"{which}95% CI {low:.3g} to {high:.3g}"] if low == low else []
    said += [f"the same type ends ahead in {agree:.0%} of seed redraws"] if agree == agree else []
    return f"{other} at {' and '.join(f'{c:.3g}' for c in found)} FLOPs" + (f" ({'; '.join(said)})" if said else "")


def fit_table(fits: pd.DataFrame) -> dict:
    others = [c.removeprefix("crosses_").removesuffix("_at_flops") for c in fits.columns
              if c.startswith("crosses_") and c.endswith("_at_flops")]
    rows = []
    for _, r in fits.iterrows():
        crossing = "; ".join(filter(None, (crossing_text(r, other) for other in others if other != r["type"]))) \
            or "none"
        fitted = bool(r["fitted"])
        rows.append([r["type"], int(r["runs"]), int(r["fit_points"]),
                     with_interval(r, "alpha", ".3f") if fitted else "no fit", with_interval(r, "E", ".3f") if fitted else "",
                     crossing])
    return {"columns": ["type", "runs", "frontier points fitted", "alpha [95% CI]", "E bpb [95% CI]",
                        "frontier crosses"], "rows": rows}


def repeats(results: Path) -> list[list]:
    """Per run: FLOPs per token, tokens trained, epochs over the training split, and the compute of one epoch."""
    split = read_meta(results / "data" / "tokens" / "meta.json").splits.train.tokens
    ev = pd.read_csv(results / "tables" / "eval.csv")
    ev = ev[ev["source"] == "all"].sort_values(["type", "params"])
    return [[r.run, f"{r.flops_per_token:,}", f"{r.train_tokens:,}", f"{r.train_tokens / split:.2f}",
             f"{r.flops_per_token * split:.3g}", f"{r.bpb_mean:.4f}"] for r in ev.itertuples()]


def record(results: Path, wall_s: float, others_cores, command: str) -> dict:
    """The record of a finished scaling study in `results` (results/<experiment>)."""
    fits = pd.read_csv(results / "tables" / "scaling.csv")
    compare = pd.read_csv(results / "tables" / "compare.csv")
    train_tokens = read_meta(results / "data" / "tokens" / "meta.json").splits.train.tokens
    best = compare[compare["verdict"] != "within noise"]
    notes = [f"Wall time {wall_s / 60:.1f} min for the whole study (data, tokenizer, {len(fits)} model types, "
             f"every run and seed, tables, figures, report); other processes used {others_cores} cores on average "
             f"meanwhile.",
             f"The training split holds {train_tokens:,} tokens: every run that trains on more "
             f"repeats its training text (epochs > 1 below), from the compute of one epoch on."]
    budgets = sorted(compare["flops_budget"].dropna().unique())
    notes += [f"Compute-matched (same train.flops), seed-paired differences that exclude zero: {len(best)} of "
              f"{len(compare)} pairs" + (f" at {', '.join(f'{b:g}' for b in budgets)} FLOPs." if budgets else ".")]
    notes += [s for s in best["statement"] if ".d_model=" not in s and ".hidden_dim=" not in s]  # base models only
    return {"title": TITLE, "results": {"wall_s": round(wall_s, 1), "other_processes_cores": others_cores,
                                        "fits": fits.to_dict(orient="records")},
            "command": command, "targets": [{"target": "whole study within 60 minutes", "value": round(wall_s / 60, 1),
                                             "display": f"{wall_s / 60:.1f} min", "met": wall_s <= 3600}],
            "table": fit_table(fits), "notes": notes,
            "repeats": {"columns": ["run", "FLOPs per token", "tokens trained", "epochs", "FLOPs of one epoch",
                                    "final bpb (whole split, mean over seeds)"], "rows": repeats(results)}}


def local_copy(work: Path) -> Path:
    """config/scaling.yaml with its base chain merged and its data paths made absolute: the study's paths are
    relative to the project root, and the benchmark runs in an empty --directory."""
    from picollm.config.load import read_study_file
    study = read_study_file(CONFIG)
    for source in study["data"]["sources"]:
        for key in ("train_files", "val_files"):
            source[key] = [str((REPO / f).resolve()) for f in source.get(key, [])]
    path = work / "scaling.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def run(sz: Sizes, peak: dict) -> dict:
    if sz.quick:
        return {"title": TITLE, "results": {}, "skipped": "--quick: the study run is skipped", "targets": [],
                "notes": ["Skipped with --quick."], "table": {"columns": [], "rows": []}}
    work = Path(tempfile.mkdtemp(prefix="picollm-bench-scaling-"))
    try:
        wall = snakemake(local_copy(work), work, sz.threads)
        command = f"snakemake --cores {sz.threads} all --configfile config/scaling.yaml (in an empty directory)"
        results = work / "results" / "scaling"
        # the figure docs/scaling.md shows beside the record: cp <out>/scaling.png docs/img/scaling.png
        shutil.copy(results / "figures" / "scaling.png", Path(sz.out) / "scaling.png")
        return record(results, wall, LAST_RUN.get("others_cores"), command)
    finally:
        shutil.rmtree(work, ignore_errors=True)
