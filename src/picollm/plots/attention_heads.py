"""figures/attention_heads.png: every head of every layer of each Transformer on one prompt (the caller's,
figures.attention_prompt in the config).

Built from model.pt alone: the checkpoint names its tokenizer, so the prompt is tokenized the way the
model was trained (end-of-text first, as before every training document). Token labels show whitespace
(GPT-2 tokens carry their leading space: "␣upon"), and one colour bar reads every panel.
"""
from __future__ import annotations

import numpy as np
import seaborn as sns
import torch

from picollm.data.tokenizer import checkpoint_tokenizer
from picollm.models import load_model
from picollm.plots import plt, save
from picollm.tables import WHITESPACE_SIGNS, show_whitespace, train_tokens_note

PANEL = 3.2  # inches per head panel


def token_label(tokenizer, token: int) -> str:
    """A token's text with every whitespace character as a sign; end-of-text as <eot>."""
    if token == tokenizer.eot_token:
        return "<eot>"
    text = tokenizer.decode_single_token_bytes(token).decode("utf-8", errors="replace")
    return "".join(WHITESPACE_SIGNS.get(c, "␣" if c.isspace() else c) for c in text)


def prompt_maps(model, prompt: str, max_tokens: int):
    """(token labels, per layer a (heads, T, T) array) of the model's attention on the prompt."""
    tokenizer = checkpoint_tokenizer(model.checkpoint)
    ids = [tokenizer.eot_token, *tokenizer.encode_ordinary(prompt)][: min(max_tokens, model.block_size)]
    with torch.no_grad():
        maps = model.attention_maps(torch.tensor([ids]))  # per layer: (1, H, T, T)
    return [token_label(tokenizer, i) for i in ids], [m[0].numpy() for m in maps]


def plot(models: dict, out, experiment: str, provenance=None, *, prompt: str, max_tokens: int = 24) -> None:
    """models: {name: model.pt path}. Rows: (model, layer); columns: heads."""
    loaded = {name: load_model(path) for name, path in models.items()}
    drawn = {name: prompt_maps(m, prompt, max_tokens) for name, m in loaded.items()}
    n_rows = sum(len(maps) for _, maps in drawn.values())
    n_cols = max(maps[0].shape[0] for _, maps in drawn.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(PANEL * n_cols + 1.5, PANEL * n_rows + 1), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_visible(False)
    r = 0
    for name, (labels, maps) in drawn.items():
        fontsize = np.clip(0.8 * PANEL * 72 / len(labels), 6, 14)  # points: one label per row of the map
        for layer, weights in enumerate(maps):
            for head, ax in enumerate(axes[r, : len(weights)]):
                ax.set_visible(True)
                sns.heatmap(weights[head], ax=ax, vmin=0, vmax=1, cmap="viridis", cbar=False, square=True,
                            xticklabels=labels if layer == len(maps) - 1 else False,
                            yticklabels=labels if head == 0 else False)
                ax.tick_params(labelsize=fontsize, length=0)
                ax.set_title(f"head {head}" if layer == 0 else "", fontsize="small")
            axes[r, 0].set_ylabel(f"{name}\nlayer {layer}\nquery token", fontsize="small")
            r += 1
        axes[r - 1, 0].set_xlabel("key token", fontsize="small")
    fig.colorbar(axes[0, 0].collections[0], ax=axes, shrink=0.6, label="attention weight")
    tokens = train_tokens_note({name: m.checkpoint["summary"]["tokens_seen"] for name, m in loaded.items()})
    fig.suptitle(f"Attention weights on “{show_whitespace(prompt)}” — {experiment}, {tokens}", fontsize="medium")
    save(fig, out, experiment, provenance)
