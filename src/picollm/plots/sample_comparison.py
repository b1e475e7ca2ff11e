"""figures/sample_comparison.png: the sample table as a figure for slides (first sample per cell)."""
from __future__ import annotations

import textwrap

import pandas as pd

from picollm.plots import plt, save
from picollm.tables import train_tokens_note


def plot(samples_csv, out, experiment: str, width: int = 38, max_chars: int = 220, provenance=None) -> None:
    frame = pd.read_csv(samples_csv, keep_default_na=False)
    first = frame[frame["sample"] == 0]
    models = list(dict.fromkeys(first["model"]))
    prompts = list(dict.fromkeys(first["prompt"]))
    decodings = list(dict.fromkeys(first["decoding"]))
    row_labels, cells = [], []
    for prompt in prompts:
        for dec in decodings:
            row_labels.append(f"“{textwrap.shorten(prompt, 30)}”\n{dec}")
            row = []
            for model in models:
                hit = first[(first["prompt"] == prompt) & (first["decoding"] == dec) & (first["model"] == model)]
                text = " ".join(str(hit["text"].iloc[0]).split()) if len(hit) else ""
                text = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
                row.append(textwrap.fill(text or "(empty)", width))
            cells.append(row)
    lines_per_row = [max(c.count("\n") + 1 for c in row) for row in cells]
    fig_h = 0.9 + 0.16 * sum(lines_per_row) + 0.15 * len(cells)
    fig, ax = plt.subplots(figsize=(2.2 + 3.2 * len(models), fig_h))
    ax.axis("off")
    table = ax.table(cellText=cells, rowLabels=row_labels, colLabels=models, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    total = sum(lines_per_row) + len(cells) + 1
    for (r, c), cell in table.get_celld().items():
        lines = 1 if r == 0 else lines_per_row[r - 1]
        cell.set_height((lines + 1) / total * 0.95)
        cell.set_text_props(va="center")
    tokens = train_tokens_note(dict(zip(frame["model"], frame["train_tokens"])))
    ax.set_title(f"Samples — {experiment}, {tokens}", fontsize=10)
    save(fig, out, experiment, provenance)
