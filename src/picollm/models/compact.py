"""A compact output vocabulary: the model predicts the tokens seen in the training split one by one, and every
unseen token of the full vocabulary shares one embedding row and one output row.

It is a full-vocabulary model whose unseen rows are tied: its logits over all V ids are the kept ids' logits
plus the shared row's logit at each unseen id, so it exports as a plain Llama (picollm.export writes the shared
row once per unseen id) and its losses and bits per byte compare with any full-vocabulary model. Its head and
softmax run over K + 1 columns: the shared row's column stands for all n unseen ids, so log(n) is added to it.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

# Written into checkpoints and training's resume fingerprint: a compact model of another form (the unseen ids'
# logits defined otherwise) is not loaded or resumed as this one.
FORM = "shared-row"


class CompactVocab(nn.Module):
    def __init__(self, inner: nn.Module, kept_ids, vocab_size: int):
        super().__init__()
        kept = torch.as_tensor(sorted(set(int(i) for i in kept_ids)), dtype=torch.long)
        other = len(kept)  # the compact index of the unseen ids' shared row
        if other >= vocab_size:
            raise ValueError("a compact vocabulary must leave at least one token out")
        to_compact = torch.full((vocab_size,), other, dtype=torch.long)
        to_compact[kept] = torch.arange(other)
        self.inner, self.vocab_size, self.other = inner, vocab_size, other
        self.register_buffer("to_compact", to_compact)
        # the shared row's column holds n ids' probability: log(n) on that column, 0 on the kept ids'
        self.log_unseen = math.log(vocab_size - other)
        shift = torch.zeros(other + 1)
        shift[other] = self.log_unseen
        self.register_buffer("column_shift", shift, persistent=False)

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
        """(..., K + 1) -> (..., V): each unseen id takes the shared row's logit."""
        return compact_logits.index_select(-1, self.to_compact)

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

    def head_bias(self) -> torch.Tensor:
        """What the compact softmax adds to the head's output: its own bias (if any) and log(n) on the shared
        column, so that the K + 1 columns' normalizer is the full vocabulary's."""
        bias = self.inner.head.bias
        return self.column_shift if bias is None else bias + self.column_shift

    def targets(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-vocabulary target ids -> their compact columns (flattened), and the nats each adds to its
        column's cross-entropy: an unseen id has 1/n of its column's probability, so log(n) more loss."""
        target = self.to_compact[y].reshape(-1)
        return target, (target == self.other) * self.log_unseen

    def expanded(self) -> nn.Module:
        """The same network as a plain full-vocabulary model: the shared rows copied to every unseen id."""
        full = copy.deepcopy(self.inner)
        tied = full.head.weight is full.tok_emb.weight
        full.tok_emb.weight = nn.Parameter(full.tok_emb.weight.detach()[self.to_compact])
        full.head.weight = full.tok_emb.weight if tied else nn.Parameter(full.head.weight.detach()[self.to_compact])
        if full.head.bias is not None:
            full.head.bias = nn.Parameter(full.head.bias.detach()[self.to_compact])
        full.tok_emb.num_embeddings = full.head.out_features = full.vocab_size = self.vocab_size
        return full


def scoring_head(model: nn.Module, y: torch.Tensor) -> tuple:
    """(weight, bias, targets, unseen_nats): the output layer a model's features enter and what it scores the
    full-vocabulary targets y against, for picollm.loss and picollm.evaluate alike. A plain model: its head,
    y flattened, None. A compact vocabulary: its head over K + 1 columns (with head_bias), each target's
    column, and the nats each target adds to its column's cross-entropy (CompactVocab.targets)."""
    if isinstance(model, CompactVocab):
        return (model.inner.head.weight, model.head_bias(), *model.targets(y))
    return model.head.weight, model.head.bias, y.reshape(-1), None
