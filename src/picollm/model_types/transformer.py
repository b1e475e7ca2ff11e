"""Transformer: its study-file keys, the checks between them, and its training FLOPs (the model:
picollm.models.transformer)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from picollm.model_types import ModelKeys, matmul

IMPLEMENTATION = "picollm.models.transformer:Transformer"


class TransformerConfig(ModelKeys):
    d_model: int = Field(128, ge=1, description="residual stream width")
    n_heads: int = Field(4, ge=1, description="attention heads (must divide d_model)")
    n_layers: int = Field(2, ge=1)
    mlp_hidden: Optional[int] = Field(None, ge=1, description="MLP width; null: 4 d_model (gelu, silu) or 8/3 d_model (swiglu)")
    mlp: Literal["gelu", "silu", "swiglu"] = Field("gelu", description=(
        "gelu (GPT-2's tanh GELU) or silu: act(x W1) W2; swiglu: (silu(x W_gate) * x W_up) W2"))
    norm: Literal["rmsnorm", "layernorm"] = Field("rmsnorm", description=(
        "the pre-norm of every block and the final norm: RMSNorm (LLaMA) or LayerNorm (GPT-2)"))
    bias: bool = Field(False, description="biases in every Linear layer and LayerNorm (GPT-2: true; LLaMA: false)")
    pos_encoding: Literal["learned", "rope"] = "learned"
    dropout: float = Field(0.0, ge=0, lt=1)
    tie_weights: bool = Field(True, description="the LM head shares the token embedding")
    rope_base: float = Field(10000.0, gt=0)

    @model_validator(mode="after")
    def _heads_fit(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.pos_encoding == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"rope rotates pairs of channels, so d_model / n_heads ({self.d_model // self.n_heads}) "
                             f"must be even")
        return self


def default_mlp_width(d_model: int, mlp: str) -> int:
    """The MLP's hidden width when mlp_hidden is null: one helper for the FLOPs and the network it counts.
    SwiGLU has three weight matrices instead of two: 2/3 of 4 d_model keeps the parameter count."""
    return 8 * d_model // 3 if mlp == "swiglu" else 4 * d_model


def mlp_width(cfg) -> int:
    """The MLP's hidden width: mlp_hidden, or default_mlp_width."""
    return cfg.mlp_hidden if cfg.mlp_hidden is not None else default_mlp_width(cfg.d_model, cfg.mlp)


def head_width(cfg) -> int:
    return cfg.d_model


def flops_parts(cfg, block_size: int) -> dict:
    d, hidden = cfg.d_model, mlp_width(cfg)
    up = matmul(d, 2 * hidden if cfg.mlp == "swiglu" else hidden)  # SwiGLU's gate and up in one matrix
    layer = matmul(d, 3 * d) + matmul(d, d) + up + matmul(hidden, d)  # qkv, output projection, MLP
    # q k^T and (weights) v: each query against all block_size keys, over every head (n_heads x head_dim = d)
    attention = 2 * matmul(block_size, d)
    return {"core": cfg.n_layers * layer, "attention": cfg.n_layers * attention}
