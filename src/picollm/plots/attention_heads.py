"""figures/attention_heads.png: every head of every layer of each Transformer on one prompt (the caller's,
figures.attention_prompt in the config), and figures/attention_heads/<run>.png: one run per figure, for a
slide.

Built from model.pt alone: the checkpoint names its tokenizer, so the prompt is tokenized the way the
model was trained (end-of-text first, as before every training document). Token labels show whitespace
(a space as a middle dot, GPT-2 tokens carrying theirs in front: "·upon"; ⏎ newline), and one colour bar
reads every panel. Each run is a block of layers (rows) by heads (columns); the blocks are laid out in the
grid whose shape is nearest a 16:9 slide, at the panel size that fits the grid onto a slide where the token
labels stay readable (a short prompt), larger where they would not.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import torch

from picollm.data.tokenizer import checkpoint_tokenizer
from picollm.models import load_model
from picollm.plots import CHAR_WIDTH, SLIDE, plt, save
from picollm.tables import (WHITESPACE_SIGNS, path_seed, run_order, seed_note, show_whitespace,
                            train_tokens_note)

PANEL = 2.6  # inches per head panel at most (one run's figure: a slide's worth)
MIN_PANEL = 1.0  # inches per head panel at least, however short the prompt
READABLE_PT = 7  # the token labels' smallest size in the figure of every run
SPACE = "·"  # a middle dot: a rotated ␣ under a narrow column reads as a stray glyph
ASPECT = 16 / 9


def token_label(tokenizer, token: int) -> str:
    """A token's text with every whitespace character as a sign (a space as ·); end-of-text as <eot>."""
    if token == tokenizer.eot_token:
        return "<eot>"
    text = tokenizer.decode_single_token_bytes(token).decode("utf-8", errors="replace")
    return "".join(WHITESPACE_SIGNS.get(c, SPACE if c.isspace() else c) for c in text)


def prompt_maps(model, prompt: str, max_tokens: int):
    """(token labels, per layer a (heads, T, T) array) of the model's attention on the prompt."""
    tokenizer = checkpoint_tokenizer(model.checkpoint)
    ids = [tokenizer.eot_token, *tokenizer.encode_ordinary(prompt)][: min(max_tokens, model.block_size)]
    with torch.no_grad():
        maps = model.attention_maps(torch.tensor([ids]))  # per layer: (1, H, T, T)
    return [token_label(tokenizer, i) for i in ids], [m[0].numpy() for m in maps]


def canvas(rows: int, cols: int, layers: int, heads: int, panel: float) -> tuple[float, float]:
    """(width, height) in inches of `rows` x `cols` run blocks of layers x heads panels, with room for the
    token labels, titles and the colour bar."""
    return cols * heads * panel + 2.5, rows * (layers * panel + 0.8) + 1.2


def block_grid(n_runs: int, layers: int, heads: int, panel: float = PANEL) -> tuple[int, int]:
    """(rows, columns) of run blocks whose figure is nearest 16:9 among the landscape ones (ties: fewer
    columns); the widest when none is landscape."""
    def aspect(cols: int) -> float:
        width, height = canvas(math.ceil(n_runs / cols), cols, layers, heads, panel)
        return width / height
    landscape = [c for c in range(1, n_runs + 1) if aspect(c) >= 1] or [n_runs]
    cols = min(landscape, key=lambda c: abs(math.log(aspect(c) / ASPECT)))
    return math.ceil(n_runs / cols), cols


def tick_fontsize(panel: float, n_labels: int) -> float:
    """Points for one token label per row of a panel `panel` inches tall."""
    return float(np.clip(0.7 * panel * 72 / n_labels, 5, 12))


def upright_key_labels(ax) -> None:
    """Key-token labels of one or two characters (bytes) upright, so that a space's dot reads as a dot;
    longer ones (<eot>, words) turned on their side, where they do not run into their neighbours."""
    for label in ax.get_xticklabels():
        label.set_rotation(0 if len(label.get_text()) <= 2 else 90)


