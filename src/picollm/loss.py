"""The training loss: next-token cross-entropy over the full vocabulary, with the LM head and the loss fused
so that the (batch x time x vocabulary) logits are never built, and the validation loss over fixed windows.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from picollm.data.tokens import eval_windows
from picollm.head_plan import HeadPlan, block_logits, plan_for, plan_record, softmax_grad_, times_weight
from picollm.models import CompactVocab


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
    if isinstance(model, CompactVocab):  # its head is over the compact vocabulary: no full-vocabulary logits
        return model.loss_from_features(h, y)
    return linear_cross_entropy(h.reshape(-1, h.size(-1)), model.head.weight, model.head.bias, y.reshape(-1))


def head_plan_record(model: torch.nn.Module, device) -> dict | None:
    """The plan (picollm.head_plan) lm_loss runs this model's fused head with, measured now if this machine has
    none cached, with its source and the machine it holds for; None for a model without the fused head."""
    if not hasattr(model, "features") or isinstance(model, CompactVocab):
        return None
    vocab, hidden = model.head.weight.shape
    record = plan_record(vocab, hidden, device)
    return {k: record[k] for k in ("plan", "source", "machine", "measured_utc", "cache") if k in record}


class _LinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(h_i W^T + b, y_i), chunk by chunk of rows, with the gradients computed in the forward pass.

    Each chunk's logits become, in place, their log-softmax (one fused pass), then softmax - one_hot(y) (one exp
    pass), which is multiplied straight into grad h and, accumulating in place, grad W: no (N, V) tensor and no
    (chunk, V) temporary besides the one block ever exist. On a large vocabulary the (N, V) tensors are most of a
    small model's step time and set its peak memory. `plan` (picollm.head_plan) sets the chunk and the library
    of each vocabulary-wide matmul; the gradient's 1/N is applied once, to the small grad h and as addmm_'s alpha.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, plan, with_grad):
        n, vocab = h.size(0), weight.size(0)
        chunk = min(plan.chunk, n)
        # Under autocast the logits take its precision through F.linear, as the plain head would; the gradient's
        # matmuls stay in the weight's fp32, accumulated over every chunk.
        autocast = torch.is_autocast_enabled(h.device.type) or weight.dtype != torch.float32 \
            or h.dtype != torch.float32
        block = None if autocast or plan.logits != "torch" else torch.empty(chunk, vocab, device=h.device)
        # the sum of N per-row losses in float64 (where the device has it): its rounding stays below the rows'
        loss = torch.zeros((), dtype=torch.float32 if h.device.type == "mps" else torch.float64, device=h.device)
        grad_h = torch.empty(h.shape, dtype=weight.dtype, device=h.device) if with_grad else None
        grad_w = torch.zeros_like(weight) if with_grad else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if with_grad and bias is not None else None
        for s in range(0, n, chunk):
            hc, yc = h[s:s + chunk], targets[s:s + chunk]
            if autocast:
                logits = F.linear(hc, weight, bias).float()
            else:
                logits = block_logits(hc, weight, bias, plan.logits, None if block is None else block[:hc.size(0)])
            grad, chunk_loss = softmax_grad_(logits, yc)  # (c, V), in place of the logits
            loss += chunk_loss
            if with_grad:
                grad = grad.to(weight.dtype)
                times_weight(grad, weight, plan.grad_h, out=grad_h[s:s + chunk])
                grad_w.addmm_(grad.t(), hc.to(weight.dtype), alpha=1.0 / n)  # in place: no (V, H) per chunk
                if grad_b is not None:
                    grad_b += grad.float().sum(0)
        if with_grad:
            grad_h.mul_(1.0 / n)
            # kept as attributes, not saved tensors: backward scales them in place, once, and lets them go
            ctx.grads = (grad_h, grad_w, None if grad_b is None else grad_b.div_(n).to(bias.dtype))
            ctx.h_dtype = h.dtype
        return (loss / n).float()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.grads
        ctx.grads = None  # a second backward through the same graph has nothing left to give
        return (grad_h.mul_(grad_out).to(ctx.h_dtype), grad_w.mul_(grad_out),
                None if grad_b is None else grad_b.mul_(grad_out), None, None, None)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias, targets: torch.Tensor,
                         plan: HeadPlan | None = None) -> torch.Tensor:
    """F.cross_entropy(F.linear(h, weight, bias).float(), targets) for h (N, H), without the (N, V) logits.

    `plan` (chunk, matmul libraries, and up to how many rows plain autograd is faster) defaults to the one
    measured for this machine and these shapes (picollm.head_plan.plan_for: timed once, then cached).
    """
    plan = plan or plan_for(weight.size(0), weight.size(1), h.device)
    if h.size(0) <= plan.plain_rows:  # few rows: plain autograd measured faster, and its (N, V) tensors are small
        return F.cross_entropy(F.linear(h, weight, bias).float(), targets)
    with_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _LinearCrossEntropy.apply(h, weight, bias, targets, plan, with_grad)


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
