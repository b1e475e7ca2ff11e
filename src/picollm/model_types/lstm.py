"""LSTM: its study-file keys and training FLOPs (the model: picollm.models.lstm)."""
from __future__ import annotations

from pydantic import Field

from picollm.model_types import ModelKeys, matmul

IMPLEMENTATION = "picollm.models.lstm:LSTMLM"


class LSTMConfig(ModelKeys):
    embed_dim: int = Field(128, ge=1)
    hidden_dim: int = Field(256, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1, description="between LSTM layers")


def flops_parts(cfg, block_size: int) -> dict:
    # each layer's four gates: an input projection (embed_dim wide for the first layer, hidden_dim above)
    # and a recurrent projection of the previous hidden state (at the first step the zero initial state,
    # whose gradient autograd skips: 1 / (3 block_size) of the recurrent part counted beyond what runs)
    inputs = [cfg.embed_dim] + [cfg.hidden_dim] * (cfg.num_layers - 1)
    return {"input": sum(matmul(n, 4 * cfg.hidden_dim) for n in inputs),
            "recurrent": cfg.num_layers * matmul(cfg.hidden_dim, 4 * cfg.hidden_dim)}
