"""Decoder-only transformer: token (+ learned position) embedding -> pre-norm blocks of causal
self-attention and an MLP -> final norm -> linear head, with rotary positions as an option and a KV cache
for generation.

The defaults are LLaMA's RMSNorm and bias-free layers with GPT-2's tanh-GELU MLP; `norm: layernorm, bias: true`
with learned positions and a tied head is GPT-2's network exactly (tests/test_models.py checks it against
transformers' GPT2LMHeadModel), so the two families can be compared in one study. The hyperparameters arrive
checked (picollm.model_types.transformer: heads divide d_model, rope's head width is even, the enums).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from picollm.model_types.transformer import default_mlp_width
from picollm.models.head import Head


class RMSNorm(nn.Module):
    """Scale each vector to unit root-mean-square, then by a learned per-channel gain (no centring, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The mean of squares in float32: under bf16 autocast it would lose most of its precision.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + hd/2]) of every head vector by the angle position * freq_i.

    x is (B, nh, t, hd), cos and sin (t, hd/2) in float32. Rotating q and k alike makes q.k depend only
    on the distance between their positions. The rotation runs in float32 (bf16 angles drift) and the
    result keeps x's dtype, so the KV cache has a single dtype under autocast.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


def causal_mask(t: int, cached: int, device) -> torch.Tensor:
    """(t, cached + t) boolean mask, True where new token i may attend: all cached tokens and new tokens <= i."""
    return torch.ones(t, cached + t, dtype=torch.bool, device=device).tril(diagonal=cached)


def make_norm(kind: str, dim: int, bias: bool) -> nn.Module:
    # LayerNorm's eps is GPT-2's; its bias goes with the Linear layers' (nanoGPT's `bias` switch).
    return RMSNorm(dim) if kind == "rmsnorm" else nn.LayerNorm(dim, eps=1e-5, bias=bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, rope=None, cache=None, need_weights: bool = False):
        """x (B, t, C) of t new tokens after the cache's L -> (output (B, t, C), new cache, weights or None).

        need_weights takes the explicit softmax(q k^T / sqrt(hd)) path instead of the fused kernel and
        also returns the attention weights (B, nh, t, L + t).
        """
        B, t, C = x.shape
        q, k, v = (z.view(B, t, self.n_heads, C // self.n_heads).transpose(1, 2)
                   for z in self.qkv(x).split(C, dim=2))  # each (B, nh, t, hd)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        cached = 0
        if cache is not None:
            cached = cache[0].size(2)
            k = torch.cat((cache[0], k), dim=2)  # (B, nh, L + t, hd)
            v = torch.cat((cache[1], v), dim=2)
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(k.size(-1))  # (B, nh, t, L + t)
            weights = scores.masked_fill(~causal_mask(t, cached, x.device), float("-inf")).softmax(dim=-1)
            y = F.dropout(weights, dropout_p, self.training) @ v
        else:
            # sdpa's is_causal aligns its triangle to the top left, which is right only without a cache;
            # a single new token may see everything, so needs no mask; otherwise pass the mask explicitly.
            is_causal = cached == 0 and t > 1
            mask = causal_mask(t, cached, x.device) if cached > 0 and t > 1 else None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
        y = y.transpose(1, 2).reshape(B, t, C)  # (B, t, C): heads side by side again
        return self.resid_drop(self.proj(y)), (k, v), weights


class MLP(nn.Module):
    def __init__(self, d_model: int, hidden: int, kind: str, dropout: float, bias: bool):
        super().__init__()
        self.kind = kind
        self.gated = kind == "swiglu"
        # SwiGLU computes silu(x W_gate) * (x W_up): one Linear makes both halves.
        self.fc = nn.Linear(d_model, 2 * hidden if self.gated else hidden, bias=bias)
        self.proj = nn.Linear(hidden, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.kind == "gelu":
            h = F.gelu(h, approximate="tanh")  # GPT-2's GELU ("gelu_new")
        else:
            h = F.silu(h)
        return self.drop(self.proj(h))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, mlp_hidden: int, mlp: str, dropout: float, norm: str,
                 bias: bool):
        super().__init__()
        self.attn_norm = make_norm(norm, d_model, bias)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, bias)
        self.mlp_norm = make_norm(norm, d_model, bias)
        self.mlp = MLP(d_model, mlp_hidden, mlp, dropout, bias)

    def forward(self, x: torch.Tensor, rope, cache, need_weights: bool):
        attn_out, cache, weights = self.attn(self.attn_norm(x), rope, cache, need_weights)
        x = x + attn_out
        x = x + self.mlp(self.mlp_norm(x))
        return x, cache, weights


