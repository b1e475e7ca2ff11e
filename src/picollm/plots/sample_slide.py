"""figures/sample_slide.png: one prompt's samples on one slide, a row per run and decoding (the first
sample of each, from tables/samples.csv).

Each run's rows share its colour and its name, written once down their first rows: a sweep run as its
model over the swept setting ("transformer" over "d_model=64"), so that sweep runs differ in words and
not only in colour. The columns are as wide as their text, the sample taking the rest of the slide, and
the font as large as lets every row fit a slide. A newline count shows only when some sample has one.
"""
from __future__ import annotations

import pandas as pd

from picollm.errors import PicoError
from picollm.plots import CHAR_WIDTH, SLIDE, model_styles, run_label, save
from picollm.plots.sample_comparison import (cell_text, chars_per_line, fitting_fontsize, mark_ended,
                                             read_first_samples, table_figure, text_table)
from picollm.tables import seed_note, show_whitespace, sign_key, train_tokens_note

SAMPLE = "sample"  # its header adds the key to the signs its text holds
PAD = 0.6  # lines of padding per row


def run_cells(runs: pd.Series) -> list[str]:
    """The run column: each run's label, one line per row from the run's first row down (all on its first
    row when it has fewer rows than lines), blank below."""
    cells, seen = [], {}
    for run in runs:
        lines = run_label(run).split("\n")
        i = seen[run] = seen.get(run, -1) + 1
        rows = int((runs == run).sum())
        if rows < len(lines):
            cells.append("\n".join(lines) if i == 0 else "")
        else:
            cells.append(lines[i] if i < len(lines) else "")
    return cells


def columns(rows: pd.DataFrame) -> list[str]:
    """The table's columns: newlines only when a sample holds one (a column of zeros says nothing)."""
    return ["run", "decoding", *(["newlines"] if rows["newlines"].any() else []), SAMPLE]


def text_width(texts, fontsize: float) -> float:
    """Inches that the longest line of `texts` takes at `fontsize`, with its cell's padding."""
    longest = max(len(line) for text in texts for line in str(text).split("\n"))
    return (longest + 2) * CHAR_WIDTH * fontsize / 72


def layout(rows: pd.DataFrame, max_chars: int) -> tuple[list[str], list[list[str]], list[float], float]:
    """(columns, cells, column widths in inches, font size): the short columns as wide as their text, the
    sample wrapped to what is left of the slide at the largest font at which every row fits (found from a
    first wrap at the largest size)."""
    names = columns(rows)
    fontsize = 14.0
    for _ in range(2):
        short = {"run": run_cells(rows["model"]), "decoding": list(rows["decoding"]),
                 "newlines": [str(n) for n in rows["newlines"]]}
        widths = [text_width([name, *short[name]], fontsize) for name in names[:-1]]
        widths.append(SLIDE[0] - sum(widths))
        wrap = chars_per_line(widths[-1], fontsize)
        sample = [cell_text(text, wrap, max_chars) for text in rows["text"]]
        cells = [list(row) for row in zip(*(short[name] for name in names[:-1]), sample)]
        fontsize = min(fontsize, fitting_fontsize(cells, PAD, smallest=10))
    return names, cells, widths, fontsize


def figure(rows: pd.DataFrame, prompt: str, experiment: str, max_chars: int = 150):
    """(figure, its table) of one prompt's first samples, `rows` of tables/samples.csv."""
    names, cells, widths, fontsize = layout(rows, max_chars)
    fig, ax = table_figure(cells, SLIDE[0], fontsize, pad=PAD)
    header = [*names[:-1], f"{SAMPLE} ({sign_key(row[-1] for row in cells)})"]
    table = text_table(ax, cells, header, widths, fontsize, pad=PAD)
    mark_ended(table)
    styles = model_styles(list(dict.fromkeys(rows["model"])))
    for r, run in enumerate(rows["model"], start=1):  # the run's colour, as in the other figures, to group its rows
        table[r, 0].set_facecolor((*styles[run]["color"], 0.25))
    tokens = train_tokens_note(dict(zip(rows["model"], rows["train_tokens"])))
    ax.set_title(f"“{show_whitespace(prompt)}…” — {experiment}, {tokens}, {seed_note(rows.get('train_seed', []))}",
                 parse_math=False)  # the prompt as written, `$` and all
    return fig, table


def plot(samples_csv, out, experiment: str, provenance=None, *, prompt: str | None = None,
         max_chars: int = 150) -> None:
    """prompt: which of the study's prompts (default: the first)."""
    first = read_first_samples(samples_csv)
    prompt = first["prompt"].iloc[0] if prompt is None else prompt
    rows = first[first["prompt"] == prompt]
    if rows.empty:
        raise PicoError(f"no samples for prompt {prompt!r} in {samples_csv}; "
                        f"its prompts: {list(first['prompt'].unique())}")
    save(figure(rows, prompt, experiment, max_chars)[0], out, experiment, provenance)
