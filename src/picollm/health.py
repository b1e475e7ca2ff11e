"""Layer health of a Transformer in training: per block, the gradient norm of the attention weights and of
the MLP weights, and the RMS of the residual stream the block writes, every logged step.

The global gradient norm and the head's input RMS (metrics.csv) say *that* something explodes or vanishes;
these say *where*: a block whose gradients grow step after step, or a residual stream whose scale climbs
with depth. Measured only on logged steps: other steps register no hooks and compute nothing extra.
"""
from __future__ import annotations

import contextlib

import torch

from picollm.models import CompactVocab

HEALTH_COLUMNS = ["step", "tokens_seen", "block", "attn_grad_norm", "mlp_grad_norm", "resid_rms"]


def transformer_blocks(model: torch.nn.Module) -> list:
    """The blocks of a Transformer (also one inside a CompactVocab); [] for every other model.

    Recognised by shape (blocks holding `attn` and `mlp`), not by class: importing the Transformer here would
    make every model's training code depend on the Transformer's module (jobs.model_code).
    """
    core = model.inner if isinstance(model, CompactVocab) else model
    blocks = list(getattr(core, "blocks", []))
    return blocks if blocks and all(hasattr(b, "attn") and hasattr(b, "mlp") for b in blocks) else []


@contextlib.contextmanager
def residual_rms(blocks: list):
    """Collects, per block, the RMS of the residual stream it outputs in the forward pass run inside.

    The RMS stays a device tensor until health_rows reads them all at once (one synchronisation per logged
    step, not one per block). With no blocks nothing is hooked.
    """
    found = []

    def hook(module, inputs, output):
        found.append(output[0].detach().float().pow(2).mean().sqrt())  # Block returns (x, cache, weights)

    handles = [block.register_forward_hook(hook) for block in blocks]
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def grad_norm(module: torch.nn.Module) -> torch.Tensor:
    """The L2 norm of all of a module's gradients together, as clip_grad_norm_ measures the global one."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(norms).norm() if norms else torch.tensor(float("nan"))


def health_rows(step: int, tokens_seen: int, blocks: list, resid: list) -> list[dict]:
    """One row per block. Call after backward and before clipping, which scales the gradients in place."""
    if len(resid) != len(blocks):
        raise RuntimeError(f"expected one residual RMS per block ({len(blocks)}), got {len(resid)}")
    device = resid[0].device if resid else torch.device("cpu")
    values = torch.stack([torch.stack((grad_norm(b.attn).to(device), grad_norm(b.mlp).to(device), r))
                          for b, r in zip(blocks, resid)]).tolist()
    return [{"step": step, "tokens_seen": tokens_seen, "block": i, "attn_grad_norm": attn, "mlp_grad_norm": mlp,
             "resid_rms": rms} for i, (attn, mlp, rms) in enumerate(values)]
