"""The measures of generated samples, per decoding, and of real validation stories cut like them (the reference).

Samples (`sampling_metrics`), per decoding (greedy, then each p), over every prompt and sample, on the
generated tokens (the prompt excluded):
  distinct_n   unique token n-grams / all token n-grams, pooled over the samples (Li et al., 2016)
  rep_4        share of a sample's token 4-grams that already occurred earlier in that sample, averaged over
               samples that have at least one 4-gram (0: no loop; near 1: the sample repeats itself; the
               seq-rep-4 of Welleck et al., 2019)
  mean_tokens, mean_words   mean sample length (new tokens; whitespace-separated words)
  mean_loglik  mean log-probability per new token (nats) the model gives its own samples, under its full
               distribution (not the truncated nucleus one), each token given the prompt and the sample so far
  ended_share  share of samples that end their story: emit end-of-text within max_new_tokens (the record's
               `ended`; NaN for records that do not say)
  words_distinct_n, words_rep_4   the same on whitespace-separated words of the decoded text: comparable across
               tokenizers, but blind to loops without spaces ("......", runs of newlines), hence tokens first.
  english_word_share   lowercase alphabetic words (apostrophes inside kept: "didn't") found in pyspellchecker's
               English word list, over all such words, pooled over the samples; NaN for a study whose text is not
               English (3seqs numbers) or samples with no such word

The reference (`reference_records`): real stories of the study's validation split, as many as a nucleus
decoding has samples, each from its first token and cut where a sample is cut (max_new_tokens, or its
end-of-text), drawn with a fixed seed; the same measures on them say what real text gives. A split with fewer
stories than that (a text without end-of-text separators is one story) adds excerpts from inside its stories,
since the pooled n-gram measures depend on how much text is pooled.
"""
from __future__ import annotations

import functools
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from picollm.config import SamplingConfig
from picollm.data.meta import SourceRange
from picollm.data.tokenizer import get_tokenizer
from picollm.data.tokens import documents, load_tokens, read_meta
from picollm.io import note


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


# A word: lowercase letters, with apostrophes inside it ("didn't", "lily's"); digits and signs split words.
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


@functools.cache
def english_word_list() -> frozenset[str]:
    """pyspellchecker's English word list: 138k lowercase words, inflections, contractions and common names
    included, shipped inside the package (nothing is downloaded)."""
    from spellchecker import SpellChecker
    return frozenset(SpellChecker(language="en", distance=1).word_frequency.keys())


def english_word_share(texts) -> float:
    """Words of `texts` (lowercase alphabetic, see WORD) found in the English word list, over all such words,
    pooled over the texts; NaN when they hold none. english_word_share(["The cat sat, zzgr!"]) = 3 / 4."""
    found = [w for text in texts for w in WORD.findall(str(text).lower().replace("\u2019", "'"))]
    known = english_word_list()
    return sum(w in known for w in found) / len(found) if found else float("nan")


def diversity(seqs) -> dict:
    """distinct_1..3 pooled over `seqs`, and rep_4 averaged over the sequences that have a 4-gram."""
    reps = [r for r in (repeated_ngram_rate(s, 4) for s in seqs) if not math.isnan(r)]
    return {"distinct_1": distinct_n(seqs, 1), "distinct_2": distinct_n(seqs, 2), "distinct_3": distinct_n(seqs, 3),
            "rep_4": float(np.mean(reps)) if reps else float("nan")}


# --- a model's log-likelihood of a sequence ------------------------------------------------------

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

REFERENCE = "reference"  # the decoding (and run) of real validation stories in the sampling tables


def decoding_label(decoding) -> str:
    if decoding in ("greedy", None, REFERENCE):
        return decoding or "greedy"
    return f"p={float(decoding):g}"


def sample_loglik(model, tokenizer, record: dict) -> tuple[float, int]:
    """(sum of log p of the sample's new tokens, their number) given [eot] + prompt before them."""
    prompt_ids = [tokenizer.eot_token, *tokenizer.encode_ordinary(record["prompt"])]
    new = list(record["token_ids"])
    if not new:
        return 0.0, 0
    logp = sequence_logprobs(model, prompt_ids + new, model.block_size)
    return float(logp[len(prompt_ids) - 1:].sum()), len(new)


