"""What a model says as it learns: the greedy continuation of one prompt by each training snapshot
(models/<run>/seed<k>/snapshots/step<N>.pt, written by training at train.snapshot_steps), beside that step's
validation loss, as tables/snapshots.csv and tables/snapshots.md.
"""
from __future__ import annotations

import csv
import math
import re

import pandas as pd

from picollm.data.tokenizer import checkpoint_tokenizer
from picollm.io import atomic_path, write_text
from picollm.models import load_model
from picollm.sampling import continuations
from picollm.tables import cell, path_seed, run_order, seed_note, show_whitespace, sign_key

CONTROL = re.compile(r"([\x00-\x08\x0b\x0c\x0e-\x1f\x7f])\1*")


def shown(text: str) -> str:
    """show_whitespace, and the other control characters escaped (\\x08; a run of four or more as \\x08×40):
    an untrained byte-level model emits them, and a cell of them would read as empty. (Escapes, not the
    Unicode control pictures: the figures' font has none of those.)"""
    def escape(m):
        sign = f"\\x{ord(m.group(1)):02x}"
        return sign * len(m.group()) if len(m.group()) < 4 else f"{sign}×{len(m.group())}"
    return show_whitespace(CONTROL.sub(escape, str(text)))


SNAPSHOT_COLUMNS = ["run", "train_seed", "step", "tokens_seen", "val_loss", "prompt", "new_tokens", "newlines", "shown", "text"]


def snapshot_rows(snapshot_paths: list, prompt: str, max_new_tokens: int) -> list[dict]:
    """One row per snapshot checkpoint, in step order: its step, tokens seen, validation loss and continuation,
    the greedy record the sample stage makes (end-of-text before the prompt, cut at the next end-of-text)."""
    rows = []
    for path in snapshot_paths:
        model = load_model(path)
        tokenizer = checkpoint_tokenizer(model.checkpoint)
        summary = model.checkpoint["summary"]
        # greedy draws nothing, so the name and seed that seed a sample change no token
        greedy = continuations(model, tokenizer, "snapshot", prompt, "greedy", count=1, max_new_tokens=max_new_tokens,
                               stop_at_eot=True, seed=0)[0]
        rows.append({"step": summary["step"], "tokens_seen": summary["tokens_seen"], "val_loss": summary["val_loss"],
                     "prompt": prompt, "new_tokens": greedy["new_tokens"], "text": greedy["text"]})
    return sorted(rows, key=lambda r: r["step"])


def snapshot_table(inputs: dict, out_csv, out_md, experiment: str, prompt: str, max_new_tokens: int) -> pd.DataFrame:
    """inputs: {run: [snapshot paths]}. CSV with the exact text (and `shown`, whitespace made visible), Markdown
    with one table per run."""
    frame = pd.DataFrame([{"run": run, "train_seed": path_seed(inputs[run][0]) if inputs[run] else None, **row}
                          for run in run_order(inputs)  # d_model=32 before 128
                          for row in snapshot_rows(inputs[run], prompt, max_new_tokens)],
                         columns=[c for c in SNAPSHOT_COLUMNS if c not in ("newlines", "shown")])
    frame["newlines"] = frame["text"].str.count("\n")
    frame["shown"] = frame["text"].map(shown)
    frame = frame[SNAPSHOT_COLUMNS]
    with atomic_path(out_csv) as tmp:
        # quote every text field: a continuation may hold any character, a bare carriage return included
        frame.to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC)
    write_text(out_md, snapshot_markdown(frame, experiment, prompt, max_new_tokens))
    return frame


def snapshot_markdown(frame: pd.DataFrame, experiment: str, prompt: str, max_new_tokens: int) -> str:
    lines = [f"# Snapshots: experiment `{experiment}`, {seed_note(frame['train_seed'])}", "",
             f"Greedy continuation of “{show_whitespace(prompt)}” (up to {max_new_tokens} tokens, stopped at "
             "end-of-text) by each run's model at each snapshot step, beside the validation loss measured at that "
             f"step. Signs in the text: {sign_key(frame['text'].map(lambda text: cell(text, shown)))}.", ""]
    for run, group in frame.groupby("run", sort=False):
        lines += [f"## {run}", "", "| step | tokens seen | val loss (nats/token) | new tokens | continuation |",
                  "|--:|--:|--:|--:|---|"]
        lines += [f"| {r.step} | {r.tokens_seen:,} | {_loss(r.val_loss)} | {r.new_tokens} | {cell(r.text, shown)} |"
                  for r in group.itertuples()]
        lines.append("")
    return "\n".join(lines)


def _loss(value) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}"
