"""The training loss: next-token cross-entropy over the full vocabulary, with the LM head and the loss fused
(picollm.fused_head, in the plan picollm.head_plan measured for this machine) so that the (batch x time x
vocabulary) logits are never built, and the validation loss over fixed windows.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from picollm.data.tokens import eval_windows
from picollm.fused_head import HeadPlan, fused_cross_entropy
from picollm.head_plan import plan_for, plan_record
from picollm.models import CompactVocab
from picollm.models.compact import scoring_head


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy in nats over the full vocabulary.

    The LM head and the loss run fused (linear_cross_entropy), so the (B, T, V) logits are never built.
    `stats`, if given, receives the RMS of the features entering the head ("rms"): one number per step that
    shows exploding or vanishing activations, for every model type alike.
    """
    if not hasattr(model, "features"):  # any other module mapping ids to logits
        logits = model(x)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
    h = model.features(x)  # (B, T, H): everything before the head
    if stats is not None:
        stats["rms"] = h.detach().float().pow(2).mean().sqrt()
    weight, bias, targets, unseen_nats = scoring_head(model, y)
    if unseen_nats is None:
        return linear_cross_entropy(h.reshape(-1, h.size(-1)), weight, bias, targets)
    # a compact head: K + 1 columns, small enough for plain autograd (head plans are measured for full vocabularies)
    logits = F.linear(h, weight, bias)  # (B, T, K + 1)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets, reduction="none")
    return (loss + unseen_nats).mean()


def head_plan_record(model: torch.nn.Module, device) -> dict | None:
    """The plan (picollm.head_plan) lm_loss runs this model's fused head with, measured now if this machine has
    none cached, with its source and the machine it holds for; None for a model without the fused head."""
    if not hasattr(model, "features") or isinstance(model, CompactVocab):
        return None
    vocab, hidden = model.head.weight.shape
    record = plan_record(vocab, hidden, device)
    return {k: record[k] for k in ("plan", "source", "machine", "measured_utc", "cache") if k in record}


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias, targets: torch.Tensor,
                         plan: HeadPlan | None = None) -> torch.Tensor:
    """F.cross_entropy(F.linear(h, weight, bias).float(), targets) for h (N, H), without the (N, V) logits.

    `plan` (chunk, matmul libraries, and up to how many rows plain autograd is faster) defaults to the one
    measured for this machine and these shapes (picollm.head_plan.plan_for: timed once, then cached).
    """
    plan = plan or plan_for(weight.size(0), weight.size(1), h.device)
    if h.size(0) <= plan.plain_rows:  # few rows: plain autograd measured faster, and its (N, V) tensors are small
        return F.cross_entropy(F.linear(h, weight, bias).float(), targets)
    return fused_cross_entropy(h, weight, bias, targets, plan)


@torch.no_grad()
def validation_loss(model, tokens: np.ndarray, block_size: int, batch_size: int, device, max_windows=None,
                    autocast=None) -> float:
    """Mean next-token loss over fixed, non-overlapping windows of a split (the same windows every call)."""
    was_training = model.training
    model.eval()
    starts = eval_windows(len(tokens), block_size, max_windows)
    total, count = 0.0, 0
    for i in range(0, len(starts), batch_size):
        rows = starts[i:i + batch_size, None] + np.arange(block_size + 1)
        window = torch.from_numpy(tokens[rows].astype(np.int64)).to(device)
        with autocast or torch.autocast(device.type, enabled=False):
            loss = lm_loss(model, window[:, :-1], window[:, 1:])
        total += loss.item() * window.size(0)
        count += window.size(0)
    model.train(was_training)
    return total / count