def ended_share(records: list[dict]) -> float:
    """Share of the records that ended their story (emitted end-of-text); NaN when none says."""
    ended = [bool(r["ended"]) for r in records if r.get("ended") is not None]
    return float(np.mean(ended)) if ended else float("nan")


def sampling_metrics(records: list[dict], model=None, tokenizer=None, desc: str = "sample log-likelihood",
                     english: bool = True) -> list[dict]:
    """One row per decoding (in order of first appearance) with the measures in the module docstring.

    Without a model, mean_loglik is NaN (the text measures need only the records); with one, a progress bar
    (stderr) counts the samples scored. english=False: the study's text is not English, english_word_share
    is NaN."""
    groups: dict = {}
    for rec in records:
        groups.setdefault(decoding_label(rec["decoding"]), []).append(rec)
    with tqdm(total=len(records), desc=desc, unit="sample", mininterval=5, disable=model is None) as bar:
        return [decoding_row(label, recs, model, tokenizer, english, bar) for label, recs in groups.items()]


def decoding_row(label: str, recs: list[dict], model, tokenizer, english: bool, bar) -> dict:
    """The measures of one decoding's records (their log-likelihood under `model`, if given, counted on `bar`)."""
    seqs = [list(r["token_ids"]) for r in recs]
    word_seqs = [words(r["text"]) for r in recs]
    ll_sum, ll_count = 0.0, 0
    if model is not None:
        for r in recs:
            s, c = sample_loglik(model, tokenizer, r)
            ll_sum, ll_count = ll_sum + s, ll_count + c
            bar.update()
    mean_ll = ll_sum / ll_count if ll_count else float("nan")
    first = recs[0]
    return {
        "model": first["model"], "decoding": label,
        "p": float("nan") if label in ("greedy", REFERENCE) else float(first["decoding"]),
        "samples": len(recs), **diversity(seqs),
        "mean_tokens": float(np.mean([len(s) for s in seqs])),
        "mean_words": float(np.mean([len(s) for s in word_seqs])),
        "ended_share": ended_share(recs),
        "mean_loglik": mean_ll, "self_perplexity": math.exp(-mean_ll) if ll_count else float("nan"),
        **{f"words_{k}": v for k, v in diversity(word_seqs).items()},
        "english_word_share": english_word_share(r["text"] for r in recs) if english else float("nan"),
        "origin": first.get("origin", "samples")}


def story_starts(tokens: np.ndarray, sources: dict[str, SourceRange], eot: int) -> np.ndarray:
    """Token offset of every document of a split whose sources are `sources` (picollm.data.tokens.documents)."""
    return np.concatenate([documents(tokens, r.start, r.end, eot)[0] for r in sources.values()])


def inside_starts(tokens: np.ndarray, sources: dict[str, SourceRange], eot: int,
                  stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, documents): token offsets inside the documents of a split, every `stride` tokens after each
    document's start and before its end-of-text, and the index (as in story_starts) of the document each is in.
    Excerpts of `stride` tokens from them overlap neither each other nor a story's start."""
    offsets, docs, first = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], 0
    for r in sources.values():
        starts, closings = documents(tokens, r.start, r.end, eot)
        ends = np.append(closings, r.end)[:len(starts)]  # a range without end-of-text ends at its end
        for doc, (start, end) in enumerate(zip(starts.tolist(), ends.tolist()), start=first):
            inside = np.arange(start + stride, end, stride, dtype=np.int64)
            offsets.append(inside)
            docs.append(np.full(len(inside), doc, dtype=np.int64))
        first += len(starts)
    return np.concatenate(offsets), np.concatenate(docs)


def excerpt(tokens: np.ndarray, start: int, max_new_tokens: int, eot: int) -> tuple[list[int], bool]:
    """(ids, ended): the tokens from `start` cut as a sample is cut, after max_new_tokens tokens or at an
    end-of-text (left out, and then the excerpt counts as ended)."""
    ids = np.asarray(tokens[start:start + max_new_tokens], dtype=np.int64).tolist()
    ended = eot in ids
    return (ids[:ids.index(eot)] if ended else ids), ended


