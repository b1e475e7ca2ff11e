"""The fused LM head + cross-entropy: mean_i CE(h_i W^T + b, y_i) chunk by chunk of rows, with the gradients
computed in the forward pass, so that no (rows x vocabulary) tensor is ever built.

A HeadPlan names the rows per chunk and the library of each vocabulary-wide matmul (torch's BLAS or oneDNN);
picollm.head_plan measures which plan is fastest on a machine, and picollm.loss runs the plan it measured.
"""
from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

LIBRARIES = ("torch", "onednn")


@dataclasses.dataclass(frozen=True)
class HeadPlan:
    chunk: int  # rows of h per (chunk, V) block of logits
    logits: str = "torch"  # the library of h_c @ W^T
    grad_h: str = "torch"  # the library of G_c @ W
    decode: str = "torch"  # the library of one row's logits without autograd: a generated token's head
    plain_rows: int = 0  # up to this many rows plain autograd measured faster, and picollm.loss runs it instead
    # G_c^T @ h_c always runs in torch's addmm_, which accumulates grad W in place: oneDNN's inner product
    # returns a new (V, H) tensor per chunk, one more weight-sized tensor and one more pass over it.


@functools.cache
def onednn_available() -> bool:
    """Whether torch has oneDNN's dense-tensor linear (torch.ops.mkldnn._linear_pointwise, as Inductor's CPU
    code calls it) and it runs here."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        x, w = torch.arange(6.0).view(2, 3), torch.arange(12.0).view(4, 3)  # no draw from the seeded generator
        return torch.backends.mkldnn.is_available() and torch.allclose(op(x, w, None, "none", [], ""), x @ w.t(),
                                                                       atol=1e-5)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def block_logits(hc: torch.Tensor, weight: torch.Tensor, bias, library: str, out=None) -> torch.Tensor:
    """hc @ weight^T + bias, (c, V) fp32: into `out` with torch's BLAS, a new tensor with oneDNN."""
    if library == "onednn":
        return torch.ops.mkldnn._linear_pointwise(hc, weight, bias, "none", [], "")
    if bias is None:
        return torch.mm(hc, weight.t(), out=out)
    return torch.addmm(bias, hc, weight.t(), out=out)


def times_weight(grad: torch.Tensor, weight: torch.Tensor, library: str, out: torch.Tensor) -> None:
    """out = grad @ weight: (c, V) x (V, H)."""
    if library == "onednn":  # an inner product with weight^T as its weight: a strided view, no copy
        out.copy_(torch.ops.mkldnn._linear_pointwise(grad, weight.t(), None, "none", [], ""))
    else:
        torch.mm(grad, weight, out=out)


def softmax_grad_(block: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In place: logits (c, V) -> softmax - one_hot(targets), the gradient of the summed cross-entropy.
    Returns it and the summed cross-entropy. One fused log-softmax pass, one exp pass, no (c, V) temporaries."""
    logp = torch.log_softmax(block, dim=-1, out=block)
    loss = -logp.gather(1, targets[:, None]).sum()
    grad = logp.exp_()
    grad[torch.arange(targets.numel(), device=block.device), targets] -= 1.0
    return grad, loss


class _LinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(h_i W^T + b, y_i), chunk by chunk of rows, with the gradients computed in the forward pass.

    Each chunk's logits become, in place, their log-softmax (one fused pass), then softmax - one_hot(y) (one exp
    pass), which is multiplied straight into grad h and, accumulating in place, grad W: no (N, V) tensor and no
    (chunk, V) temporary besides the one block ever exist. On a large vocabulary the (N, V) tensors are most of a
    small model's step time and set its peak memory. `plan` (a HeadPlan) sets the chunk and the library
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


def fused_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias, targets: torch.Tensor,
                        plan: HeadPlan) -> torch.Tensor:
    """F.cross_entropy(F.linear(h, weight, bias).float(), targets) for h (N, H), in `plan`'s chunks and libraries."""
    with_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _LinearCrossEntropy.apply(h, weight, bias, targets, plan, with_grad)
