"""figures/sample_slide.png: one prompt's samples on one slide, a row per model and decoding (the first
sample of each, from tables/samples.csv), with each sample's newline count in a column of its own."""
from __future__ import annotations

from picollm.errors import PicoError
from picollm.plots import SLIDE, model_styles, save
from picollm.plots.sample_comparison import cell_text, read_first_samples, table_figure, text_table
from picollm.tables import show_whitespace, train_tokens_note

COLUMNS = ["model", "decoding", "newlines", "sample (⏎ newline, ␣ extra space)"]
WIDTHS = [1.6, 1.2, 1.2, 9.3]  # inches, 16:9 in all


def plot(samples_csv, out, experiment: str, provenance=None, *, prompt: str | None = None, width: int = 80,
         max_chars: int = 150, fontsize: float = 14) -> None:
    """prompt: which of the study's prompts (default: the first)."""
    first = read_first_samples(samples_csv)
    prompt = first["prompt"].iloc[0] if prompt is None else prompt
    rows = first[first["prompt"] == prompt]
    if rows.empty:
        raise PicoError(f"no samples for prompt {prompt!r} in {samples_csv}; "
                        f"its prompts: {list(first['prompt'].unique())}")
    models = list(dict.fromkeys(rows["model"]))
    cells = [[r.model, r.decoding, str(r.newlines), cell_text(r.text, width, max_chars)] for r in rows.itertuples()]
    fig, ax = table_figure(cells, SLIDE[0], fontsize, pad=0.6)
    table = text_table(ax, cells, COLUMNS, WIDTHS, fontsize, pad=0.6)
    styles = model_styles(models)
    for r, row in enumerate(cells, start=1):  # the model's colour, as in the other figures, to group its rows
        table[r, 0].set_facecolor((*styles[row[0]]["color"], 0.25))
    tokens = train_tokens_note(dict(zip(rows["model"], rows["train_tokens"])))
    ax.set_title(f"“{show_whitespace(prompt)}…” — {experiment}, {tokens}")
    save(fig, out, experiment, provenance)
