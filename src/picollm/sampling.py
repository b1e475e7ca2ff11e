"""Decoding: greedy and true nucleus (top-p) sampling, and generate() over any pico-llm model.

Nucleus sampling (Holtzman et al., 2020): softmax, sort by probability, keep the smallest prefix whose
cumulative mass reaches p (always at least one token), renormalize, draw. p = 1.0 is the full distribution.
"""
from __future__ import annotations

import hashlib

import torch

from picollm.config import SamplingConfig
from picollm.errors import PicoError
from picollm.io import note


def nucleus_sample(logits: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of `logits` (..., vocab) -> LongTensor (...)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
    if p < 1.0:
        # keep token i if the mass strictly before it is < p: the smallest prefix reaching p, first token always kept
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs * (mass_before < p)
    sorted_probs = sorted_probs / sorted_probs.sum(dim=-1, keepdim=True)
    flat = sorted_probs.reshape(-1, sorted_probs.size(-1))
    if generator is not None and generator.device != flat.device:
        flat = flat.to(generator.device)
    choice = torch.multinomial(flat, 1, generator=generator).to(sorted_ids.device)  # (N, 1) rank in sorted order
    return sorted_ids.reshape(-1, sorted_ids.size(-1)).gather(1, choice).reshape(logits.shape[:-1])


@torch.no_grad()
def generate(model: torch.nn.Module, prompt_ids, max_new_tokens: int, p: float | None = None,
             seed: int | None = None, stop_token: int | None = None) -> torch.Tensor:
    """Continue `prompt_ids` ((T,) or (B, T)) by up to `max_new_tokens`; returns prompt + new tokens.

    p=None is greedy. The model's incremental state (KV cache, LSTM state, k-gram context) is carried
    between steps, so each new token costs one position. A prompt longer than block_size keeps its last
    block_size tokens; for a Transformer, when the cache fills, it restarts from the last block_size // 2
    tokens (a sliding window that costs one prefill every block_size // 2 tokens). With `stop_token`,
    generation ends once every row has produced it (rows that finished early are padded with it).
    """
    ids = torch.as_tensor(prompt_ids, dtype=torch.long)
    squeeze = ids.dim() == 1
    ids = ids.view(1, -1) if squeeze else ids
    if ids.size(1) == 0:
        raise PicoError("the prompt tokenizes to nothing; give at least one token (the sample stage prepends "
                        "end-of-text, so an empty prompt string works there)")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    limit, bounded = model.block_size, getattr(model, "context_limited", False)
    was_training = model.training
    model.eval()

    context = ids[:, -limit:].to(device)
    logits, state = model.forward_step(context, None)
    n_cached = context.size(1)
    new_tokens = []
    finished = torch.zeros(ids.size(0), dtype=torch.bool)
    for _ in range(max_new_tokens):
        last = logits[:, -1, :].float().cpu()
        token = last.argmax(dim=-1) if p is None else nucleus_sample(last, p, generator)
        if stop_token is not None:
            token = torch.where(finished, torch.full_like(token, stop_token), token)
            finished |= token == stop_token
        new_tokens.append(token)
        if stop_token is not None and finished.all():
            break
        if bounded and n_cached + 1 > limit:
            recent = torch.cat([ids, torch.stack(new_tokens, dim=1)], dim=1)[:, -(limit // 2):]
            logits, state = model.forward_step(recent.to(device), None)
            n_cached = recent.size(1)
        else:
            logits, state = model.forward_step(token.view(-1, 1).to(device), state)
            n_cached += 1
    model.train(was_training)
    out = torch.cat([ids, torch.stack(new_tokens, dim=1)], dim=1) if new_tokens else ids
    return out[0] if squeeze else out


def sample_seed(base_seed: int, *keys) -> int:
    """A stable per-sample seed: a sample table is reproducible, and adding a prompt leaves others unchanged."""
    digest = hashlib.sha256(repr((base_seed, *keys)).encode()).digest()
    return int.from_bytes(digest[:6], "little")


def decodings(p_values) -> list:
    """Greedy first, then each configured p."""
    return ["greedy", *[float(p) for p in p_values]]


def sample_records(model, tokenizer, name: str, sampling: SamplingConfig, seed: int) -> list[dict]:
    """One record per (prompt, decoding, sample) for the sample stage's JSONL.

    Each prompt is preceded by the end-of-text token, as every training document is, so a prompt reads
    as the start of a story and an empty prompt means 'start a new story'. A sample is cut at its first
    end-of-text; `ended` says whether it emitted one within max_new_tokens (ended its story).
    """
    eot = tokenizer.eot_token
    records = []
    for prompt_index, prompt in enumerate(sampling.prompts):
        prompt_ids = [eot, *tokenizer.encode_ordinary(prompt)]
        if len(prompt_ids) > model.block_size:
            note(f"prompt {prompt_index} has {len(prompt_ids)} tokens, more than block_size "
                 f"{model.block_size}; the model sees its last {model.block_size}")
        for decoding in decodings(sampling.p_values):
            for sample in range(1 if decoding == "greedy" else sampling.num_samples):
                s = sample_seed(seed, name, prompt, decoding, sample)
                out = generate(model, prompt_ids, sampling.max_new_tokens, p=None if decoding == "greedy" else decoding,
                               seed=s, stop_token=eot if sampling.stop_at_eot else None)
                new = out[len(prompt_ids):].tolist()
                ended = eot in new  # the story ended within max_new_tokens
                if ended:
                    new = new[:new.index(eot)]
                records.append({"model": name, "prompt": prompt, "decoding": decoding,
                                "p": None if decoding == "greedy" else decoding, "sample": sample, "seed": s,
                                "text": tokenizer.decode(new), "new_tokens": len(new), "token_ids": new,
                                "ended": ended})
    return records


def sweep_records(model, tokenizer, name: str, sampling: SamplingConfig, seed: int) -> list[dict]:
    """Samples at the sweep_p_values the sample stage did not draw (a denser p sweep, for the evaluate stage),
    seeded as sample_records seeds them."""
    extra = sorted({float(p) for p in sampling.sweep_p_values} - {float(p) for p in sampling.p_values})
    if not extra:
        return []
    records = sample_records(model, tokenizer, name, sampling.model_copy(update={"p_values": extra}), seed)
    return [{**r, "origin": "sweep"} for r in records if r["decoding"] != "greedy"]
