"""The models, optimizer, data windows and training step every benchmark shares, built the trainer's way."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.profiler import record_function

from benchmarks.common import REPO, Sizes
from picollm.data.meta import SourceRange
from picollm.data.tokens import WindowSampler
from picollm.models import build_model
from picollm.loss import lm_loss
from picollm.train import make_optimizer

CPU = torch.device("cpu")


@functools.cache
def default_train_cfg():
    """config/config.yaml's train section (a TrainConfig: lr, betas, decay, clip, optimizer)."""
    from picollm.config import load_study
    return load_study([REPO / "config" / "config.yaml"]).train


def transformer_cfg(sz: Sizes) -> dict:
    return {"type": "transformer", "d_model": sz.d_model, "n_heads": sz.n_heads, "n_layers": sz.n_layers,
            "pos_encoding": "learned"}


def kgram_cfg(sz: Sizes, input: str) -> dict:
    return {"type": "kgram_mlp", "k": sz.kgram_k, "embed_dim": sz.kgram_embed, "hidden_dim": sz.kgram_hidden,
            "num_inner_layers": sz.kgram_inner, "input": input}


def lstm_cfg(sz: Sizes) -> dict:
    return {"type": "lstm", "embed_dim": sz.lstm_embed, "hidden_dim": sz.lstm_hidden, "num_layers": 1}


def ours(model_cfg: dict, sz: Sizes, block: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model_cfg, sz.vocab, block)


def hf_gpt2(sz: Sizes, block: int, seed: int = 0) -> torch.nn.Module:
    """GPT2LMHeadModel with the same sizes as our Transformer: random init, nothing downloaded."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    config = GPT2Config(n_embd=sz.d_model, n_layer=sz.n_layers, n_head=sz.n_heads, n_positions=block,
                        vocab_size=sz.vocab, bos_token_id=sz.vocab - 1, eos_token_id=sz.vocab - 1,
                        attn_implementation="sdpa")  # GPT-2's end-of-text is its last id, 50256
    model = GPT2LMHeadModel(config)
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model


def starter(sz: Sizes, seed: int = 0) -> torch.nn.Module:
    from benchmarks.starter_kgram import StarterKGramMLPSeqModel
    torch.manual_seed(seed)
    return StarterKGramMLPSeqModel(sz.vocab, k=sz.kgram_k, embed_size=sz.kgram_hidden,
                                   num_inner_layers=sz.kgram_inner)


def hf_loss(model, x, y):
    """The trainer's loss on HF's logits: same cross-entropy, no label shifting (y is already shifted)."""
    logits = model(input_ids=x, use_cache=False).logits  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))


def starter_loss(model, x, y):
    """The starter model is sequence-first: (T, B) in, (T, B, V) out."""
    logits = model(x.t().contiguous())
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.t().reshape(-1))


LOSSES = {"ours": lm_loss, "hf": hf_loss, "starter": starter_loss}


class RandomTokens:
    """A memory-mapped token file of random ids (uint16/uint32 like the pipeline's .bin) and its sampler."""

    def __init__(self, vocab: int, n_tokens: int = 200_000, seed: int = 0):
        self._dir = tempfile.TemporaryDirectory(prefix="picollm-bench-")
        dtype = np.uint16 if vocab <= 2 ** 16 else np.uint32
        path = Path(self._dir.name) / "train.bin"
        np.random.default_rng(seed).integers(0, vocab, n_tokens, dtype=np.int64).astype(dtype).tofile(path)
        self.tokens = np.memmap(path, dtype=dtype, mode="r")
        self.sources = {"bench": SourceRange(start=0, end=n_tokens)}

    def sampler(self, block: int, seed: int = 0) -> WindowSampler:
        return WindowSampler(self.tokens, self.sources, {"bench": 1.0}, block, seed)


def train_step(model: torch.nn.Module, loss_fn, sampler: WindowSampler, batch: int, train_cfg=None):
    """One trainer step as a callable: draw a window batch, loss, zero_grad, backward, clip, AdamW step.

    The optimizer is picollm.train.make_optimizer with config/config.yaml's train settings, for every model.
    """
    cfg = train_cfg or default_train_cfg()
    model.train()
    optimizer = make_optimizer(model, cfg, CPU)
    clip = cfg.grad_clip or float("inf")

    def step():
        x, y = sampler.batch(batch)
        loss = loss_fn(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with record_function("grad_clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return loss.item()

    step.optimizer = optimizer
    return step
