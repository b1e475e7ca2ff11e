"""Tables rebuilt from files on disk: samples, the per-model summary, evaluation over seeds with confidence
intervals, paired comparisons of runs, and the sampling measures."""
from __future__ import annotations

import csv
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from picollm.commands import seed_keyed
from picollm.errors import PicoError
from picollm.io import atomic_path, write_csv, write_text
from picollm.stats import paired_difference, t_interval


def run_order(runs) -> list[str]:
    """Runs in the order every figure draws and colours them, whatever order its input file lists them in (a
    {run: path} mapping travels as sorted JSON, a table in the study's order): the models first, then the sweep
    points (<model>.<key>=<value>), each by name with numbers compared as numbers (d_model=32 before 128)."""
    def key(run: str):
        chunks = re.split(r"(\d+)", run)
        return "." in run, [int(c) if i % 2 else c for i, c in enumerate(chunks)]
    return sorted(dict.fromkeys(runs), key=key)


def read_samples(paths) -> pd.DataFrame:
    """Every record of the sample stage's files, each with the training seed its path names (train_seed; a
    record's own `seed` is its sampling seed)."""
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            rows.extend({**json.loads(line), "train_seed": path_seed(path)} for line in fh if line.strip())
    frame = pd.DataFrame(rows)
    frame["decoding"] = frame["decoding"].map(lambda d: d if d == "greedy" else f"p={float(d):g}")
    return frame


def path_seed(path) -> int | None:
    """The training seed a run's file is of, from its path (models/<run>/seed<k>/..., samples/<run>/seed<k>.jsonl)."""
    found = re.findall(r"seed(\d+)", str(path))
    return int(found[-1]) if found else None


def seed_note(seeds) -> str:
    """'training seed 1337' (or 'seeds 1337, 1338'): which trained model a table or figure of one seed shows."""
    seeds = sorted(set(pd.to_numeric(pd.Series(list(seeds), dtype=object), errors="coerce").dropna().astype(int)))
    if not seeds:
        return "training seed unknown"
    return f"training seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


# Signs for whitespace a reader cannot see in a table cell; every glyph is in matplotlib's DejaVu Sans.
WHITESPACE_SIGNS = {"\n": "⏎", "\t": "→", "\r": "⇤"}


def show_whitespace(text: str) -> str:
    r"""Whitespace made visible: ⏎ newline, → tab, ⇤ carriage return, ␣ any other whitespace character and
    each space of a run of two or more (a single space between words, or before a continuation's first word,
    stays a space), so that HTML or Markdown cannot collapse it.

    show_whitespace("\n\n\nThe  end") == "⏎⏎⏎The␣␣end"
    """
    text = re.sub(r" {2,}|^ +$", lambda m: "␣" * len(m.group()), str(text))
    return re.sub(r"[^\S ]", lambda m: WHITESPACE_SIGNS.get(m.group(), "␣"), text)


# What each sign in a shown sample stands for. The first two read any sample; the others are named only where
# a figure's text holds them (an untrained model's bytes, a character cut between two tokens).
SIGN_MEANINGS = {"⏎": "newline", "␣": "extra space", "→": "tab", "⇤": "carriage return",
                 "\ufffd": "bytes that are not UTF-8", "\\xNN": "control character"}


def sign_key(shown_texts) -> str:
    """The key to the signs of `shown_texts` (text as a figure draws it): "⏎ newline, ␣ extra space", then
    any other sign they hold, e.g. "� bytes that are not UTF-8" (\\xNN: any escape \\x00 to \\x7f)."""
    held = "".join(map(str, shown_texts))
    return ", ".join(f"{sign} {meaning}" for i, (sign, meaning) in enumerate(SIGN_MEANINGS.items())
                     if i < 2 or sign[:2] in held)


# What an empty sample means: sampling cuts a sample at its first end-of-text, and every token decodes to at
# least one byte, so a sample is empty only when the model ended the story at once.
ENDED_AT_ONCE = "ended at once (end-of-text)"


CELL_WIDTH = 240  # characters of a sample in a Markdown cell


def cell(text: str, show=show_whitespace, width: int = CELL_WIDTH) -> str:
    """A sample in a Markdown table's cell: `show`n (whitespace made visible), cut at `width` characters."""
    text = show(text)
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("|", "\\|") or ENDED_AT_ONCE


