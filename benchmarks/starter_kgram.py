"""A faithful starter-style k-gram MLP, kept only as a benchmark baseline (never used by the pipeline).

This is the shape of the course starter's `KGramMLPSeqModel`: the input is sequence-first (seq_len, batch);
forward loops in Python over every position t (in chunks of `chunk_size`, 1 by default) and, inside, over
every batch row b; for each (t, b) it builds the k previous token ids (left-padded with token 0 before the
start), one-hot encodes them to a (k, vocab) tensor, flattens it to one k*vocab float row and runs the MLP
on that single row. The MLP is the one the starter asks for (its `self.net`): Linear(k*vocab, hidden) ->
SiLU -> `num_inner_layers` x (Linear(hidden, hidden) -> SiLU) -> Linear(hidden, vocab).

So a step of batch B x seq T makes B*T separate (1, k*vocab) @ (k*vocab, hidden) products, each reading the
whole first-layer weight (k * 50257 * hidden floats, 154 MB at k=3, hidden=256), and autograd keeps B*T
graphs whose backward writes a full first-layer weight gradient each. src/picollm/models/kgram.py computes
the same function for all positions at once (tests/test_models.py checks the one-hot/embedding equivalence).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StarterKGramMLPSeqModel(nn.Module):
    def __init__(self, vocab_size: int, k: int = 3, embed_size: int = 1024, num_inner_layers: int = 1,
                 chunk_size: int = 1):
        super().__init__()
        self.k, self.vocab_size, self.embed_size = k, vocab_size, embed_size
        self.num_inner_layers, self.chunk_size = num_inner_layers, chunk_size
        layers = [nn.Linear(k * vocab_size, embed_size), nn.SiLU()]
        for _ in range(num_inner_layers):
            layers += [nn.Linear(embed_size, embed_size), nn.SiLU()]
        layers.append(nn.Linear(embed_size, vocab_size))
        self.net = nn.Sequential(*layers)

    def forward(self, tokens_seq: torch.Tensor) -> torch.Tensor:
        """tokens_seq (seq_len, batch) -> logits (seq_len, batch, vocab_size), one position at a time."""
        seq_len, batch_size = tokens_seq.shape
        outputs = []
        start = 0
        while start < seq_len:
            end = min(start + self.chunk_size, seq_len)
            block_outputs = []
            for t in range(start, end):
                batch_logits = []
                for b in range(batch_size):
                    if t < self.k:
                        needed = self.k - t
                        context_ids = [0] * needed + tokens_seq[:t, b].tolist()
                    else:
                        context_ids = tokens_seq[t - self.k:t, b].tolist()
                    context_oh = F.one_hot(torch.tensor(context_ids, dtype=torch.long, device=tokens_seq.device),
                                           num_classes=self.vocab_size)
                    context_flat = context_oh.flatten().float().unsqueeze(0)  # (1, k * vocab)
                    logits_b = self.net(context_flat)  # (1, vocab)
                    batch_logits.append(logits_b)
                block_outputs.append(torch.cat(batch_logits, dim=0).unsqueeze(0))  # (1, batch, vocab)
            block_outputs = torch.cat(block_outputs, dim=0)  # (chunk, batch, vocab)
            outputs.append(block_outputs)
            start = end
        return torch.cat(outputs, dim=0)  # (seq_len, batch, vocab)

