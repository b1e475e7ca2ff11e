"""LSTM language model: embedding -> stacked LSTM -> linear head."""
from __future__ import annotations

import torch
from torch import nn

from picollm.models.head import Head


class LSTMLM(nn.Module):
    context_limited = False  # (h, c) summarises any length of context
    def __init__(self, vocab_size: int, block_size: int, *, embed_dim: int, hidden_dim: int, num_layers: int,
                 dropout: float):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.head = Head(hidden_dim, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.forward_step(idx, None)[0]  # (B, T, V)

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, H): the LSTM's outputs, i.e. forward() without the head."""
        return self.lstm(self.embed(idx))[0]

    def forward_step(self, idx: torch.Tensor, state=None):
        # The LSTM's (h, c) is its whole memory of the context, so generation carries it forward and
        # never recomputes the prefix; `state` is that tuple.
        out, state = self.lstm(self.embed(idx), state)  # (B, T, H)
        return self.head(out), state