def shown_text(text: str) -> str:
    """A sample as a table shows it: whitespace made visible, and an empty one said to have ended at once."""
    return show_whitespace(text) or ENDED_AT_ONCE


def samples_table(paths, out_csv, out_md, experiment: str) -> pd.DataFrame:
    """Every model x decoding x prompt: CSV with every sample, Markdown with the first of each.

    `text` is the sample exactly; `shown` is it with whitespace made visible (HTML and Markdown collapse
    runs of whitespace, so a sample of newlines would read as empty; an empty sample says it ended at once)
    and `newlines` counts its line breaks.
    """
    frame = read_samples(paths)
    frame["newlines"] = frame["text"].str.count("\n")
    frame["shown"] = frame["text"].map(shown_text)
    columns = ["model", "train_seed", "train_tokens", "prompt", "decoding", "sample", "seed", "new_tokens", "newlines",
               "shown", "text"]
    with atomic_path(out_csv) as tmp:
        # quote every text field: a sample may hold any character, a bare carriage return included
        frame[columns].to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC)
    write_text(out_md, samples_markdown(frame, experiment))
    return frame


def samples_markdown(frame: pd.DataFrame, experiment: str) -> str:
    """One table per prompt, one row per decoding and model (first sample), whitespace shown as signs."""
    first = frame[frame["sample"] == 0]
    tokens = train_tokens_note(dict(zip(frame["model"], frame["train_tokens"])))
    seeds = f", {seed_note(frame['train_seed'])}" if "train_seed" in frame else ""  # read_samples adds it
    lines = [f"# Samples: experiment `{experiment}`, {tokens}{seeds}", "",
             "First sample of each model and decoding (all samples in samples.csv); `text` is the "
             f"continuation of the prompt in its section's heading, cut at {CELL_WIDTH} characters with “…” "
             f"(samples.csv holds every sample whole). Signs in the text: {sign_key(first['text'].map(cell))} (a space that would "
             f"not show); `newlines` counts the line breaks in the continuation; “{ENDED_AT_ONCE}” marks a sample "
             "whose first new token was end-of-text.", ""]
    for prompt, group in first.groupby("prompt", sort=False):
        lines += [f"## Prompt: “{show_whitespace(prompt)}”", "",
                  "| decoding | model | new tokens | newlines | text |", "|---|---|--:|--:|---|"]
        lines += [f"| {r.decoding} | {r.model} | {r.new_tokens} | {r.newlines} | {cell(r.text)} |"
                  for r in group.itertuples()]
        lines.append("")
    return "\n".join(lines)


MODEL_COLUMNS = ["model", "type", "params", "params_embedding", "params_head", "head_tied", "params_core",
                 "optimizer", "tokens_seen", "flops_per_token", "train_flops", "steps", "stopped_by", "wall_s",
                 "tokens_per_s", "device", "precision", "final_train_loss", "final_val_loss"]
# models.md's two tables, each led by the model: the outcome (what the notes speak of) narrow enough to read
# without scrolling sideways, then the size and setup; models.csv keeps MODEL_COLUMNS in one table
MODEL_PARTS = {"Training outcome": ["final_train_loss", "final_val_loss", "tokens_seen", "train_flops", "steps",
                                    "wall_s", "tokens_per_s"],
               "Size and setup": ["type", "params", "params_embedding", "params_head", "head_tied", "params_core",
                                  "flops_per_token", "optimizer", "precision", "device", "stopped_by"]}


# How picollm.flops counts, said above models.md's table (the figures' captions say the same).
FLOPS_NOTE = ("flops_per_token: training FLOPs per token counted per architecture (picollm.flops): every matmul, "
              "forward + backward = 3 x forward, the head at its real width, attention over the full block_size "
              "window (not the causal half); train_flops = flops_per_token x tokens_seen.")


# Timings measure the machine as much as the model: its speed and whatever else ran on it at the time.
TIMING_HEADERS = {"wall_s": "wall_s (machine-dependent)", "tokens_per_s": "tokens_per_s (machine-dependent)"}
TIMING_NOTE = ("wall_s and tokens_per_s are machine-dependent: each run's wall-clock time on the machine that "
               "trained it, slowed by whatever else ran there at the time; compare them between runs only when "
               "those shared one otherwise idle machine. wall_s is the training loop's time; tables/resources.csv's "
               "wall_s is the whole job's, its start and the model's build included.")