class Transformer(nn.Module):
    context_limited = True  # the KV cache and the position table stop at block_size tokens

    def __init__(self, vocab_size: int, block_size: int, *, d_model: int, n_heads: int, n_layers: int, mlp_hidden: int | None,
                 mlp: str, pos_encoding: str, dropout: float, tie_weights: bool, rope_base: float, norm: str,
                 bias: bool):
        super().__init__()
        head_dim = d_model // n_heads
        if mlp_hidden is None:
            mlp_hidden = default_mlp_width(d_model, mlp)
        self.vocab_size, self.block_size = vocab_size, block_size

        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model) if pos_encoding == "learned" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_hidden, mlp, dropout, norm, bias)
                                    for _ in range(n_layers))
        self.norm = make_norm(norm, d_model, bias)
        self.head = Head(d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.tok_emb.weight
        if pos_encoding == "rope":
            inv_freq = 1.0 / rope_base ** (torch.arange(0, head_dim, 2).float() / head_dim)  # (hd/2,)
            angles = torch.outer(torch.arange(block_size).float(), inv_freq)  # (block_size, hd/2)
            # Derived from the hyperparameters, so kept out of the state dict.
            self.register_buffer("rope_cos", angles.cos(), persistent=False)
            self.register_buffer("rope_sin", angles.sin(), persistent=False)

        # GPT-2 init: N(0, 0.02) weights, zero biases, and the projections that write into the residual stream scaled down by
        # 1/sqrt(2 * n_layers) so that the stream's variance does not grow with depth.
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init_weights(module: nn.Module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @staticmethod
    def state_length(state) -> int:
        """How many positions a KV cache holds (0 for None)."""
        return 0 if state is None else state[0][0].size(2)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.forward_step(idx, None)[0]  # (B, T, V)

    def forward_step(self, idx: torch.Tensor, state=None):
        # The state is the KV cache, a (k, v) pair of (B, nh, L, hd) per layer: each new token only
        # attends to it instead of recomputing the prefix.
        logits, state, _ = self._forward(idx, state, need_weights=False)
        return logits, state

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, C): the normalised last hidden state, i.e. forward() without the LM head."""
        return self._forward(idx, None, need_weights=False, head=False)[0]

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Softmax attention weights, one (B, n_heads, T, T) per layer, from the explicit attention path."""
        return self._forward(idx, None, need_weights=True)[2]

    def _forward(self, idx: torch.Tensor, state, need_weights: bool, head: bool = True):
        t = idx.size(1)
        cached = self.state_length(state)
        if cached + t > self.block_size:
            raise ValueError(f"{cached} cached + {t} new tokens exceed block_size {self.block_size}; "
                             f"restart from the last block_size tokens")
        x = self.tok_emb(idx)  # (B, t, C)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[cached:cached + t]  # new tokens sit at positions L .. L + t - 1
        else:
            rope = (self.rope_cos[cached:cached + t], self.rope_sin[cached:cached + t])
        x = self.drop(x)
        new_state, maps = [], []
        for i, block in enumerate(self.blocks):
            x, kv, weights = block(x, rope, None if state is None else state[i], need_weights)
            new_state.append(kv)
            maps.append(weights)
        x = self.norm(x)
        return (self.head(x) if head else x), new_state, maps
