"""figures/snapshots.png: what each run says as it learns, on one slide: a row per run and snapshot step
with the tokens seen, the validation loss at that step and the greedy continuation of the prompt, from
tables/snapshots.csv (picollm.snapshots). Each continuation is drawn from the table's `shown` column
(whitespace as signs, control characters escaped), so a continuation of spaces, newlines or control bytes
does not read as an empty cell.
"""
from __future__ import annotations

import re
import textwrap

import pandas as pd

from picollm.plots import CHAR_WIDTH, SLIDE, model_styles, plt, save
from picollm.plots.sample_comparison import cell_text, fitting_fontsize, mark_ended, table_figure, text_table
from picollm.tables import seed_note, show_whitespace, sign_key

COLUMNS = ["run", "step", "tokens seen", "val loss", "greedy continuation"]
WIDTHS = [2.0, 0.9, 1.5, 1.2, 7.7]  # inches, 16:9 in all
# a run drawn as one sign and its count: cell_text's ⏎×32 (whitespace), shown's \x00×9 (control characters)
RUN = re.compile(r"([⏎→␣⇤]|\\x[0-9a-f]{2})×\d+")
# characters of the key a slide's width holds at the title's font ("medium")
KEY_WIDTH = int(SLIDE[0] * 72 / (CHAR_WIDTH * plt.rcParams["font.size"]))


def layout(frame: pd.DataFrame, max_chars: int, pad: float) -> tuple[list[list[str]], float]:
    """The table's cells and font size: the continuations wrapped to the width their column holds at the
    font size at which all rows fit a slide (found from a first wrap at the largest size)."""
    fontsize = 14.0
    for _ in range(2):
        width = int(WIDTHS[-1] * 72 / (CHAR_WIDTH * fontsize))  # characters per line in the last column
        run_width = int(WIDTHS[0] * 72 / (CHAR_WIDTH * fontsize))
        cells = [[run_cell(r.run, run_width), str(r.step), f"{int(r.tokens_seen):,}", _loss(r.val_loss),
                  cell_text(r.shown, width, max_chars)] for r in frame.itertuples()]
        fontsize = min(fontsize, fitting_fontsize(cells, pad))
    return cells, fontsize


def run_cell(run: str, width: int) -> str:
    """A sweep run's name (transformer.d_model=64) on two lines when it is wider than its column."""
    head, dot, tail = run.partition(".")
    return run if len(run) <= width or not dot else f"{head}\n.{tail}"


def plot(snapshots_csv, out, experiment: str, provenance=None, *, max_chars: int = 160) -> None:
    frame = pd.read_csv(snapshots_csv, keep_default_na=False)
    runs = list(dict.fromkeys(frame["run"]))
    pad = 0.6
    cells, fontsize = layout(frame, max_chars, pad)
    fig, ax = table_figure(cells, SLIDE[0], fontsize, pad=pad)
    table = text_table(ax, cells, COLUMNS, WIDTHS, fontsize, pad=pad)
    mark_ended(table)
    styles = model_styles(runs)
    for r, row in enumerate(cells, start=1):  # the run's colour, as in the other figures, to group its rows
        table[r, 0].set_facecolor((*styles[row[0].replace("\n", "")]["color"], 0.25))
    prompt = frame["prompt"].iloc[0] if len(frame) else ""
    seeds = seed_note(frame.get("train_seed", []))
    # the key to the signs on a line of its own: in the column's header, it ran past a few rows' large font
    ax.set_title(f"“{show_whitespace(prompt)}…” at each training snapshot — {experiment}, {seeds}\n"
                 f"val loss: nats per token on training's validation subset\n{signs([r[-1] for r in cells])}",
                 fontsize="medium", parse_math=False)  # the prompt as written, `$` and all
    save(fig, out, experiment, provenance)


def signs(continuations: list[str], width: int = KEY_WIDTH) -> str:
    """'signs: ' and the key to every sign the continuations are drawn with: sign_key's, then "×N N times in a
    row" where a sign is drawn once with its count (⏎×32, \\x00×9), and "… cut" where a continuation ran past
    the cell's max_chars; wrapped to `width` chars between entries, never inside one."""
    key = sign_key(continuations).split(", ")
    if any(RUN.search(text) for text in continuations):
        key.append("×N N times in a row")
    if any(text.endswith("…") for text in continuations):
        key.append("… cut")
    return textwrap.fill("signs: " + ", ".join(entry.replace(" ", "\u00a0") for entry in key), width)


def _loss(value) -> str:
    try:
        return f"{float(value):.3f}"
    except ValueError:  # a blank cell
        return ""