def models_table(summary_paths, out_md, experiment: str, out_csv=None) -> pd.DataFrame:
    """One row per model: parameters (params = embedding + head + core), tokens seen, wall time, tokens/s,
    device, losses; Markdown (which the report shows as a page, picollm.report_tables), and CSV."""
    rows = [json.loads(Path(p).read_text()) for p in summary_paths]
    rows = [{**row, "optimizer": optimizer(row)} for row in rows]
    frame = pd.DataFrame(rows).reindex(columns=MODEL_COLUMNS)  # a column a summary lacks: blank
    frame = frame.round({"wall_s": 1, "final_train_loss": 4, "final_val_loss": 4})
    frame["tokens_per_s"] = frame["tokens_per_s"].round().astype("Int64")
    frame["steps"] = frame["steps"].astype("Int64")  # a summary without it: blank, not NaN beside counts
    if out_csv is not None:
        write_csv(out_csv, frame)
    note = train_tokens_note(dict(zip(frame["model"], frame["tokens_seen"])))
    parts = "".join(f"## {heading}\n\n" + frame[["model", *columns]].rename(columns=TIMING_HEADERS).to_markdown(
        index=False, floatfmt=".4g", intfmt=",") + "\n\n" for heading, columns in MODEL_PARTS.items())
    seeds = seed_note(path_seed(p) for p in summary_paths)
    text = (f"# Models: experiment `{experiment}`, {seeds}, {note}\n\n"
            "final_val_loss is training's last validation loss, on its train.eval_batches fixed batches, in the "
            "precision it trained in (bf16 rounds it in about the fourth digit; tables/eval.md scores the whole "
            "validation split in fp32, over every seed). params = params_embedding (token "
            "and learned position tables) + params_head (output layer; 0 when tied to the token table) + "
            "params_core (everything else, Kaplan et al.'s non-embedding count). "
            f"{FLOPS_NOTE} steps: the optimizer steps it took; stopped_by: what ended them (max_steps, a flops "
            f"budget, or max_minutes).\n\n{parts}{TIMING_NOTE}\n")
    write_text(out_md, text)
    return frame


def recorded_train(summary: dict) -> dict | None:
    """The train section a run's training job was given, as its summary.json's provenance records it (None
    where it records none)."""
    return ((summary.get("provenance") or {}).get("config") or {}).get("train") or None


def optimizer(summary: dict) -> str | None:
    """A run's optimizer and peak learning rates ("adamw lr 0.002", "muon lr 0.02, adamw lr 0.002"), from the
    config its training job was given: a model's own `train:` gives it a recipe of its own, which a comparison
    of models weighs with the architectures."""
    train = recorded_train(summary)
    if not train:
        return None
    if train.get("optimizer") == "muon":
        return f"muon lr {train['muon_lr']:g}, adamw lr {train['lr']:g}"
    return f"{train.get('optimizer', 'adamw')} lr {train['lr']:g}"


def train_tokens_note(tokens_by_model: dict) -> str:
    """'307,200 training tokens per model', or their range when they differ (as under a FLOP budget): a title
    cannot hold every run's count, which tables/models.csv gives."""
    counts = {m: int(t) for m, t in tokens_by_model.items() if t is not None and t == t}
    if not counts:
        return "training tokens unknown"
    if len(set(counts.values())) == 1:
        return f"{next(iter(counts.values())):,} training tokens per model"
    return f"{min(counts.values()):,} to {max(counts.values()):,} training tokens per model (each: tables/models.csv)"


# eval.csv column prefix: key of an evaluation record (the whole split's, or one source's)
METRICS = {"val_loss": "loss", "perplexity": "perplexity", "bpb": "bpb"}
CI_NOTE = ("Each value is the mean over training seeds ± the half-width of its 95% Student-t confidence interval "
           "(t with n − 1 degrees of freedom over the n seeds: the spread between seeds, not the evaluation's "
           "own sampling error); a run with one seed shows its value alone. (loss_curves.png's legend gives "
           "another ±: 1 standard deviation over seeds of the loss on training's fixed validation subset.)")


