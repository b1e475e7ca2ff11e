"""figures/sample_comparison.png: the sample table as a figure (first sample per cell), every prompt and
decoding by every model, for the report; figures/sample_slide.png (plots/sample_slide.py) is one prompt,
for a slide.

The figure is a slide's width whatever the number of runs (the model columns share it, their text wrapped
to fit), so that the report shows its text at a readable size; more runs make it taller, not wider.
Whitespace is drawn as signs (⏎ newline, → tab, ␣ a space that would not show; the title keys those the text
holds, with � for bytes that are not UTF-8) and a cell whose sample holds line breaks says how many: a sample
of newlines must not read as an empty or one-character cell.
A sample the model ended at once (its first token end-of-text) says so.
"""
from __future__ import annotations

import re
import textwrap

import pandas as pd

from picollm.plots import CHAR_WIDTH, SLIDE, plt, run_label, save
from picollm.tables import (ENDED_AT_ONCE, run_order, seed_note, show_whitespace, sign_key,
                            train_tokens_note)

LINE_HEIGHT = 1.35  # a text line's height, in font sizes
PROMPT_WIDTH = 2.0  # inches: the prompt and decoding column; the model columns share the rest of a slide
CELL_PAD = 0.08  # inches between a cell's text and its left edge, whatever the column's width


def read_first_samples(samples_csv) -> pd.DataFrame:
    """tables/samples.csv's first sample of each model, prompt and decoding, with its `newlines` counted from
    the text itself."""
    frame = pd.read_csv(samples_csv, keep_default_na=False)
    frame["newlines"] = frame["text"].str.count("\n")
    return frame[frame["sample"] == 0]


def cell_text(text: str, width: int, max_chars: int) -> str:
    """The sample with whitespace shown (a run of four or more signs as one with its count, ⏎×57: the signs
    are wider than letters, so a long run would not wrap inside the cell), cut to max_chars and wrapped to
    lines of `width` characters."""
    text = show_whitespace(text).strip()
    text = re.sub(r"([⏎→␣⇤])\1{3,}", lambda m: f"{m.group(1)}×{len(m.group())} ", text)
    text = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
    return textwrap.fill(text, width) if text else ENDED_AT_ONCE


def chars_per_line(inches: float, fontsize: float) -> int:
    """How many characters of text at `fontsize` points fit a column `inches` wide, less the cell's padding
    (CELL_PAD each side)."""
    return max(8, int((inches - 2 * CELL_PAD) * 72 / (CHAR_WIDTH * fontsize)))


def fitting_fontsize(cells: list[list[str]], pad: float, largest: float = 14, smallest: float = 9) -> float:
    """The largest font size (within bounds) at which the table still fits a slide's height."""
    lines = sum(row_lines([["header"], *cells], pad))
    return max(smallest, min(largest, (SLIDE[1] - 0.9) * 72 / (lines * LINE_HEIGHT)))


def mark_ended(table) -> None:
    """Grey italics for a sample the model ended at once: it is a note, not text the model wrote."""
    for cell in table.get_celld().values():
        if cell.get_text().get_text() == ENDED_AT_ONCE:
            cell.set_text_props(color="0.4", style="italic")


def row_lines(rows: list[list[str]], pad: float) -> list[float]:
    """Each row's height in lines: its most-wrapped cell plus `pad` lines of padding."""
    return [pad + max(cell.count("\n") + 1 for cell in row) for row in rows]


def text_table(ax, cells: list[list[str]], col_labels: list[str], col_widths: list[float], fontsize: float,
               pad: float = 1.0):
    """ax.table of wrapped text with each row as tall as its most-wrapped cell plus `pad` lines (ax.table
    alone gives every row one height). Fills the axes: draw it on table_figure's axes.
    col_widths: the columns' widths in inches, which fill the figure's width."""
    inches = col_widths
    col_widths = [w / sum(inches) for w in inches]
    lines = row_lines([col_labels, *cells], pad)
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=col_labels, colWidths=col_widths, bbox=(0, 0, 1, 1), cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    for (r, c), cell in table.get_celld().items():
        cell.set_height(lines[r] / sum(lines))
        # a model's text as written: two `$` in it would start matplotlib's math mode (a parse error, or italics)
        cell.set_text_props(va="center", parse_math=False)
        cell.PAD = CELL_PAD / inches[c]  # matplotlib's padding is a share of the cell's width
    return table


def table_figure(cells: list[list[str]], width: float, fontsize: float, pad: float = 1.0,
                 header: list[str] = ("header",)):
    """A figure `width` inches wide whose one axes, edge to edge under a title, is as tall as the
    text_table of `cells` and its `header` (one line unless given) needs."""
    lines = sum(row_lines([list(header), *cells], pad))
    table_h, margin = lines * LINE_HEIGHT * fontsize / 72, 0.9  # inches: title above, stamp below
    fig, ax = plt.subplots(figsize=(width, table_h + margin))
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.35 / (table_h + margin),
                        top=1 - 0.55 / (table_h + margin))
    return fig, ax


def sample_cells(first: pd.DataFrame, models: list[str], width: int, max_chars: int) -> list[list[str]]:
    """A row per prompt and decoding: the prompt, then each model's sample wrapped to `width` characters."""
    cells = []
    for (prompt, decoding), group in first.groupby(["prompt", "decoding"], sort=False):
        by_model = group.set_index("model")
        row = [f"“{textwrap.shorten(show_whitespace(prompt), 30)}”\n{decoding}"]
        for model in models:
            hit = by_model.loc[model] if model in by_model.index else None
            text = "" if hit is None else cell_text(hit["text"], width, max_chars)
            newlines = 0 if hit is None else int(hit["newlines"])
            row.append(text + (f"\n[{newlines} newline{'s' * (newlines > 1)}]" if newlines else ""))
        cells.append(row)
    return cells


def plot(samples_csv, out, experiment: str, provenance=None, *, max_chars: int = 240,
         fontsize: float = 10) -> None:
    first = read_first_samples(samples_csv)
    models = run_order(first["model"])  # as every figure orders runs, whatever order the table lists them in
    column = (SLIDE[0] - PROMPT_WIDTH) / len(models)  # inches per model
    cells = sample_cells(first, models, chars_per_line(column, fontsize), max_chars)
    header = ["prompt, decoding", *map(run_label, models)]
    fig, ax = table_figure(cells, SLIDE[0], fontsize, header=header)
    table = text_table(ax, cells, header, [PROMPT_WIDTH, *[column] * len(models)], fontsize)
    mark_ended(table)
    tokens = train_tokens_note(dict(zip(first["model"], first["train_tokens"])))
    seeds = seed_note(first.get("train_seed", []))
    # the key on a line of its own: with � named it is too long to share the title's line within a slide
    ax.set_title(f"Samples — {experiment}, {tokens}, {seeds}\n{sign_key(map(str, cells))}")
    save(fig, out, experiment, provenance)
