"""Token arrays on disk: tokenize raw text into {train,val}.bin + meta.json, and draw training windows.

Each split's .bin concatenates the sources in config order, every document followed by the end-of-text
token, so a window may cross a document boundary the way GPT-2 was trained (packed, no padding).
meta.json records where each source's tokens start and end, so the sampler can mix sources by weight.
"""
from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from picollm.data import check
from picollm.data.meta import SourceRange, TokenMeta
from picollm.data.sources import iter_documents
from picollm.data.tokenizer import get_tokenizer, token_dtype
from picollm.errors import PicoError
from picollm.io import atomic_path, sha256_file, write_json

DOCS_PER_BATCH = 1024  # documents per tiktoken batch: large enough to use every thread, small in memory
read_meta = check.read_meta  # a token folder's meta.json, read (and checked) as the stages read it


def flat_ids(encoded: list[list[int]], eot: int) -> np.ndarray:
    """One int64 array of every document's ids, each followed by end-of-text. Lists are joined by list `+=`
    (a C-level copy) and converted once: no Python-level step per token."""
    flat = []
    for ids in encoded:
        flat += ids
        flat.append(eot)
    return np.array(flat, dtype=np.int64)


def tokenize_split(tokenizer, raw_files: dict, out_path, threads: int) -> dict:
    """Stream each source's documents through the tokenizer into one .bin; return per-source ranges, each with
    its documents' digests (a NumPy array, for the train/validation overlap; not written to meta.json)."""
    dtype = token_dtype(tokenizer.n_vocab)
    ranges, start = {}, 0
    with atomic_path(out_path) as tmp, open(tmp, "wb") as out:
        for name, path in raw_files.items():
            n_docs, docs, source_start, seen = 0, iter_documents(path), start, []
            with tqdm(desc=f"tokenize {name} {Path(out_path).stem}", unit="doc", mininterval=2) as bar:
                while batch := list(itertools.islice(docs, DOCS_PER_BATCH)):
                    flat = flat_ids(tokenizer.encode_ordinary_batch(batch, num_threads=threads), tokenizer.eot_token)
                    if flat.size and flat.max() > np.iinfo(dtype).max:
                        raise PicoError(f"token id {flat.max()} does not fit {np.dtype(dtype).name}; "
                                        f"the tokenizer's vocabulary is larger than it reports")
                    out.write(flat.astype(dtype).tobytes())
                    seen.append(digests(batch))
                    n_docs += len(batch)
                    start += flat.size
                    bar.update(len(batch))
            if n_docs == 0:
                raise PicoError(f"{path} holds no documents; check the source {name!r}")
            ranges[name] = {"start": source_start, "end": start, "documents": n_docs, "digests": np.concatenate(seen)}
    return ranges