def seed_paths(inputs) -> dict:
    """{run: {seed: Path}} with integer seeds in increasing order, from {run: {seed: path}} (the command line
    passes it as JSON, which turns the seeds into strings)."""
    example = """'{"lstm": {"1337": "results/offline/models/lstm/seed1337/metrics.csv"}}'"""
    if not isinstance(inputs, dict) or not all(isinstance(seeds, dict) for seeds in inputs.values()):
        raise PicoError(f"this takes one file per run and seed, {{run: {{seed: path}}}}, not {inputs!r}; give "
                        f"--inputs that JSON, e.g. --inputs {example}")
    return {run: {s: Path(p) for s, p in sorted(seeds.items())} for run, seeds in seed_keyed(inputs).items()}


def read_evals(evals) -> dict:
    """{run: {seed: eval dict}} from {run: {seed: eval/<run>/seed<k>.json}}."""
    return {run: {s: json.loads(p.read_text()) for s, p in seeds.items()} for run, seeds in seed_paths(evals).items()}


def source_records(ev: dict) -> dict:
    """{source: {loss, perplexity, bpb, tokens, bytes}} of one evaluation, `all` (the whole split) first."""
    whole = {"loss": ev["val_loss"], "perplexity": ev["perplexity"], "bpb": ev["bpb"],
             "tokens": ev["val_tokens_scored"], "bytes": ev["val_bytes"]}
    return {"all": whole, **ev.get("sources", {})}


def train_flops(ev: dict) -> int:
    """The evaluation's train_flops (picollm.flops: counted per architecture), else, for an evaluation without
    it, 6 x (core + head parameters) x tokens seen: forward and backward multiply-adds
    (Kaplan et al.); a table lookup multiplies nothing, but a head tied to the token table still multiplies by
    all of it."""
    if ev.get("train_flops") is not None:
        return int(ev["train_flops"])
    head = ev["params_embedding"] if ev.get("head_tied") else ev.get("params_head", 0)
    return int(6 * (ev.get("params_core", ev.get("params_non_embedding", 0)) + head) * (ev["tokens_seen"] or 0))


def eval_rows(runs: dict, experiment: str) -> list[dict]:
    """Rows of eval.csv: per run, `all` and (when there are several) each data source, every measure's
    mean, std and 95% t interval over seeds."""
    rows = []
    for run, by_seed in runs.items():
        first = next(iter(by_seed.values()))
        sweep = first.get("sweep") or {}
        run_columns = {"type": first["type"], "seeds": " ".join(map(str, by_seed)), "params": first["params"],
                       "params_core": first.get("params_core", first.get("params_non_embedding")),
                       "train_tokens": first["tokens_seen"], "flops_per_token": first.get("flops_per_token"),
                       "train_flops": train_flops(first),
                       "sweep_model": sweep.get("model"), "sweep_key": sweep.get("key"),
                       "sweep_value": sweep.get("value"), "tokenizer": first.get("tokenizer")}
        parts = [source_records(ev) for ev in by_seed.values()]
        sources = list(dict.fromkeys(s for part in parts for s in part))
        for source in sources if len(sources) > 2 else ["all"]:  # a single source is the whole split again
            recs = [part[source] for part in parts if source in part]
            row = {"experiment": experiment, "run": run, "source": source, "n_seeds": len(recs), **run_columns}
            for name, key in METRICS.items():
                ci = t_interval([rec[key] for rec in recs])
                row.update({f"{name}_{k}": ci[k] for k in ("mean", "std", "ci_low", "ci_high")})
            row.update(val_tokens=recs[0]["tokens"], val_bytes=recs[0]["bytes"])
            rows.append(row)
    return rows


def plus_minus(mean: float, low: float, high: float) -> str:
    """'2.346 ± 0.012': the half-width to two significant digits and the mean to the same decimals."""
    half = (high - low) / 2
    if not half == half:  # one seed: no interval
        return f"{mean:.4g}"
    decimals = 3 if half == 0 else min(6, max(0, 1 - math.floor(math.log10(half))))
    return f"{mean:,.{decimals}f} ± {half:,.{decimals}f}"


