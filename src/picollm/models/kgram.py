"""k-gram MLP language model: predict the next token from the previous k tokens only.

The k context tokens go through a first layer -> SiLU -> inner Linear+SiLU blocks -> linear head. The
first layer sees the context in one of two equivalent forms:
  embedding: each token is looked up in a shared embedding table and the k vectors are concatenated
             oldest first, so slot j (its place in the window) has its own block of first-layer weights;
  onehot:    the starter's formulation, the flattened k x vocab one-hot context times a
             (hidden, k*vocab) weight.

Padding: positions before the start of the sequence hold the id `vocab_size`, one past the real tokens.
Its embedding row is fixed at zero (padding_idx) and its one-hot vector is all zeros, so a padded slot
adds nothing to the first layer's pre-activation in either form (only the bias remains), and the two
forms stay exactly equivalent (tests/test_models.py folds one into the other).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from picollm.models.head import Head


class KGramMLP(nn.Module):
    context_limited = False  # the state is always the last k - 1 tokens, however long generation runs

    def __init__(self, vocab_size: int, block_size: int, *, k: int, embed_dim: int, hidden_dim: int,
                 num_inner_layers: int, input: str):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.k, self.input = k, input
        self.pad = vocab_size
        if input == "embedding":
            self.embed = nn.Embedding(vocab_size + 1, embed_dim, padding_idx=self.pad)
            self.fc_in = nn.Linear(k * embed_dim, hidden_dim)
        else:  # embed_dim is unused: the one-hot vectors are vocab_size wide
            self.fc_in = nn.Linear(k * vocab_size, hidden_dim)
        self.inner = nn.Sequential(*(nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.SiLU())
                                     for _ in range(num_inner_layers)))
        self.head = Head(hidden_dim, vocab_size)

    def lookup_tables(self) -> list[nn.Parameter]:
        """Weights used as lookup tables rather than multiplied: the one-hot first layer picks k of its columns
        per position (no FLOPs, picollm.flops), so it counts as embedding and trains with AdamW, as a table."""
        return [self.fc_in.weight] if self.input == "onehot" else []

    def first_layer(self, context: torch.Tensor) -> torch.Tensor:
        """The first Linear layer on each window of k token ids, context (B, T, k) -> (B, T, hidden)."""
        if self.input == "embedding":
            return self.fc_in(self.embed(context).flatten(2))  # (B, T, k*E) -> (B, T, H)
        # one_hot(context).flatten(2) @ W.T only picks, for each slot j, column j*V + token of W, so gather
        # those k columns and sum them: memory O(B*T*k*hidden) instead of the O(B*T*k*vocab) one-hot tensor.
        # A padded slot is an all-zero one-hot, i.e. no column: gather any column and zero it.
        is_token = context != self.pad
        slot_offset = torch.arange(self.k, device=context.device) * self.vocab_size
        columns = torch.where(is_token, context, 0) + slot_offset  # (B, T, k), ids into the k*V columns
        gathered = F.embedding(columns, self.fc_in.weight.t())  # (B, T, k, H)
        return (gathered * is_token.unsqueeze(-1)).sum(2) + self.fc_in.bias

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.forward_step(idx, None)[0]  # (B, T, V)

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, hidden): the MLP before its head, i.e. forward() without the head."""
        return self._hidden(idx, None)[0]

    def forward_step(self, idx: torch.Tensor, state=None):
        hidden, state = self._hidden(idx, state)
        return self.head(hidden), state

    def _hidden(self, idx: torch.Tensor, state):
        # The prediction after each token needs only the k - 1 tokens before it, so that is the whole
        # state: (B, k - 1) ids, all padding at the start of a sequence.
        if state is None:
            state = idx.new_full((idx.size(0), self.k - 1), self.pad)
        tokens = torch.cat((state, idx), dim=1)  # (B, k - 1 + t)
        context = tokens.unfold(1, self.k, 1)  # (B, t, k): the window ending at each new token
        hidden = self.inner(F.silu(self.first_layer(context)))  # (B, t, H)
        return hidden, tokens[:, tokens.size(1) - (self.k - 1):]
