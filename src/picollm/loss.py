"""The training loss: next-token cross-entropy over the full vocabulary, with the LM head and the loss fused
so that the (batch x time x vocabulary) logits are never built, and the validation loss over fixed windows.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from picollm.data.tokens import eval_windows
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


class _LinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(h_i W^T + b, y_i), chunk by chunk of rows, with the gradients computed in the forward pass.

    Each chunk's softmax is turned in place into the logits' gradient (softmax - one_hot(y)) / N and multiplied
    straight into grad h and (accumulating in place) grad W, so no (N, V) tensor, no log-softmax output and no
    zero-filled (N, V) gradient ever exist: on a large vocabulary the (N, V) tensors are most of a small model's
    step time and set its peak memory.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk, with_grad):
        n = h.size(0)
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty(h.shape, dtype=weight.dtype, device=h.device) if with_grad else None
        grad_w = torch.zeros_like(weight) if with_grad else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if with_grad and bias is not None else None
        for s in range(0, n, chunk):
            hc, yc = h[s:s + chunk], targets[s:s + chunk]
            logits = F.linear(hc, weight, bias).float()  # (c, V)
            lse = torch.logsumexp(logits, dim=-1)  # (c,)
            loss += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum()
            if with_grad:
                grad = logits.sub_((lse + math.log(n))[:, None]).exp_()  # softmax / n, in place: (c, V)
                grad[torch.arange(yc.numel(), device=h.device), yc] -= 1.0 / n
                grad = grad.to(weight.dtype)
                torch.mm(grad, weight, out=grad_h[s:s + chunk])
                grad_w.addmm_(grad.t(), hc.to(weight.dtype))  # in place: no (V, H) temporary per chunk
                if grad_b is not None:
                    grad_b += grad.float().sum(0)
        if with_grad:
            ctx.save_for_backward(grad_h.to(h.dtype), grad_w, None if grad_b is None else grad_b.to(bias.dtype))
        return loss / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        return (grad_h * grad_out, grad_w * grad_out, None if grad_b is None else grad_b * grad_out,
                None, None, None)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias, targets: torch.Tensor,
                         chunk: int = 128) -> torch.Tensor:
    """F.cross_entropy(F.linear(h, weight, bias).float(), targets) for h (N, H), without the (N, V) logits.

    A chunk of 128 rows keeps one chunk's fp32 logits (26 MB at V = 50257) within the CPU's caches' reach
    while its matmuls stay large enough to run at speed.
    """
    with_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _LinearCrossEntropy.apply(h, weight, bias, targets, chunk, with_grad)


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