# compare.csv tests every pair of runs at 95% each, uncorrected: a reader weighs one verdict among many.
MULTIPLE_NOTE = ("Each of its verdicts is a 95% interval of its own, not corrected for how many pairs there are: "
                 "among 20 pairs of equally good runs, about one would still read \"better\" by chance; and with "
                 "few seeds the intervals are wide (t with 1 degree of freedom is 12.7).")


def scoring_note(runs: dict) -> str:
    """How eval.md's numbers were scored, as each evaluation says (evaluate.scoring_method), or which runs
    evaluate.max_tokens capped. runs: {run: {seed: eval dict}}."""
    first = {run: next(iter(by_seed.values())) for run, by_seed in runs.items()}
    capped = {run: ev for run, ev in first.items() if any(e.get("val_capped") for e in runs[run].values())}
    if capped:
        return ("Capped by evaluate.max_tokens: " + ", ".join(
            f"{run} {ev['val_tokens_scored']:,} of {ev['val_tokens_in_split']:,} tokens" for run, ev in capped.items())
            + " (whole windows spread evenly over the split).")
    methods = list(dict.fromkeys(ev["method"] for ev in first.values() if ev.get("method")))
    if not methods:  # evaluations that name no method
        return "Whole validation split (non-overlapping windows of block_size plus the tail)."
    return "Scored: " + "; ".join(methods) + "."


def overlap_note(ev: dict) -> str:
    """'' or a sentence naming each source whose validation documents also appear word for word in training."""
    shared = {name: n for name, n in (ev.get("val_documents_in_train") or {}).items() if n.get("in_train")}
    if not shared:
        return ""
    return ("Validation documents that also appear word for word in the training split: " + ", ".join(
        f"{name} {n['in_train']:,} of {n['of']:,} ({n['in_train'] / n['of']:.0%})" for name, n in shared.items())
        + "; there the validation loss partly measures recall of training text, not generalization. ")


def eot_note(runs: dict) -> str:
    """'' or a sentence on the share of the nats spent predicting end-of-text (val_eot_share), which bpb counts
    though the token adds no byte: over every run and seed, as a range."""
    shares = [share for by_seed in runs.values() for ev in by_seed.values()
              if (share := ev.get("val_eot_share")) is not None and not math.isnan(share)]
    if not shares:
        return ""
    if max(shares) < 0.005:  # at most a source's closing end-of-text: the text marks no story ends
        return ("The validation text marks (almost) no story ends: predicting end-of-text takes under 0.5% of the "
                "nats (val_eot_share in each eval JSON), so val_loss and bpb score next to no story endings. ")
    low, high = f"{min(shares):.0%}", f"{max(shares):.0%}"
    span = low if low == high else f"{low} to {high}"
    return (f"Predicting end-of-text (0 bytes of text) takes {span} of the nats (val_eot_share in each eval JSON), "
            f"a cost val_loss and bpb include. ")


def one_budget(runs: dict) -> float | None:
    """The train.flops budget every run trained to (equal compute), else None."""
    budgets = {next(iter(by_seed.values())).get("flops_budget") for by_seed in runs.values()}
    return budgets.pop() if len(budgets) == 1 else None


def budget_note(runs: dict) -> str:
    """'' or 'at a budget of 6e+08 training FLOPs per model, ' when every run trained to one train.flops budget
    (equal compute): the first thing a reader of the table must know."""
    budget = one_budget(runs)
    return "" if budget is None else f"at a budget of {budget:g} training FLOPs per model, "


def budget_prefix(budget) -> str:
    """How a compare.csv sentence of runs under one train.flops budget begins ('at 6e+08 FLOPs: ')."""
    return f"at {budget:g} FLOPs: " if budget is not None else ""


def verdicts_markdown(compare: pd.DataFrame | None, budget=None) -> list[str]:
    """eval.md's closing section: compare.csv's sentences, one a line, those that tell a better run first, so that
    the file a reader opens first says which differences hold up when runs are paired by seed. Under one
    `budget` the heading says it once, for every sentence."""
    if compare is None or not len(compare):
        return []
    ordered = compare.sort_values("verdict", key=lambda v: v == "within noise", kind="stable")
    shown = [s.removeprefix(budget_prefix(budget)) for s in ordered["statement"]]
    heading = "## Paired by seed (compare.csv)" + (f", at {budget:g} training FLOPs each" if budget is not None else "")
    return [heading, "", *(f"- {s}" for s in shown), ""]


