"""A compact output vocabulary: the model predicts only the tokens seen in the training split, plus one
"other" class whose probability is spread evenly over every unseen token of the full vocabulary.

The wrapped model still defines a probability for every token id, so losses and bits per byte stay
comparable with a full-vocabulary model, while the output projection and softmax shrink from V to K + 1
columns (TinyStories uses a small part of GPT-2's 50,257 tokens).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CompactVocab(nn.Module):
    def __init__(self, inner: nn.Module, kept_ids, vocab_size: int):
        super().__init__()
        kept = torch.as_tensor(sorted(set(int(i) for i in kept_ids)), dtype=torch.long)
        other = len(kept)  # the compact index of the "other" class
        if other >= vocab_size:
            raise ValueError("a compact vocabulary must leave at least one token out")
        to_compact = torch.full((vocab_size,), other, dtype=torch.long)
        to_compact[kept] = torch.arange(other)
        self.inner, self.vocab_size, self.other = inner, vocab_size, other
        self.register_buffer("to_compact", to_compact)
        # log of how many ids share the "other" mass: subtracted from the other-logit of each unseen id
        self.log_unseen = math.log(vocab_size - other)
        self.register_buffer("logit_shift", (to_compact == other).float() * self.log_unseen)

    @property
    def block_size(self):
        return self.inner.block_size

    @property
    def context_limited(self):
        return getattr(self.inner, "context_limited", False)

    @property
    def blocks(self):  # the Transformer's blocks, for the attention figure
        return self.inner.blocks

    def attention_maps(self, idx):
        return self.inner.attention_maps(self.to_compact[idx])

    def full_logits(self, compact_logits: torch.Tensor) -> torch.Tensor:
        """(..., K + 1) -> (..., V): log-probabilities up to the same normalizer as the compact logits."""
        return compact_logits.index_select(-1, self.to_compact) - self.logit_shift

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.full_logits(self.inner(self.to_compact[idx]))  # (B, T, V)

    def forward_step(self, idx: torch.Tensor, state=None):
        logits, state = self.inner.forward_step(self.to_compact[idx], state)
        return self.full_logits(logits), state

    @property
    def kept_ids(self) -> list[int]:
        """The full-vocabulary ids the model predicts one by one (the training split's tokens)."""
        return self.to_compact.ne(self.other).nonzero().flatten().tolist()

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) full-vocabulary ids -> the inner model's features before its head."""
        return self.inner.features(self.to_compact[idx])

    def loss_from_features(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the full vocabulary, computed in the compact space (never (B, T, V))."""
        logits = self.inner.head(h)  # (B, T, K + 1)
        target = self.to_compact[y].reshape(-1)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target, reduction="none")
        return (loss + (target == self.other) * self.log_unseen).mean()
