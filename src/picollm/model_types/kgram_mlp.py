"""k-gram MLP: its study-file keys and training FLOPs (the model: picollm.models.kgram)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from picollm.model_types import ModelKeys, matmul

IMPLEMENTATION = "picollm.models.kgram:KGramMLP"


class KGramConfig(ModelKeys):
    k: int = Field(3, ge=1, description="tokens of context")
    embed_dim: int = Field(64, ge=1, description="token embedding width (unused with input: onehot)")
    hidden_dim: int = Field(256, ge=1)
    num_inner_layers: int = Field(1, ge=0, description="hidden-to-hidden layers after the first")
    input: Literal["embedding", "onehot"] = Field("embedding", description="how the k tokens enter the MLP")


def flops_parts(cfg, block_size: int) -> dict:
    # onehot's first layer gathers k weight columns (kgram.py), a lookup like an embedding: no matmul
    first = matmul(cfg.k * cfg.embed_dim, cfg.hidden_dim) if cfg.input == "embedding" else 0
    return {"input": first, "core": cfg.num_inner_layers * matmul(cfg.hidden_dim, cfg.hidden_dim)}