def eval_markdown(frame: pd.DataFrame, runs: dict, experiment: str, compare=None) -> str:
    """eval.md: runs sorted by bits per byte, mean ± half-width of the 95% t interval, seeds counted, training
    FLOPs; then the verdicts of `compare` (compare_table's frame), when given."""
    def cells(rows, columns):
        table = pd.DataFrame({"run": rows["run"], **{c: rows[c] for c in columns}, "seeds": rows["n_seeds"]})
        if "train_flops" in table:  # 1.58e+11 reads better than 12 digits, and still shows a budget's unspent step
            table["train_flops"] = [f"{f:.3g}" if f == f else "" for f in table["train_flops"]]
        for name in METRICS:
            table[f"{name} (mean ± 95% CI)"] = [plus_minus(r[f"{name}_mean"], r[f"{name}_ci_low"],
                                                            r[f"{name}_ci_high"]) for _, r in rows.iterrows()]
        return table.to_markdown(index=False, floatfmt=".4g", intfmt=",")

    first = {run: next(iter(by_seed.values())) for run, by_seed in runs.items()}
    scope = scoring_note(runs)
    note = train_tokens_note({run: ev["tokens_seen"] for run, ev in first.items()})
    tokenizers = ", ".join(sorted({str(ev.get("tokenizer")) for ev in first.values()}))
    whole = frame[frame["source"] == "all"].sort_values("bpb_mean", kind="stable")
    lines = [f"# Evaluation: experiment `{experiment}`, {budget_note(runs)}{note}", "",
             f"{scope} val_loss in nats/token, perplexity = exp(val_loss) of each seed (its mean and interval "
             f"are over the seeds' perplexities), bpb = bits per UTF-8 byte "
             f"(comparable across tokenizers). Tokenizer: {tokenizers}. {eot_note(runs)}"
             f"{overlap_note(next(iter(first.values())))}".rstrip(), "",
             f"{CI_NOTE} Sorted by bpb; compare.csv (below) tells which differences hold up when runs are paired by "
             f"seed. {MULTIPLE_NOTE}",
             "", cells(whole, ["type", "params", "train_tokens", "train_flops"]), ""]
    per_source = frame[frame["source"] != "all"]
    if len(per_source):
        order = {run: i for i, run in enumerate(whole["run"])}
        per_source = per_source.sort_values("run", key=lambda runs_: runs_.map(order), kind="stable")
        lines += ["## Per data source", "", cells(per_source, ["source"]), ""]
    return "\n".join(lines + verdicts_markdown(compare, one_budget(runs)))


def eval_table(evals, out_csv, out_md, experiment: str, compare=None) -> pd.DataFrame:
    """tables/eval.csv and tables/eval.md from evals = {run: {seed: eval/<run>/seed<k>.json}}: one row per run
    (source `all`), and per data source when there are several, with <measure>_mean, _std, _ci_low and
    _ci_high over seeds for val_loss, perplexity and bpb; eval.md closes with the verdicts of `compare`."""
    runs = read_evals(evals)
    frame = pd.DataFrame(eval_rows(runs, experiment))
    write_csv(out_csv, frame)
    write_text(out_md, eval_markdown(frame, runs, experiment, compare))
    return frame


COMPARE_COLUMNS = ["experiment", "a", "b", "n", "flops_budget", "a_train_flops", "b_train_flops", "bpb_diff_mean",
                   "bpb_diff_ci_low", "bpb_diff_ci_high", "verdict", "statement"]


# spent FLOPs further apart than this (the larger over the smaller) make a pair without a budget unequal compute
UNEQUAL_COMPUTE = 1.05