def reference_starts(tokens: np.ndarray, sources: dict[str, SourceRange], eot: int, count: int,
                     max_new_tokens: int, seed: int) -> list[tuple[int, int, bool]]:
    """(offset, document, story_start) of `count` excerpts drawn with `seed`: distinct stories from their start,
    then, when the split holds fewer stories, offsets inside them (inside_starts, one excerpt apart) drawn the
    same way, so that every seed reads other text. Fewer when the split holds too few tokens."""
    starts = story_starts(tokens, sources, eot)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(starts), size=min(count, len(starts)), replace=False))
    picks = [(int(starts[doc]), doc, True) for doc in chosen.tolist()]
    if len(picks) < count:
        offsets, docs = inside_starts(tokens, sources, eot, max_new_tokens)
        more = np.sort(rng.choice(len(offsets), size=min(count - len(picks), len(offsets)), replace=False))
        picks += [(int(offsets[i]), int(docs[i]), False) for i in more.tolist()]
    return picks


def reference_records(tokens: np.ndarray, sources: dict[str, SourceRange], tokenizer, count: int,
                      max_new_tokens: int, seed: int) -> list[dict]:
    """`count` excerpts of real stories of a split (reference_starts: distinct stories from their first token,
    and excerpts from inside them when the split holds fewer stories), drawn with `seed`, each cut as a sample
    is cut: after max_new_tokens tokens, or at its end-of-text, which then counts as the story ended. Records
    shaped like the sample stage's, with decoding `reference`; story_start says which excerpts open a story."""
    eot = tokenizer.eot_token
    records = []
    for sample, (start, doc, story) in enumerate(reference_starts(tokens, sources, eot, count, max_new_tokens,
                                                                  seed)):
        ids, ended = excerpt(tokens, start, max_new_tokens, eot)
        records.append({"model": REFERENCE, "prompt": "", "decoding": REFERENCE, "p": None, "sample": sample,
                        "document": doc, "story_start": story, "seed": seed, "text": tokenizer.decode(ids),
                        "new_tokens": len(ids), "token_ids": ids, "ended": ended, "origin": "validation"})
    return records


def shortfall_note(records: list[dict], count: int) -> str | None:
    """The note for a split with fewer stories than `count`: what the reference reads instead (None when the
    split holds enough)."""
    n = sum(r["story_start"] for r in records)
    if n >= count:
        return None
    stories = f"{n} {'story' if n == 1 else 'stories'}"
    head = f"the validation split holds {stories}, fewer than the {count} of a nucleus decoding"
    if len(records) == count:
        return f"{head}; the reference also reads excerpts from inside its stories"
    return (f"{head}, and too few tokens for more excerpts; the reference measures the {len(records)} it holds (cut "
            f"the validation text into stories to have more: a text source's split_on, or <|endoftext|> lines "
            f"between its stories)")


# The measures of a text that marks no story ends (no end-of-text inside it, each source one story): each excerpt
# runs its full max_new_tokens by construction, so these would measure the cut, not the stories; the reference
# leaves them empty.
UNENDED = ("ended_share", "mean_tokens", "mean_words")


def reference_measures(tokens_dir, sampling: SamplingConfig, seed: int, english: bool = True) -> list[dict]:
    """The sampling measures (one row, decoding `reference`) of real stories of the validation split in
    tokens_dir: as many excerpts as a nucleus decoding has samples (prompts x num_samples), cut to
    max_new_tokens, from inside the stories too when the split holds fewer stories (reference_records); UNENDED
    empty where the split marks no story ends."""
    tokens_dir = Path(tokens_dir)
    meta = read_meta(tokens_dir / "meta.json")
    tokenizer = get_tokenizer(meta.tokenizer, meta.tokenizer_json)
    val = load_tokens(tokens_dir / "val.bin", meta)
    count = len(sampling.prompts) * sampling.num_samples
    records = reference_records(val, meta.splits.val.sources, tokenizer, count, sampling.max_new_tokens,
                                seed)
    said = shortfall_note(records, count)
    if said:
        note(said)
    rows = sampling_metrics(records, english=english)
    if len(story_starts(val, meta.splits.val.sources, tokenizer.eot_token)) <= len(meta.splits.val.sources):
        rows = [{**row, **dict.fromkeys(UNENDED, math.nan)} for row in rows]  # each source one story
    return rows
