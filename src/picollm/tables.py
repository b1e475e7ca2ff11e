"""Tables rebuilt from files on disk: the sample table and the per-model summary table."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd

from picollm.io import atomic_path, write_text


def read_samples(paths) -> pd.DataFrame:
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    frame = pd.DataFrame(rows)
    frame["decoding"] = frame["decoding"].map(lambda d: d if d == "greedy" else f"p={float(d):g}")
    return frame


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


def _cell(text: str, width: int = 240) -> str:
    text = show_whitespace(text)
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("|", "\\|") or "(empty)"


def samples_table(paths, out_csv, out_md, experiment: str) -> pd.DataFrame:
    """Every model x decoding x prompt: CSV with every sample, Markdown with the first of each.

    `text` is the sample exactly; `shown` is it with whitespace made visible (HTML and Markdown collapse
    runs of whitespace, so a sample of newlines would read as empty) and `newlines` counts its line breaks.
    """
    frame = read_samples(paths)
    frame["newlines"] = frame["text"].str.count("\n")
    frame["shown"] = frame["text"].map(show_whitespace)
    columns = ["model", "train_tokens", "prompt", "decoding", "sample", "seed", "new_tokens", "newlines", "shown",
               "text"]
    with atomic_path(out_csv) as tmp:
        # quote every text field: a sample may hold any character, a bare carriage return included
        frame[columns].to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC)
    write_text(out_md, samples_markdown(frame, experiment))
    return frame


def samples_markdown(frame: pd.DataFrame, experiment: str) -> str:
    """One table per prompt, one row per decoding and model (first sample), whitespace shown as signs."""
    first = frame[frame["sample"] == 0]
    tokens = train_tokens_note(dict(zip(frame["model"], frame["train_tokens"])))
    lines = [f"# Samples: experiment `{experiment}`, {tokens}", "",
             "First sample of each model and decoding (all samples in samples.csv); the prompt is shown before "
             "each continuation. Whitespace is drawn as ⏎ (newline), → (tab) and ␣ (a space that would not "
             "show); `newlines` counts the line breaks in the continuation.", ""]
    for prompt, group in first.groupby("prompt", sort=False):
        lines += [f"## Prompt: “{show_whitespace(prompt)}”", "",
                  "| decoding | model | new tokens | newlines | text |", "|---|---|--:|--:|---|"]
        lines += [f"| {r.decoding} | {r.model} | {r.new_tokens} | {r.newlines} | {_cell(r.text)} |"
                  for r in group.itertuples()]
        lines.append("")
    return "\n".join(lines)


MODEL_COLUMNS = ["model", "type", "params", "params_embedding", "params_head", "head_tied", "params_core",
                 "tokens_seen", "wall_s", "tokens_per_s", "device", "final_train_loss", "final_val_loss"]


def models_table(summary_paths, out_md, experiment: str, out_csv=None) -> pd.DataFrame:
    """One row per model: parameters (params = embedding + head + core), tokens seen, wall time, tokens/s,
    device, losses; Markdown, and CSV for Snakemake's report (which renders a .csv as a table)."""
    rows = [json.loads(Path(p).read_text()) for p in summary_paths]
    frame = pd.DataFrame(rows).reindex(columns=MODEL_COLUMNS)  # summaries from before a column existed: blank
    frame = frame.round({"wall_s": 1, "final_train_loss": 4, "final_val_loss": 4})
    frame["tokens_per_s"] = frame["tokens_per_s"].round().astype("Int64")
    if out_csv is not None:
        with atomic_path(out_csv) as tmp:
            frame.to_csv(tmp, index=False)
    note = train_tokens_note(dict(zip(frame["model"], frame["tokens_seen"])))
    text = (f"# Models: experiment `{experiment}`, {note}\n\n"
            "params = params_embedding (token and learned position tables) + params_head (output layer; 0 when "
            "tied to the token table) + params_core (everything else, Kaplan et al.'s non-embedding count).\n\n"
            + frame.to_markdown(index=False, floatfmt=".4g", intfmt=",") + "\n")
    write_text(out_md, text)
    return frame


def train_tokens_note(tokens_by_model: dict) -> str:
    """'307,200 training tokens per model', or each model's count when they differ."""
    counts = {m: int(t) for m, t in tokens_by_model.items() if t is not None and t == t}
    if not counts:
        return "training tokens unknown"
    if len(set(counts.values())) == 1:
        return f"{next(iter(counts.values())):,} training tokens per model"
    return "training tokens: " + ", ".join(f"{m} {t:,}" for m, t in counts.items())


def eval_table(eval_paths, out_csv, out_md, experiment: str) -> pd.DataFrame:
    """tables/eval.csv (one row per model and data source, `all` first) and tables/eval.md from eval/<model>.json."""
    evals = [json.loads(Path(p).read_text()) for p in eval_paths]
    rows = []
    for ev in evals:
        base = {"experiment": experiment, "model": ev["model"], "type": ev["type"], "params": ev["params"],
                "params_non_embedding": ev["params_non_embedding"], "train_tokens": ev["tokens_seen"],
                "tokenizer": ev["tokenizer"]}
        parts = {"all": {"loss": ev["val_loss"], "perplexity": ev["perplexity"], "bpb": ev["bpb"],
                         "tokens": ev["val_tokens_scored"], "bytes": ev["val_bytes"]}, **ev["sources"]}
        for source, rec in parts.items():
            rows.append({**base, "source": source, "val_loss": rec["loss"], "perplexity": rec["perplexity"],
                         "bpb": rec["bpb"], "val_tokens": rec["tokens"], "val_bytes": rec["bytes"]})
    frame = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    note = train_tokens_note({ev["model"]: ev["tokens_seen"] for ev in evals})
    shown = ["model", "type", "params", "params_non_embedding", "train_tokens", "val_loss", "perplexity", "bpb",
             "val_tokens", "val_bytes"]
    capped = [ev for ev in evals if ev.get("val_capped")]
    scope = ("Whole validation split, every token scored once (non-overlapping windows of block_size plus the "
             "tail)." if not capped else
             "Capped by evaluate.max_tokens: " + ", ".join(
                 f"{ev['model']} {ev['val_tokens_scored']:,} of {ev['val_tokens_in_split']:,} tokens"
                 for ev in capped) + " (whole windows spread evenly over the split).")
    lines = [f"# Evaluation: experiment `{experiment}`, {note}", "",
             f"{scope} val_loss in nats/token, perplexity = exp(val_loss), bpb = bits per UTF-8 byte "
             f"(comparable across tokenizers). Tokenizer: {', '.join(sorted({ev['tokenizer'] for ev in evals}))}.",
             "", frame[frame["source"] == "all"][shown].to_markdown(index=False, floatfmt=".4g", intfmt=","), ""]
    sources = [s for s in dict.fromkeys(frame["source"]) if s != "all"]
    if len(sources) > 1:
        lines += ["## Per data source", "",
                  frame[frame["source"] != "all"][["model", "source", "val_loss", "perplexity", "bpb", "val_tokens",
                                                   "val_bytes"]].to_markdown(index=False, floatfmt=".4g", intfmt=","),
                  ""]
    write_text(out_md, "\n".join(lines))
    return frame


def sampling_table(paths, out_csv, experiment: str) -> pd.DataFrame:
    """eval/sampling.csv: the per-model sampling measures (eval/sampling/<model>.csv) in one file."""
    frame = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    frame.insert(0, "experiment", experiment)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    return frame
