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
    """One token id per row of `logits` (..., vocab) -> LongTensor (...), on the logits' device.

    Only the most probable tokens are sorted: the top k, for the first k in 64, 512, ... whose mass reaches p in
    every row, since the nucleus then ends inside them (a full sort of the vocabulary per token would cost more
    than the model). p = 1.0 draws from the whole distribution, unsorted. `generator` may live on another device
    than the logits (the sample stage's is on the CPU, so a seed draws the same tokens on every device): the
    draw then moves only the kept probabilities there and the chosen rank back.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    probs = torch.softmax(logits.float(), dim=-1).reshape(-1, logits.size(-1))  # (N, V)
    if p == 1.0:
        return _draw(probs, generator).reshape(logits.shape[:-1])
    k = min(64, probs.size(-1))
    while True:
        top, ids = probs.topk(k, dim=-1)  # (N, k), most probable first
        mass = top.cumsum(dim=-1)
        if k == probs.size(-1) or bool((mass[:, -1] >= p).all()):
            break
        k = min(8 * k, probs.size(-1))
    # keep token i if the mass strictly before it is < p: the smallest prefix reaching p, first token always kept
    kept = top * (mass - top < p)
    rank = _draw(kept / kept.sum(dim=-1, keepdim=True), generator)  # (N,) rank among the top k
    return ids.gather(1, rank[:, None]).reshape(logits.shape[:-1])


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of probs (N, n), drawn with `generator` on its own device."""
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator)[:, 0].to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def generate(model: torch.nn.Module, prompt_ids, max_new_tokens: int, p: float | None = None,
             seed: int | list[int] | None = None, stop_token: int | None = None) -> torch.Tensor:
    """Continue `prompt_ids` ((T,) or (B, T)) by up to `max_new_tokens`; returns prompt + new tokens (on the CPU).

    p=None is greedy. The model's incremental state (KV cache, LSTM state, k-gram context) is carried
    between steps, so each new token costs one position. A Transformer reads the last block_size tokens of a
    longer prompt, and when its cache fills, restarts from the last block_size // 2 tokens (a sliding window that
    costs one prefill every block_size // 2 tokens); the LSTM and the k-gram MLP read a prompt of any length, a
    block_size of it at a time. With `stop_token`,
    generation ends once every row has produced it (rows that finished early are padded with it).
    `seed` may be one seed per row: row i then draws exactly the tokens it would draw alone with seed[i]
    (given the same logits), so a prompt's samples can run as one batch.
    """
    ids = torch.as_tensor(prompt_ids, dtype=torch.long)
    squeeze = ids.dim() == 1
    ids = ids.view(1, -1) if squeeze else ids
    if ids.size(1) == 0:
        raise PicoError("the prompt tokenizes to nothing; give at least one token (the sample stage prepends "
                        "end-of-text, so an empty prompt string works there)")
    device = next(model.parameters()).device
    generators = row_generators(seed, ids.size(0))
    limit, bounded = model.block_size, getattr(model, "context_limited", False)
    was_training = model.training
    model.eval()

    if bounded:
        logits, state = model.forward_step(ids[:, -limit:].to(device), None)
    else:  # the state carries the whole prompt; block by block, so that no more than a block's logits are held
        state = None
        for start in range(0, ids.size(1), limit):
            logits, state = model.forward_step(ids[:, start:start + limit].to(device), state)
    n_cached = min(ids.size(1), limit)
    new_tokens = []
    finished = torch.zeros(ids.size(0), dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        last = logits[:, -1, :]  # stays on the model's device: no per-token copy of the vocabulary's logits
        token = last.argmax(dim=-1) if p is None else sample_rows(last, p, generators)
        if stop_token is not None:
            token = torch.where(finished, torch.full_like(token, stop_token), token)
            finished |= token == stop_token
        new_tokens.append(token)
        if stop_token is not None and bool(finished.all()):
            break
        if bounded and n_cached + 1 > limit:
            recent = torch.cat([ids.to(device), torch.stack(new_tokens, dim=1)], dim=1)[:, -(limit // 2):]
            logits, state = model.forward_step(recent, None)
            n_cached = recent.size(1)
        else:
            logits, state = model.forward_step(token.view(-1, 1), state)
            n_cached += 1
    model.train(was_training)
    out = torch.cat([ids, torch.stack(new_tokens, dim=1).cpu()], dim=1) if new_tokens else ids
    return out[0] if squeeze else out


def row_generators(seed, rows: int) -> list | None:
    """None (torch's global generator), or one CPU generator per row: from one seed for every row together, or
    from each row's own seed."""
    if seed is None:
        return None
    if isinstance(seed, int):
        return [torch.Generator().manual_seed(seed)]
    if len(seed) != rows:
        raise ValueError(f"{len(seed)} seeds for {rows} rows")
    return [torch.Generator().manual_seed(int(s)) for s in seed]


def sample_rows(logits: torch.Tensor, p: float, generators: list | None) -> torch.Tensor:
    """nucleus_sample of each row (B, V) -> (B,): with one generator for all rows, or each row with its own."""
    if generators is None or len(generators) == 1:
        return nucleus_sample(logits, p, generators[0] if generators else None)
    return torch.cat([nucleus_sample(row[None], p, g) for row, g in zip(logits, generators)])


def sample_seed(base_seed: int, *keys) -> int:
    """A stable per-sample seed: a sample table is reproducible, and adding a prompt leaves others unchanged."""
    digest = hashlib.sha256(repr((base_seed, *keys)).encode()).digest()
    return int.from_bytes(digest[:6], "little")


def decodings(p_values) -> list:
    """Greedy first, then each configured p."""
    return ["greedy", *[float(p) for p in p_values]]


def sample_records(model, tokenizer, name: str, sampling: SamplingConfig, seed: int) -> list[dict]:
    """One record per (prompt, decoding, sample) for the sample stage's JSONL: greedy, then each p."""
    records = []
    for prompt_index, prompt in enumerate(sampling.prompts):
        for decoding in decodings(sampling.p_values):  # greedy first: a long prompt is noted there, once
            count, label = (1, f"prompt {prompt_index}") if decoding == "greedy" else (sampling.num_samples, None)
            records += continuations(model, tokenizer, name, prompt, decoding, count, sampling.max_new_tokens,
                                     sampling.stop_at_eot, seed, label)
    return records


def continuations(model, tokenizer, name: str, prompt: str, decoding, count: int, max_new_tokens: int,
                  stop_at_eot: bool, seed: int, label: str | None = None) -> list[dict]:
    """`count` records of one prompt under one decoding ("greedy" or a p), run as one batch, each row drawing
    with its own stable seed (sample_seed of the run's name and seed), so any of them can be drawn again alone.

    The prompt is preceded by the end-of-text token, as every training document is, so it reads as the start
    of a story and an empty prompt means 'start a new story'. A sample is cut at its first end-of-text;
    `ended` says whether it emitted one within max_new_tokens (ended its story). A prompt longer than the model's
    context is noted, as `label` (None: silently).
    """
    eot = tokenizer.eot_token
    prompt_ids = [eot, *tokenizer.encode_ordinary(prompt)]
    if label and len(prompt_ids) > model.block_size and getattr(model, "context_limited", False):
        note(f"{label} has {len(prompt_ids)} tokens, more than block_size {model.block_size}; the model sees its "
             f"last {model.block_size}")
    seeds = [sample_seed(seed, name, prompt, decoding, sample) for sample in range(count)]
    out = generate(model, [prompt_ids] * count, max_new_tokens, p=None if decoding == "greedy" else decoding,
                   seed=seeds, stop_token=eot if stop_at_eot else None)
    records = []
    for sample, (s, row) in enumerate(zip(seeds, out)):
        new = row[len(prompt_ids):].tolist()
        ended = eot in new  # the story ended within max_new_tokens
        if ended:
            new = new[:new.index(eot)]
        records.append({"model": name, "prompt": prompt, "decoding": decoding,
                        "p": None if decoding == "greedy" else decoding, "sample": sample, "seed": s,
                        "text": tokenizer.decode(new), "new_tokens": len(new), "token_ids": new, "ended": ended})
    return records


def sweep_records(model, tokenizer, name: str, sampling: SamplingConfig, seed: int) -> list[dict]:
    """Samples at the sweep_p_values the sample stage did not draw (a denser p sweep, for the evaluate stage),
    seeded as sample_records seeds them."""
    extra = sorted({float(p) for p in sampling.sweep_p_values} - {float(p) for p in sampling.p_values})
    if not extra:
        return []
    records = sample_records(model, tokenizer, name, sampling.model_copy(update={"p_values": extra}), seed)
    return [{**r, "origin": "sweep"} for r in records if r["decoding"] != "greedy"]
