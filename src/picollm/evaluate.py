"""Evaluation of a trained model: whole-split validation loss, perplexity and bits per byte, and its samples'
measures (picollm.sample_metrics) in the same job.

Validation (`evaluate_split`): every source's slice of val.bin is scored on its own, in fixed,
non-overlapping windows of `block_size` tokens (training's `validation_loss` tiles the whole split the same
way, across source boundaries and in at most `eval_batches` batches), plus one final shorter window over the
tail those full windows leave. So every token
of a source except its first is predicted exactly once, each from the tokens before it in its window
(a window starts with no context, as in training). Nothing is sampled: the same numbers every run.
Many windows share a forward pass, and the head's logits are computed a chunk of rows at a time, never
for a whole batch. `max_tokens` caps the work: whole windows evenly spread over the split, at most
max_tokens predictions, and the result says it was capped.

`evaluate.scoring: per_document` scores the same tokens the way EleutherAI's lm-evaluation-harness scores a
`loglikelihood_rolling` task (`document_windows`): each document on its own, its first token predicted from
end-of-text, its closing end-of-text not scored; a document longer than block_size goes on in windows of
block_size predictions, each starting one token before them, and its last window is a full one whose earlier
tokens are context only. Its bits per byte is the harness's `bits_per_byte` of the same text (docs/lm-eval.md).

Bits per byte = total nats / (ln 2 * UTF-8 bytes of the scored tokens). A token's bytes are its own
bytes (`decode_single_token_bytes`), so the sum is the byte length of the text the tokens decode to;
the end-of-text token is not text and counts 0 bytes (its prediction cost stays in the numerator; every
document ends with exactly one, whatever the tokenizer). Unlike nats per token, bits per byte compares
models with different tokenizers on the same text.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from picollm import provenance
from picollm.config import SamplingConfig
from picollm.data.meta import SourceRange, TokenMeta
from picollm.data.tokenizer import checkpoint_tokenizer
from picollm.data.tokens import documents, load_tokens, read_meta, spread
from picollm.device import resolve_device
from picollm.errors import PicoError
from picollm.flops import flops_per_token
from picollm.fused_head import block_logits
from picollm.models import count_parameters, load_model, output_vocab_size
from picollm.models.compact import scoring_head
from picollm.sample_metrics import decoding_label, sampling_metrics
from picollm.sampling import decodings, sweep_records

LN2 = math.log(2)


# --- scoring token sequences ----------------------------------------------------------------------

def source_windows(start: int, end: int, block_size: int) -> np.ndarray:
    """(first, stop) token offsets, one row per window, that score tokens[start:end]: full windows of
    block_size + 1 tokens at start, start + block_size, ..., then one shorter window over the tail they leave.
    A window predicts tokens first + 1 .. stop - 1, so every token but the first is predicted exactly once."""
    firsts = np.arange(start, end - 1, block_size, dtype=np.int64)
    return np.stack([firsts, np.minimum(firsts + block_size + 1, end)], axis=1)


def document_windows(tokens: np.ndarray, start: int, end: int, eot: int, block_size: int) -> np.ndarray:
    """(first, stop, scored) rows scoring every document of tokens[start:end] (each closed by `eot`) as
    lm-evaluation-harness's loglikelihood_rolling does (its get_rolling_token_windows with context_len 1 and
    max_seq_len block_size): a window reads tokens[first:stop - 1] and scores its predictions of
    tokens[scored:stop]. A document's first window starts at the end-of-text before it (offset -1 for the
    split's first document: see window_nats' `prefix`) and scores up to block_size tokens; each further one
    scores the next block_size tokens (fewer in the last), reading the block_size tokens before its end. The
    closing end-of-text is never scored."""
    doc_start, closing = documents(tokens, start, end, eot)
    doc_start = doc_start[:len(closing)]  # a range without end-of-text holds no whole document
    n = closing - doc_start
    count = -(-n // block_size)  # windows per document (none for an empty one)
    doc = np.repeat(np.arange(len(n)), count)
    k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)  # window index in its document
    scored = doc_start[doc] + k * block_size
    stop = np.minimum(scored + block_size, closing[doc])
    first = np.where(k == 0, scored - 1, stop - block_size - 1)
    return np.stack([first, stop, scored], axis=1).astype(np.int64).reshape(-1, 3)


def scored_from(windows: np.ndarray) -> np.ndarray:
    """The first scored token of each window: its third column, else the token after its first."""
    return windows[:, 2] if windows.shape[1] > 2 else windows[:, 0] + 1


def cap_windows(per_source: list, block_size: int, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(windows, source index of each window) of the sources' windows `per_source`.

    With max_tokens below their predictions, only as many whole windows are kept as fit max_tokens, evenly
    spread over the split (so over its sources, in proportion to their size, rather than its head only): at
    most max_tokens predictions, the same every run.
    """
    width = per_source[0].shape[1] if per_source else 2
    windows = np.concatenate([np.zeros((0, width), np.int64), *per_source])
    owner = np.repeat(np.arange(len(per_source)), [len(w) for w in per_source])
    total = predictions(windows)
    if max_tokens is None or max_tokens >= total:
        return windows, owner
    if max_tokens < block_size:
        raise PicoError(f"evaluate max_tokens = {max_tokens} is below block_size {block_size} (the cap keeps whole "
                        f"windows); set it to at least {block_size}, or to null for the whole split")
    k = min(len(windows), max_tokens * len(windows) // total)  # as many as windows of the mean size allow
    while predictions(windows[spread(len(windows), k)]) > max_tokens:
        k -= 1
    keep = spread(len(windows), k)
    return windows[keep], owner[keep]


def predictions(windows: np.ndarray) -> int:
    """Tokens the windows predict (each window's first token is context only)."""
    return int((windows[:, 1] - scored_from(windows)).sum())


# Next-token predictions per forward pass (windows x their length): large matmuls, small activations.
ROWS_PER_BATCH = {"cpu": 4096, "other": 32768}
# Rows of fp32 logits the head computes at once, into one buffer reused for every chunk: at GPT-2's
# V = 50257, 512 rows are 103 MB. A fresh (rows, V) tensor per chunk would be fresh pages every time.
HEAD_CHUNK = {"cpu": 512, "other": 4096}


def device_kind(device) -> str:
    return "cpu" if torch.device(device).type == "cpu" else "other"


def eval_batch_size(block_size: int, device="cpu") -> int:
    """Windows per forward pass when scoring a split."""
    return max(1, ROWS_PER_BATCH[device_kind(device)] // block_size)


@torch.no_grad()  # out= buffers take no gradients: for scoring only
def head_losses(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                chunk: int) -> torch.Tensor:
    """F.cross_entropy(F.linear(h, weight, bias), targets, reduction="none") for h (N, H), as fp32 (N,), chunk
    rows at a time.

    Each chunk's logits go into the same buffer and are turned into exp(logits - max) in place, so the
    (N, V) logits never exist and no (chunk, V) tensor is allocated after the first.
    """
    losses = torch.empty(h.size(0), dtype=torch.float32, device=h.device)
    buffer = torch.empty(min(chunk, h.size(0)), weight.size(0), dtype=h.dtype, device=h.device)
    for s in range(0, h.size(0), chunk):
        hc, yc = h[s:s + chunk], targets[s:s + chunk]
        logits = block_logits(hc, weight, bias, "torch", out=buffer[:hc.size(0)])
        target_logit = logits.gather(1, yc[:, None])[:, 0].float()
        top = logits.amax(1, keepdim=True)
        logsumexp = logits.sub_(top).exp_().sum(1).float().log() + top[:, 0].float()
        losses[s:s + hc.size(0)] = logsumexp - target_logit
    return losses


def token_losses(model, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """Next-token cross-entropy in nats over the full vocabulary at every position, (B, T) fp32: the
    per-token form of picollm.loss.lm_loss (features, then the head and the loss in chunks of rows)."""
    if not hasattr(model, "features"):  # any other module mapping ids to logits: one window's logits at a time
        return torch.stack([F.cross_entropy(model(xi[None])[0].float(), yi, reduction="none") for xi, yi in zip(x, y)])
    weight, bias, targets, unseen_nats = scoring_head(model, y)
    losses = head_losses(model.features(x).flatten(0, 1), weight, bias, targets, chunk)
    return (losses if unseen_nats is None else losses + unseen_nats).view(y.shape)


# Window lengths rounded up to a multiple of this share a forward pass (the tail is padded with the tokens that
# follow it, which a causal model's earlier predictions never see): few passes for documents of every length.
LENGTH_STEP = 64


@torch.no_grad()
def window_nats(model, tokens: np.ndarray, windows: np.ndarray, batch_size: int, device, desc: str = "score",
                prefix: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Summed next-token loss (nats) of each window's scored tokens (rows of `windows`: (first, stop) scores
    tokens[first + 1:stop], (first, stop, scored) tokens[scored:stop]); `prefix` is the token read at offset -1,
    end-of-text. Returns (nats, the part of them spent predicting `prefix`), one value per window each.

    Windows of about the same length (all full windows; a tail is shorter) go through the model batch_size
    at a time; the progress bar (stderr) counts scored tokens.
    """
    device = torch.device(device)
    nats, prefix_nats = np.zeros(len(windows)), np.zeros(len(windows))
    firsts, stops, scored = windows[:, 0], windows[:, 1], scored_from(windows)
    lengths = stops - firsts
    padded = np.minimum(-(-lengths // LENGTH_STEP) * LENGTH_STEP, lengths.max(initial=0))
    was_training = model.training
    model.eval()
    with tqdm(total=predictions(windows), desc=desc, unit="tok", unit_scale=True, mininterval=5) as bar:
        for length in np.unique(padded)[::-1]:
            same = np.flatnonzero(padded == length)
            for i in range(0, len(same), batch_size):
                rows = same[i:i + batch_size]
                at = firsts[rows, None] + np.arange(length)
                ids = np.asarray(tokens[np.clip(at, 0, len(tokens) - 1)], dtype=np.int64)
                if prefix is not None:
                    ids[at < 0] = prefix
                ids = torch.from_numpy(ids).to(device)
                losses = token_losses(model, ids[:, :-1], ids[:, 1:], HEAD_CHUNK[device_kind(device)])
                targets = at[:, 1:]
                keep = torch.from_numpy((targets >= scored[rows, None]) & (targets < stops[rows, None])).to(device)
                kept = torch.where(keep, losses.double(), 0.0)
                nats[rows] = kept.sum(1).cpu().numpy()
                if prefix is not None:
                    prefix_nats[rows] = torch.where(ids[:, 1:] == prefix, kept, 0.0).sum(1).cpu().numpy()
                bar.update(int(keep.sum()))
    model.train(was_training)
    return nats, prefix_nats


def bytes_per_window_token(val: np.ndarray, sources: dict[str, SourceRange], lengths: np.ndarray) -> float:
    """UTF-8 bytes per predicted token of the split (every token but each source's first, end-of-text included
    at 0 bytes): what turns training's validation loss (picollm.loss.validation_loss, whose windows tile the
    split) into bits per byte, whichever way the final evaluation scores."""
    total = sum(int(lengths[val[r.start + 1:r.end]].sum()) for r in sources.values())
    return total / sum(r.end - r.start - 1 for r in sources.values())


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


def loss_record(nats: float, tokens: int, n_bytes: int, eot_nats: float | None = None) -> dict:
    """One split's (or source's) numbers. eot_share: the part of its nats spent predicting end-of-text, which bits
    per byte keeps in its numerator while the token adds no byte to the denominator (None: end-of-text not named)."""
    loss = nats / tokens if tokens else float("nan")
    perplexity = float("inf") if loss > 709 else math.exp(loss)  # math.exp raises past 709.78
    return {"loss": loss, "perplexity": perplexity if tokens else float("nan"),
            "bpb": nats / (LN2 * n_bytes) if n_bytes else float("nan"),
            "tokens": int(tokens), "bytes": int(n_bytes), "nats": nats,
            "eot_share": None if eot_nats is None else eot_nats / nats if nats else float("nan")}


def evaluate_split(model, tokens: np.ndarray, sources: dict[str, SourceRange], byte_lengths: np.ndarray,
                   block_size: int, batch_size: int, device, max_tokens: int | None = None, desc: str = "val loss",
                   scoring: str = "windows", eot: int | None = None) -> dict:
    """{"all": record, "sources": {name: record}, "tokens_in_split": .., "capped": ..} over a split whose sources
    are `sources` (each source's token offsets, as in meta.json), scored in source_windows
    (`windows`) or per document from end-of-text `eot` (`per_document`: document_windows), with at most
    max_tokens predicted tokens scored (None: all of them; see cap_windows)."""
    if scoring == "per_document":
        per_source = [document_windows(tokens, r.start, r.end, eot, block_size) for r in sources.values()]
    else:
        per_source = [source_windows(r.start, r.end, block_size) for r in sources.values()]
    windows, owner = cap_windows(per_source, block_size, max_tokens)
    nats, eot_nats = window_nats(model, tokens, windows, batch_size, device, desc, prefix=eot)
    # bytes of each window's scored tokens tokens[scored:stop], from the running byte count over the split
    ends = np.concatenate([[0], np.cumsum(byte_lengths[np.asarray(tokens, dtype=np.int64)])])
    n_bytes = ends[windows[:, 1]] - ends[scored_from(windows)]
    count = windows[:, 1] - scored_from(windows)

    def total(values, source):
        return values[owner == source].sum()

    def eot_total(source=None):  # None where no end-of-text was named: its share is not known
        return None if eot is None else float(eot_nats.sum() if source is None else total(eot_nats, source))

    per_source_records = {name: loss_record(float(total(nats, i)), int(total(count, i)), int(total(n_bytes, i)),
                                            eot_total(i))
                          for i, name in enumerate(sources)}
    in_split = sum(predictions(w) for w in per_source)
    return {"all": loss_record(float(nats.sum()), int(count.sum()), int(n_bytes.sum()), eot_total()),
            "sources": per_source_records, "tokens_in_split": in_split, "capped": int(count.sum()) < in_split}


def scoring_method(block_size: int, max_tokens: int | None, capped: bool, scoring: str = "windows") -> str:
    """How the split was scored, in words, for eval/<model>.json."""
    if scoring == "per_document":
        windows = (f"per document as lm-evaluation-harness's loglikelihood_rolling, in windows of block_size = "
                   f"{block_size} predictions: each document's first token predicted from end-of-text, its closing "
                   f"end-of-text not scored")
        scored = "every document token scored once"
    else:
        windows = (f"per source, non-overlapping windows of block_size = {block_size} tokens + one shorter tail "
                   "window, the first token of each window context only")
        scored = "every token but each source's first scored once"
    if not capped:
        return f"whole split, {windows}: {scored}; end-of-text counts 0 bytes"
    return (f"capped at max_tokens = {max_tokens}: whole windows evenly spread over the split ({windows}); "
            f"end-of-text counts 0 bytes")


def run_config(ckpt: dict) -> dict:
    """The run's hyperparameters, its train keys under "train", as training recorded them in model.pt (the
    sweep figure reads a base run's value of a swept key here)."""
    trained = provenance.of_checkpoint(ckpt).get("config") or {}
    return {**ckpt["model_cfg"], "train": trained.get("train", {})}


def check_tokens_match(ckpt: dict, tokenizer, meta: TokenMeta, model_path, tokens_dir) -> None:
    """A model scored on tokens of another tokenizer gives a loss that means nothing (or indexes past its
    embedding): one line naming both instead."""
    trained = (ckpt["tokenizer"], ckpt["vocab_size"])
    if trained != (meta.tokenizer, meta.vocab_size):
        raise PicoError(f"{model_path} was trained on {trained[0]} tokens ({trained[1]:,} ids), but {tokens_dir} "
                        f"holds {meta.tokenizer} tokens ({meta.vocab_size:,} ids); evaluate it on the tokens "
                        f"it was trained on, or delete it and rerun training")
    if meta.tokenizer_sha256 is not None and meta.tokenizer_sha256 != getattr(tokenizer, "sha256", None):
        raise PicoError(f"{model_path} was trained with another {ckpt['tokenizer']} tokenizer than the tokens in "
                        f"{tokens_dir}; evaluate it on the tokens it was trained on (or retrain it)")


def evaluate_model(name: str, model_path, tokens_dir, *, device="cpu", max_tokens: int | None = None,
                   samples_path=None, sampling: SamplingConfig | None = None, seed: int = 1337,
                   english: bool = True, scoring: str = "windows") -> tuple:
    """(eval dict for eval/<model>.json, sampling rows) of one trained model.

    max_tokens caps the validation tokens scored (None: the whole split), in eval_batch_size windows per
    forward pass; scoring: `windows` or `per_document` (evaluate_split). With `sampling`, the samples are
    joined by samples at its sweep_p_values. english=False: the study's text is not English
    (english_word_share NaN)."""
    if max_tokens is not None and max_tokens < 1:
        raise PicoError(f"evaluate max_tokens = {max_tokens} is not a positive number of tokens; "
                        f"set it to at least the block size, or to null for the whole split")
    tokens_dir = Path(tokens_dir)
    meta = read_meta(tokens_dir / "meta.json")
    dev = resolve_device(device)
    model = load_model(model_path, dev)
    ckpt = model.checkpoint
    tokenizer = checkpoint_tokenizer(ckpt)
    check_tokens_match(ckpt, tokenizer, meta, model_path, tokens_dir)
    block_size = ckpt["block_size"]
    batch = eval_batch_size(block_size, dev)
    val = load_tokens(tokens_dir / "val.bin", meta)
    lengths = token_byte_lengths(tokenizer, meta.vocab_size)
    result = evaluate_split(model, val, meta.splits.val.sources, lengths, block_size, batch, dev,
                            max_tokens=max_tokens, desc=f"val loss {name}", scoring=scoring,
                            eot=tokenizer.eot_token)
    summary = ckpt.get("summary") or {}
    # counted from the checkpoint's config, so that a checkpoint whose summary holds no FLOPs has them too
    per_token = flops_per_token(ckpt["model_cfg"], ckpt["vocab_size"], block_size, output_vocab_size(model))
    seen = summary.get("tokens_seen")
    out = {"model": name, "type": ckpt["model_cfg"]["type"], **count_parameters(model),
           "tokens_seen": seen, "flops_per_token": per_token, "train_flops": None if seen is None else per_token * seen,
           "flops_budget": summary.get("flops_budget"), "tokenizer": ckpt["tokenizer"], "block_size": block_size,
           "split": "val", "device": str(dev), "batch_size": batch, "weights_sha256": ckpt.get("sha256"),
           "val_loss": result["all"]["loss"], "perplexity": result["all"]["perplexity"], "bpb": result["all"]["bpb"],
           "val_tokens_scored": result["all"]["tokens"], "val_tokens_in_split": result["tokens_in_split"],
           "val_capped": result["capped"], "max_tokens": max_tokens, "scoring": scoring,
           "val_bytes": result["all"]["bytes"], "val_eot_share": result["all"]["eot_share"],
           "val_bytes_per_window_token": bytes_per_window_token(val, meta.splits.val.sources, lengths),
           "val_documents_in_train": {name: {"in_train": src.documents_in_train, "of": src.documents}
                                      for name, src in meta.splits.val.sources.items()},
           "sources": result["sources"],
           "train_final_val_loss": summary.get("final_val_loss"), "config": run_config(ckpt),
           "method": scoring_method(block_size, max_tokens, result["capped"], scoring)}
    if samples_path is None:
        return out, []
    return out, sampling_rows(samples_path, model, tokenizer, name, sampling, seed, english, seen)


def sampling_rows(samples_path, model, tokenizer, name: str, sampling: SamplingConfig | None, seed: int,
                  english: bool, tokens_seen) -> list[dict]:
    """The sampling measures of the sample stage's records (and, with `sampling`, of samples at its
    sweep_p_values), one row per decoding in the decodings' order, each with the model's training tokens."""
    with open(samples_path, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    if sampling is not None:
        records += sweep_records(model, tokenizer, name, sampling, seed)
    rows = sampling_metrics(records, model, tokenizer, desc=f"sample log-likelihood {name}", english=english)
    order = {label: i for i, label in enumerate(map(decoding_label, decodings(sorted(
        {r["p"] for r in rows if not math.isnan(r["p"])}))))}
    rows.sort(key=lambda r: order.get(r["decoding"], len(order)))
    for r in rows:
        r["train_tokens"] = tokens_seen
    return rows
