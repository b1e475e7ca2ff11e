"""figures/attention_heads.png: every head of every layer of each Transformer on one fixed prompt.

Built from model.pt alone: the checkpoint names its tokenizer, so the prompt is tokenized the way the
model was trained (end-of-text first, as before every training document).
"""
from __future__ import annotations

import seaborn as sns
import torch

from picollm.data.tokenizer import get_tokenizer
from picollm.models import load_model
from picollm.plots import plt, save
from picollm.tables import train_tokens_note


def token_labels(tokenizer, ids) -> list[str]:
    return [tokenizer.decode_single_token_bytes(i).decode("utf-8", errors="replace").replace("\n", "\\n") or "␣"
            for i in ids]


def plot(models: dict, out, experiment: str, prompt: str, max_tokens: int = 24, provenance=None) -> None:
    """models: {name: model.pt path}. Rows: (model, layer); columns: heads."""
    loaded = {name: load_model(path) for name, path in models.items()}
    rows = [(name, layer) for name, m in loaded.items() for layer in range(len(m.blocks))]
    n_cols = max(m.blocks[0].attn.n_heads for m in loaded.values())
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.6 * n_cols, 2.6 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    r = 0
    for name, model in loaded.items():
        tokenizer = get_tokenizer(model.checkpoint["tokenizer"])
        ids = [tokenizer.eot_token, *tokenizer.encode_ordinary(prompt)][: min(max_tokens, model.block_size)]
        labels = token_labels(tokenizer, ids)
        with torch.no_grad():
            maps = model.attention_maps(torch.tensor([ids]))  # per layer: (1, H, T, T)
        for layer, weights in enumerate(maps):
            for head in range(weights.size(1)):
                ax = axes[r, head]
                ax.set_visible(True)
                sns.heatmap(weights[0, head].numpy(), ax=ax, vmin=0, vmax=1, cmap="viridis", cbar=False,
                            square=True, xticklabels=labels, yticklabels=labels)
                ax.tick_params(labelsize=5, length=0)
                ax.set_title(f"{name} L{layer} H{head}", fontsize=7)
            r += 1
    tokens = train_tokens_note({name: m.checkpoint["summary"]["tokens_seen"] for name, m in loaded.items()})
    fig.suptitle(f"Attention weights on “{prompt}” — {experiment}, {tokens} (row: query token, column: key token)",
                 fontsize=9)
    fig.tight_layout()
    save(fig, out, experiment, provenance)
