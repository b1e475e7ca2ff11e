"""Evaluation of a trained model: whole-split validation loss, perplexity and bits per byte, and the
diversity, repetition and self-likelihood of its samples.

Validation (`evaluate_split`): every source's slice of val.bin is scored on its own, in the fixed,
non-overlapping windows of `block_size` tokens that training's `validation_loss` uses (here with no cap
on their number), plus one final shorter window over the tail those full windows leave. So every token
of a source except its first is predicted exactly once, each from the tokens before it in its window
(a window starts with no context, as in training). Nothing is sampled: the same numbers every run.

Bits per byte = total nats / (ln 2 * UTF-8 bytes of the scored tokens). A token's bytes are its own
bytes (`decode_single_token_bytes`), so the sum is the byte length of the text the tokens decode to;
the end-of-text token is not text and counts 0 bytes (its prediction cost stays in the numerator; every
document ends with exactly one, whatever the tokenizer). Unlike nats per token, bits per byte compares
models with different tokenizers on the same text.

Samples (`sampling_metrics`), per decoding (greedy, then each p), over every prompt and sample, on the
generated tokens (the prompt excluded):
  distinct_n   unique token n-grams / all token n-grams, pooled over the samples (Li et al., 2016)
  rep_4        share of a sample's token 4-grams that already occurred earlier in that sample, averaged over
               samples that have at least one 4-gram (0: no loop; near 1: the sample repeats itself; the
               seq-rep-4 of Welleck et al., 2019)
  mean_tokens, mean_words   mean sample length (new tokens; whitespace-separated words)
  mean_loglik  mean log-probability per new token (nats) the model gives its own samples, under its full
               distribution (not the truncated nucleus one), each token given the prompt and the sample so far
  words_distinct_n, words_rep_4   the same on whitespace-separated words of the decoded text: comparable across
               tokenizers, but blind to loops without spaces ("......", runs of newlines), hence tokens first.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

from picollm.sampling import decodings, sample_records
from picollm.train import lm_loss, validation_loss

LN2 = math.log(2)
# logits held at once while scoring (batch x block x vocab fp32 values). On a CPU, tensors past glibc's mmap
# threshold (32 MB) are fresh pages every batch: measured here, a 16 MB budget (one GPT-2 window of 64)
# scores 30% faster than 256 MB, the kernel's page faults outweighing the larger matmuls.
LOGITS_BUDGET = {"cpu": 4 * 2 ** 20, "other": 64 * 2 ** 20}


def eval_batch_size(block_size: int, vocab_size: int, device="cpu", cap: int = 64) -> int:
    budget = LOGITS_BUDGET["cpu" if torch.device(device).type == "cpu" else "other"]
    return int(max(1, min(cap, budget // (block_size * vocab_size))))


# --- n-gram measures ------------------------------------------------------------------------------

def ngrams(seq, n: int) -> list[tuple]:
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(sequences, n: int) -> float:
    """Unique n-grams over all n-grams, pooled over `sequences` (each a list of words or token ids).

    NaN when no sequence is n long. distinct_n([["a", "b", "a", "b"]], 2) = 2 unique / 3 = 0.667.
    """
    grams = Counter(g for seq in sequences for g in ngrams(list(seq), n))
    total = sum(grams.values())
    return len(grams) / total if total else float("nan")


def repeated_ngram_rate(seq, n: int = 4) -> float:
    """Share of the n-grams of one sequence that repeat an n-gram seen earlier in it (NaN if none)."""
    grams = ngrams(list(seq), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else float("nan")


def words(text: str) -> list[str]:
    return str(text).split()


def diversity(seqs) -> dict:
    """distinct_1..3 pooled over `seqs`, and rep_4 averaged over the sequences that have a 4-gram."""
    reps = [r for r in (repeated_ngram_rate(s, 4) for s in seqs) if not math.isnan(r)]
    return {"distinct_1": distinct_n(seqs, 1), "distinct_2": distinct_n(seqs, 2), "distinct_3": distinct_n(seqs, 3),
            "rep_4": float(np.mean(reps)) if reps else float("nan")}


# --- scoring token sequences ----------------------------------------------------------------------

@torch.no_grad()
def score_tokens(model, tokens: np.ndarray, block_size: int, batch_size: int, device) -> tuple[float, int]:
    """(total nats, number of predicted tokens) over a token array: every token but the first, once.

    Full windows go through `picollm.train.validation_loss` (max_windows=None: all of them); the tail they
    leave, shorter than a window, is scored as one more, shorter window.
    """
    n = len(tokens)
    if n < 2:
        return 0.0, 0
    device = torch.device(device)
    n_full = (n - 1) // block_size  # windows of block_size + 1 tokens starting at 0, block_size, ...
    total = 0.0
    if n_full:
        mean = validation_loss(model, tokens, block_size, batch_size, device, max_windows=None)
        total += mean * n_full * block_size
    tail_start = n_full * block_size
    if tail_start < n - 1:
        was_training = model.training
        model.eval()
        window = torch.from_numpy(np.asarray(tokens[tail_start:n]).astype(np.int64)).to(device)[None]
        total += lm_loss(model, window[:, :-1], window[:, 1:]).item() * (window.size(1) - 1)
        model.train(was_training)
    return total, n - 1


def token_byte_lengths(tokenizer, vocab_size: int) -> np.ndarray:
    """UTF-8 byte length of every token id; end-of-text (and ids the tokenizer cannot decode) count 0."""
    lengths = np.zeros(vocab_size, dtype=np.int64)
    for i in range(vocab_size):
        if i == tokenizer.eot_token:
            continue
        try:
            lengths[i] = len(tokenizer.decode_single_token_bytes(i))
        except (KeyError, ValueError):
            pass
    return lengths


def loss_record(nats: float, tokens: int, n_bytes: int) -> dict:
    loss = nats / tokens if tokens else float("nan")
    return {"loss": loss, "perplexity": math.exp(loss) if tokens else float("nan"),
            "bpb": nats / (LN2 * n_bytes) if n_bytes else float("nan"),
            "tokens": int(tokens), "bytes": int(n_bytes), "nats": nats}


def evaluate_split(model, tokens: np.ndarray, sources: dict, byte_lengths: np.ndarray, block_size: int,
                   batch_size: int, device) -> dict:
    """{"all": record, "sources": {name: record}} over a split whose sources are `sources`
    ({name: {"start": .., "end": ..}} token offsets, as in meta.json)."""
    per_source, nats, count, n_bytes = {}, 0.0, 0, 0
    for name, rng in sources.items():
        part = tokens[rng["start"]:rng["end"]]
        s_nats, s_count = score_tokens(model, part, block_size, batch_size, device)
        s_bytes = int(byte_lengths[np.asarray(part[1:]).astype(np.int64)].sum())
        per_source[name] = loss_record(s_nats, s_count, s_bytes)
        nats, count, n_bytes = nats + s_nats, count + s_count, n_bytes + s_bytes
    return {"all": loss_record(nats, count, n_bytes), "sources": per_source}


@torch.no_grad()
def sequence_logprobs(model, ids, block_size: int) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t = 1 .. len(ids) - 1, as a 1-D float tensor.

    Models that are not context-limited (k-gram, LSTM) read the whole sequence at once, as generation
    does. A Transformer sees at most block_size tokens: past that, windows of block_size overlap by
    block_size // 2, so every token keeps at least half a block of context (generation slides the same way).
    """
    device = next(model.parameters()).device
    ids = torch.as_tensor(list(ids), dtype=torch.long, device=device)
    n = ids.numel()
    if n < 2:
        return torch.zeros(0)
    model.eval()
    if not getattr(model, "context_limited", False) or n <= block_size:
        logp = torch.log_softmax(model(ids[None, :-1])[0].float(), dim=-1)
        return logp.gather(1, ids[1:, None])[:, 0].cpu()
    out, scored, start, half = [], 1, 0, max(1, block_size // 2)  # scored: the next target index
    while scored < n:
        end = min(start + block_size + 1, n)  # window ids[start:end] predicts targets start+1 .. end-1
        logp = torch.log_softmax(model(ids[None, start:end - 1])[0].float(), dim=-1)
        targets = torch.arange(scored, end, device=device)
        out.append(logp[targets - start - 1].gather(1, ids[targets, None])[:, 0])
        scored = end
        start = end - 1 - half
    return torch.cat(out).cpu()


# --- samples ----------------------------------------------------------------------------------------

def _decoding_label(decoding) -> str:
    return "greedy" if decoding in ("greedy", None) else f"p={float(decoding):g}"


def sample_loglik(model, tokenizer, record: dict) -> tuple[float, int]:
    """(sum of log p of the sample's new tokens, their number) given [eot] + prompt before them."""
    prompt_ids = [tokenizer.eot_token, *tokenizer.encode_ordinary(record["prompt"])]
    new = list(record["token_ids"])
    if not new:
        return 0.0, 0
    logp = sequence_logprobs(model, prompt_ids + new, model.block_size)
    return float(logp[len(prompt_ids) - 1:].sum()), len(new)


def sampling_metrics(records: list[dict], model=None, tokenizer=None) -> list[dict]:
    """One row per decoding (in order of first appearance) with the measures in the module docstring.

    Without a model, mean_loglik is NaN (the text measures need only the records)."""
    groups: dict = {}
    for rec in records:
        groups.setdefault(_decoding_label(rec["decoding"]), []).append(rec)
    rows = []
    for label, recs in groups.items():
        seqs = [list(r["token_ids"]) for r in recs]
        word_seqs = [words(r["text"]) for r in recs]
        ll_sum, ll_count = 0.0, 0
        if model is not None:
            for r in recs:
                s, c = sample_loglik(model, tokenizer, r)
                ll_sum, ll_count = ll_sum + s, ll_count + c
        mean_ll = ll_sum / ll_count if ll_count else float("nan")
        first = recs[0]
        rows.append({
            "model": first["model"], "decoding": label,
            "p": float("nan") if label == "greedy" else float(first["decoding"]),
            "samples": len(recs), **diversity(seqs),
            "mean_tokens": float(np.mean([len(s) for s in seqs])),
            "mean_words": float(np.mean([len(s) for s in word_seqs])),
            "mean_loglik": mean_ll, "self_perplexity": math.exp(-mean_ll) if ll_count else float("nan"),
            **{f"words_{k}": v for k, v in diversity(word_seqs).items()},
            "origin": first.get("origin", "samples")})
    return rows


def sweep_records(model, tokenizer, name: str, sampling_cfg: dict, seed: int, p_values) -> list[dict]:
    """Extra samples at p values the sample stage did not draw (a denser p sweep), seeded the same way."""
    done = {float(p) for p in sampling_cfg["p_values"]}
    extra = sorted({float(p) for p in p_values} - done)
    if not extra:
        return []
    records = sample_records(model, tokenizer, name, {**sampling_cfg, "p_values": extra}, seed)
    return [{**r, "origin": "sweep"} for r in records if r["decoding"] != "greedy"]


def evaluate_model(name: str, model_path, tokens_dir, *, device="cpu", batch_size: int | None = None,
                   samples_path=None, sampling_cfg: dict | None = None, seed: int = 1337, sweep_p=()) -> tuple:
    """(eval dict for eval/<model>.json, sampling rows) of one trained model."""
    import json
    from pathlib import Path

    from picollm.data.tokenizer import get_tokenizer
    from picollm.data.tokens import load_tokens, read_meta
    from picollm.device import resolve_device
    from picollm.models import count_parameters, load_model, output_vocab_size

    tokens_dir = Path(tokens_dir)
    meta = read_meta(tokens_dir / "meta.json")
    dev = resolve_device(device)
    model = load_model(model_path, dev)
    ckpt = model.checkpoint
    tokenizer = get_tokenizer(ckpt["tokenizer"])
    block_size = ckpt["block_size"]
    batch = batch_size or eval_batch_size(block_size, output_vocab_size(model), dev)
    val = load_tokens(tokens_dir / "val.bin", meta)
    lengths = token_byte_lengths(tokenizer, meta["vocab_size"])
    result = evaluate_split(model, val, meta["splits"]["val"]["sources"], lengths, block_size, batch, dev)
    summary = ckpt.get("summary") or {}
    out = {"model": name, "type": ckpt["model_cfg"]["type"], **count_parameters(model),
           "tokens_seen": summary.get("tokens_seen"), "tokenizer": ckpt["tokenizer"], "block_size": block_size,
           "split": "val", "device": str(dev), "batch_size": batch,
           "val_loss": result["all"]["loss"], "perplexity": result["all"]["perplexity"], "bpb": result["all"]["bpb"],
           "val_tokens_scored": result["all"]["tokens"], "val_bytes": result["all"]["bytes"],
           "sources": result["sources"],
           "train_final_val_loss": summary.get("final_val_loss"),
           "method": "whole split, per source: non-overlapping block_size windows + one shorter tail window; "
                     "every token but each source's first scored once; end-of-text counts 0 bytes"}
    rows = []
    if samples_path is not None:
        with open(samples_path, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        if sweep_p and sampling_cfg is not None:
            records += sweep_records(model, tokenizer, name, sampling_cfg, seed, sweep_p)
        rows = sampling_metrics(records, model, tokenizer)
        order = {label: i for i, label in enumerate(map(_decoding_label, decodings(sorted(
            {r["p"] for r in rows if not math.isnan(r["p"])}))))}
        rows.sort(key=lambda r: order.get(r["decoding"], len(order)))
        for r in rows:
            r["train_tokens"] = summary.get("tokens_seen")
    return out, rows
