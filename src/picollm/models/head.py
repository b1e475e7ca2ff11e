"""The output layer every model ends in: an nn.Linear whose inference calls multiply in the faster library here."""
from __future__ import annotations

import torch
from torch import nn

from picollm.fused_head import block_logits
from picollm.head_plan import plan_for


class Head(nn.Linear):
    """nn.Linear(hidden, vocab), same parameters and state-dict keys. Without autograd, on fp32 CPU inputs, it
    multiplies in the library this machine runs fastest at one row (picollm.head_plan's `decode`, measured once):
    a generated token's cost is mostly this (1, H) x (H, V) product, which streams the whole weight from memory.
    Training never comes here: picollm.loss fuses the head with the loss."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32 \
                or torch.is_autocast_enabled("cpu"):
            return super().forward(x)
        library = plan_for(self.out_features, self.in_features, x.device).decode
        if library == "torch":
            return super().forward(x)
        rows = x.reshape(-1, x.size(-1)).contiguous()
        return block_logits(rows, self.weight, self.bias, library).view(*x.shape[:-1], self.out_features)