def comparison(a: str, b: str, d: dict, budget, spent=(None, None)) -> str:
    """'at 1e+13 FLOPs: transformer better than lstm by 0.042 bpb (95% CI 0.031 to 0.053, 2 seeds)'. Without a
    budget, runs that spent FLOPs more than UNEQUAL_COMPUTE apart (`spent`: a's, b's) are said to be compared at
    unequal compute, with the ratio: a verdict quoted alone would read as a fair fight."""
    at = budget_prefix(budget)
    paired = f"{d['n']} seed{'s' if d['n'] != 1 else ''} paired"
    if d["verdict"] == "within noise":
        interval = f", 95% CI {d['ci_low']:+.4f} to {d['ci_high']:+.4f}" if d["n"] >= 2 else ""
        text = f"{at}{a} and {b} within noise ({a} - {b} = {d['mean_diff']:+.4f} bpb{interval}, {paired})"
    else:
        better, worse, sign = (a, b, -1) if d["verdict"] == "a better" else (b, a, 1)
        low, high = sorted((sign * d["ci_low"], sign * d["ci_high"]))
        text = (f"{at}{better} better than {worse} by {sign * d['mean_diff']:.4f} bpb (95% CI {low:.4f} to "
                f"{high:.4f}, {paired})")
    flops = dict(zip((a, b), spent))
    if budget is None and all(f is not None and np.isfinite(f) and f > 0 for f in flops.values()):
        more, less = sorted(flops, key=flops.get, reverse=True)
        if flops[more] / flops[less] > UNEQUAL_COMPUTE:
            text += (f"; not compute-matched: {more} trained with {flops[more] / flops[less]:.1f}x the FLOPs of "
                     f"{less} (train.flops sets a budget)")
    return text


def compare_table(evals, out_csv, experiment: str) -> pd.DataFrame:
    """tables/compare.csv: every unordered pair of runs (a, b) of the same compute budget, bpb(a) - bpb(b)
    paired by seed with its 95% t interval, which run is better or "within noise" when the interval straddles
    0, and that as a sentence. Runs under train.flops are paired only with runs of the same budget (equal
    compute, up to the one step a budget leaves unspent: {a,b}_train_flops, each run's mean over its seeds); runs
    without a budget only with each other."""
    runs = read_evals(evals)
    bpb = {run: {s: ev["bpb"] for s, ev in by_seed.items()} for run, by_seed in runs.items()}
    budget = {run: next(iter(by_seed.values())).get("flops_budget") for run, by_seed in runs.items()}
    spent = {run: np.mean([ev.get("train_flops") or np.nan for ev in by_seed.values()]) for run, by_seed in runs.items()}
    rows = []
    for a, b in itertools.combinations(bpb, 2):
        if budget[a] != budget[b]:
            continue
        d = paired_difference(bpb[a], bpb[b])
        rows.append({"experiment": experiment, "a": a, "b": b, "n": d["n"], "flops_budget": budget[a],
                     "a_train_flops": spent[a], "b_train_flops": spent[b],
                     "bpb_diff_mean": d["mean_diff"], "bpb_diff_ci_low": d["ci_low"], "bpb_diff_ci_high": d["ci_high"],
                     "verdict": d["verdict"],
                     "statement": comparison(a, b, d, budget[a], (spent[a], spent[b]))})
    frame = pd.DataFrame(rows, columns=COMPARE_COLUMNS)  # the header even for a single run
    write_csv(out_csv, frame)
    return frame


def sampling_table(inputs, out_csv, experiment: str, reference=None) -> pd.DataFrame:
    """eval/sampling.csv: the sampling measures of every run and seed (eval/sampling/<run>/seed<k>.csv) in one
    file, with `run` and `seed` columns taken from `inputs` = {run: {seed: path}}, then the rows of real
    validation stories (run, model and decoding `reference`) from `reference` = {seed: eval/reference/seed<k>.csv}."""
    frames = [pd.read_csv(path).drop(columns=["run", "seed"], errors="ignore").assign(run=run, seed=seed)
              for run, seeds in seed_paths(inputs).items() for seed, path in seeds.items()]
    frames += [pd.read_csv(path).drop(columns=["run", "seed"], errors="ignore").assign(run=lambda f: f["model"],
                                                                                     seed=seed)
               for seed, path in seed_paths({"reference": reference or {}})["reference"].items()]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[["run", "seed", *(c for c in frame.columns if c not in ("run", "seed"))]]
    frame.insert(0, "experiment", experiment)
    write_csv(out_csv, frame)
    return frame