def digests(docs: list[str]) -> np.ndarray:
    """A 64-bit digest of each document (8 bytes a document, whatever its length)."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(d.encode(), digest_size=8).digest(), "little") for d in docs),
                       dtype=np.uint64, count=len(docs))


def documents_in_train(train: np.ndarray, val: np.ndarray) -> int:
    """How many validation documents (their digests) also appear, word for word, among the training documents:
    the share of the validation loss that measures recall of training text rather than generalization."""
    return int(np.isin(val, train).sum())


def tokenize(tokenizer_name: str, raw: dict, out_dir, threads: int, provenance: dict | None = None,
             tokenizer_json=None) -> dict:
    """raw: {source name: {"train": path, "val": path}} -> out_dir/{train,val}.bin and meta.json; returns the
    JSON written (read_meta reads it back as a TokenMeta).

    tokenizer_json: a `bpe:N` tokenizer's tokenizer.json (path or text); meta.json keeps its text and sha256,
    so the tokens and the models trained on them never depend on that file lying around."""
    tokenizer = get_tokenizer(tokenizer_name, tokenizer_json)
    out_dir = Path(out_dir)
    meta = {"tokenizer": tokenizer_name, "vocab_size": tokenizer.n_vocab, "eot_token": tokenizer.eot_token,
            "dtype": np.dtype(token_dtype(tokenizer.n_vocab)).name, "splits": {}, "raw_sha256": {}, "raw_bytes": {}}
    if hasattr(tokenizer, "json"):  # a trained BPE
        meta |= {"tokenizer_sha256": tokenizer.sha256, "tokenizer_json": tokenizer.json}
    found = {}  # {split: {source: document digests}}
    for split in ("train", "val"):
        files = {name: paths[split] for name, paths in raw.items()}
        sources = tokenize_split(tokenizer, files, out_dir / f"{split}.bin", threads)
        found[split] = {name: r.pop("digests") for name, r in sources.items()}
        meta["splits"][split] = {"tokens": max(r["end"] for r in sources.values()), "sources": sources,
                                 "sha256": sha256_file(out_dir / f"{split}.bin")}  # what check_split compares
        for name, path in files.items():
            meta["raw_sha256"][f"{name}/{split}"] = sha256_file(path)
            meta["raw_bytes"][f"{name}/{split}"] = Path(path).stat().st_size
    for name in raw:
        meta["splits"]["val"]["sources"][name]["documents_in_train"] = documents_in_train(found["train"][name],
                                                                                          found["val"][name])
    train = load_tokens(out_dir / "train.bin", TokenMeta.model_validate(meta))
    counts = sum(np.bincount(train[i:i + (1 << 24)], minlength=tokenizer.n_vocab) for i in range(0, len(train), 1 << 24))
    meta["train_vocab"] = np.flatnonzero(counts).tolist()  # ids seen in training: the compact vocabulary
    meta["provenance"] = provenance
    write_json(out_dir / "meta.json", meta)  # last: its presence means both .bin files are complete
    return meta


def load_tokens(path, meta: TokenMeta) -> np.ndarray:
    """Memory-map a split, checked against meta.json first (picollm.data.check): the OS pages tokens in as
    windows touch them, so RAM stays flat."""
    check.check_split(path, meta)
    return np.memmap(path, dtype=np.dtype(meta.dtype), mode="r")


class WindowSampler:
    """Random packed windows of block_size + 1 tokens, the source of each row drawn by weight.

    All randomness comes from one torch.Generator, so its state (saved in checkpoints) fixes every
    future batch; a resumed run draws exactly the batches the uninterrupted one would have. DRAWS names how
    batches are drawn from that state: the resume fingerprint holds it, so a checkpoint is never resumed by
    a sampler that draws differently.
    """
    DRAWS = "float64 offsets"

    def __init__(self, tokens: np.ndarray, sources: dict[str, SourceRange], weights: dict, block_size: int,
                 seed: int):
        if set(weights) != set(sources):  # a source left out, or a misspelt one, would silently not be trained on
            raise PicoError(f"the sampling weights name the sources {sorted(weights)}, but the token folder holds "
                            f"{sorted(sources)}; give one weight per source of the token folder")
        self.tokens, self.block_size = tokens, block_size
        self.names = [n for n in sources if weights[n] > 0]
        self.starts = torch.tensor([sources[n].start for n in self.names])
        # last valid window start is end - (block_size + 1)
        self.spans = torch.tensor([sources[n].end - sources[n].start - block_size for n in self.names])
        for name, span in zip(self.names, self.spans.tolist()):
            if span < 1:
                raise PicoError(f"source {name!r} has {sources[name].end - sources[name].start} tokens, fewer than "
                                f"block_size + 1 = {block_size + 1}; add data or lower block_size")
        self.probs = torch.tensor([float(weights[n]) for n in self.names])
        self.probs /= self.probs.sum()
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        src = torch.multinomial(self.probs, batch_size, replacement=True, generator=self.generator)
        # float64 draws: float32 has 2^24 values, too few to reach every start of a larger source
        draws = torch.rand(batch_size, generator=self.generator, dtype=torch.float64)
        offsets = (draws * self.spans[src]).long() + self.starts[src]
        rows = offsets.numpy()[:, None] + np.arange(self.block_size + 1)  # (B, T+1) fancy index, no Python loop
        window = torch.from_numpy(self.tokens[rows].astype(np.int64))
        return window[:, :-1], window[:, 1:]  # inputs, next-token targets


def documents(tokens: np.ndarray, start: int, end: int, eot: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, closings): the offset of every document of tokens[start:end] and of the end-of-text closing it.
    Every document is followed by end-of-text, so one starts at `start` and after each end-of-text but the last
    (a range without end-of-text: one start, no closing)."""
    closings = start + np.flatnonzero(np.asarray(tokens[start:end]) == eot)
    return np.concatenate([[start], closings[:-1] + 1]).astype(np.int64), closings


def spread(n: int, k: int) -> np.ndarray:
    """k of the indices 0 .. n - 1, evenly spread and distinct (k <= n)."""
    return np.linspace(0, n - 1, k).round().astype(np.int64)


def eval_windows(n_tokens: int, block_size: int, max_windows: int | None = None) -> np.ndarray:
    """Start offsets of non-overlapping windows that tile a split (deterministic, no sampling)."""
    starts = np.arange(0, n_tokens - block_size - 1 + 1, block_size)
    if max_windows is not None and len(starts) > max_windows:
        # spread a fixed subset evenly over the split rather than taking only its head
        starts = starts[spread(len(starts), max_windows)]
    return starts