def heatmap(ax, weights, labels: list[str], keys: bool, queries: bool, fontsize: float) -> None:
    """One head's (T, T) weights, token labels on the key (x) and query (y) axes where asked for. Plain
    imshow: seaborn's heatmap draws the whole figure to check its labels, once per panel."""
    ax.imshow(weights, vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
    ax.grid(False)
    ax.set_xticks(range(len(labels)), labels if keys else [], parse_math=False)  # tokens as written, `$` and all
    ax.set_yticks(range(len(labels)), labels if queries else [], parse_math=False)
    ax.tick_params(labelsize=fontsize, length=0)
    upright_key_labels(ax)


def draw_run(subfig, name: str, labels: list[str], maps: list, panel: float) -> None:
    """One run's block: a row per layer, a column per head, the run's full name above it."""
    heads = maps[0].shape[0]
    axes = subfig.subplots(len(maps), heads, squeeze=False)
    fontsize = tick_fontsize(panel, len(labels))
    for layer, weights in enumerate(maps):
        for head, ax in enumerate(axes[layer]):
            heatmap(ax, weights[head], labels, keys=layer == len(maps) - 1, queries=head == 0, fontsize=fontsize)
            ax.set_title(f"head {head}" if layer == 0 else "", fontsize="small")
        right = axes[layer, -1].yaxis  # on the right: the left holds the query tokens and their axis label
        right.set_label_position("right")
        right.set_label_text(f"layer {layer}", fontsize="small", rotation=270, va="bottom")
    subfig.suptitle(name, fontsize="medium", fontweight="bold")
    # the block's own axis labels: constrained layout keeps them clear of its tick labels, a figure's does not
    # short labels: a block of two small panels is barely taller than "query token (row)"
    subfig.supxlabel("key token (column): attended to", fontsize="small")
    subfig.supylabel("query token (row)", fontsize="small")


def draw(drawn: dict, panel: float, title: str, note: str = ""):
    """A figure of every run in `drawn` ({name: (labels, maps)}), blocks on block_grid, one colour bar; `note`
    in the grid's first empty block, or under the title when the grid has none."""
    layers = max(len(maps) for _, maps in drawn.values())
    heads = max(maps[0].shape[0] for _, maps in drawn.values())
    rows, cols = block_grid(len(drawn), layers, heads, panel)
    width, height = canvas(rows, cols, layers, heads, panel)
    fig = plt.figure(figsize=(width, height), layout="constrained")
    body, bar = fig.subfigures(1, 2, width_ratios=[width - 1, 1])
    blocks = body.subfigures(rows, cols, squeeze=False).ravel()
    for block, (name, (labels, maps)) in zip(blocks, drawn.items()):
        draw_run(block, name, labels, maps, panel)
    if note and len(blocks) > len(drawn):
        blocks[len(drawn)].text(0.5, 0.5, note, ha="center", va="center", fontsize="medium", wrap=True)
    elif note:
        title = f"{title}\n{' '.join(note.split())}"
    cax = bar.add_axes((0.15, 0.25, 0.25, 0.5))  # a fixed strip: the colour bar reads every block
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="viridis"), cax=cax,
                 label="attention weight")
    line = int(width * 72 / (CHAR_WIDTH * plt.rcParams["font.size"]))
    fig.suptitle("\n".join(textwrap.fill(part, line) for part in title.split("\n")),
                 fontsize="medium", parse_math=False)  # wrapped: a long prompt would widen the figure past a slide
    return fig


def run_figure_path(out, run: str) -> Path:
    """figures/attention_heads/<run>.png beside figures/attention_heads.png."""
    return Path(out).with_suffix("") / f"{run}.png"


def slide_panel(layers: int, heads: int) -> float:
    """Inches per panel at which one run's layers x heads fill a slide."""
    return min((SLIDE[0] - 2.5) / heads, (SLIDE[1] - 2.0) / layers)


def grid_panel(n_runs: int, layers: int, heads: int, n_labels: int) -> float:
    """Inches per panel at which every run's block, on its block_grid, fits a slide, so that the figure of every
    run reads at a slide's size as the others do; but no smaller than keeps `n_labels` token labels per panel
    at READABLE_PT (tick_fontsize), and larger figures where that needs it."""
    smallest = min(PANEL, max(MIN_PANEL, n_labels * READABLE_PT / (0.7 * 72)))
    panel = PANEL
    for _ in range(2):  # the grid's shape depends a little on the panel's size (the margins do not scale)
        rows, cols = block_grid(n_runs, layers, heads, panel)
        fit = min((SLIDE[0] - 2.5) / (cols * heads), ((SLIDE[1] - 1.2) / rows - 0.8) / layers)
        panel = float(np.clip(fit, smallest, PANEL))
    return panel


def plot(models: dict, out, experiment: str, provenance=None, *, prompt: str, max_tokens: int = 24) -> None:
    """models: {name: model.pt path}. Writes `out` (every run) and run_figure_path(out, name) per run."""
    loaded = {name: load_model(models[name]) for name in run_order(models)}  # JSON sorts 128 before 32
    drawn = {name: prompt_maps(m, prompt, max_tokens) for name, m in loaded.items()}
    tokens = train_tokens_note({name: m.checkpoint["summary"]["tokens_seen"] for name, m in loaded.items()})
    title = f"Attention weights on “{show_whitespace(prompt)}” (·\u00a0space, ⏎\u00a0newline) — {experiment}"
    seeds = seed_note(path_seed(path) for path in models.values())
    layers = max(len(maps) for _, maps in drawn.values())
    heads = max(maps[0].shape[0] for _, maps in drawn.values())
    panel = grid_panel(len(drawn), layers, heads, max(len(labels) for labels, _ in drawn.values()))
    note = "One run per figure, for a slide:\nfigures/attention_heads/<run>.png" if len(drawn) > 1 else ""
    save(draw(drawn, panel, f"{title}, {tokens}, {seeds}", note), out, experiment, provenance)
    for name, (labels, maps) in drawn.items():
        panel = slide_panel(len(maps), maps[0].shape[0])
        tokens = f"{int(loaded[name].checkpoint['summary']['tokens_seen']):,} training tokens"  # one model's
        path = run_figure_path(out, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = seed_note([path_seed(models[name])])
        save(draw({name: (labels, maps)}, panel, f"{title}, {tokens}, {seed}"), path, experiment, provenance)
