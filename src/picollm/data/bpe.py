"""A byte-level BPE trained on the study's own training text (`tokenizer: bpe:N`), with Hugging Face `tokenizers`.

GPT-2's recipe at a size of our choosing: the ByteLevel pre-tokenizer (GPT-2's split pattern, every byte shown as
one printable character, no prefix space), the 256 byte symbols as the initial alphabet (so any text encodes,
whatever the training text held), one special token `<|endoftext|>`, and merges learnt until N tokens (fewer
when the text runs out of pairs to merge). The trainer breaks ties between equally frequent pairs by the pair
itself, so the same text gives the same tokenizer.json, byte for byte.

`BpeTokenizer` offers what the rest of pico-llm uses of a tiktoken Encoding. Its tokens map back to raw bytes
(`decode_single_token_bytes`), so a text's tokens hold exactly its UTF-8 bytes and bits per byte stays over
the raw text, comparable with any other tokenizer.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from picollm.data.sources import EOT_TEXT, iter_documents
from picollm.errors import PicoError
from picollm.io import atomic_path


@functools.cache
def byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table (bytes_to_unicode), the symbols of the ByteLevel steps."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(others)}}


def use_threads(threads: int) -> None:
    """Threads of `tokenizers`' pool: read once, when the pool first starts, so set before any training or batch."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, threads)))


def train_bpe(files: Iterable, vocab_size: int) -> str:
    """The tokenizer.json text of a byte-level BPE of `vocab_size` tokens learnt from the documents of `files`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Every byte in the alphabet, listed in byte order: the trainer sorts its alphabet, so this order is
    # for the reader only.
    alphabet = [byte_chars()[b] for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT_TEXT], initial_alphabet=alphabet,
                                  show_progress=False)  # its bars write to the terminal, not to the job's log
    files = [Path(f) for f in files]
    docs = (doc for path in files for doc in iter_documents(path))
    tok.train_from_iterator(tqdm(docs, desc="train tokenizer: count words", unit="doc", mininterval=2), trainer)
    return tok.to_str()


def write_tokenizer(files: Iterable, vocab_size: int, out_path) -> BpeTokenizer:
    """Train (train_bpe) and write tokenizer.json atomically; return the tokenizer."""
    text = train_bpe(files, vocab_size)
    with atomic_path(out_path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return BpeTokenizer(text, f"bpe:{vocab_size}")


def read_tokenizer_json(source) -> str:
    """tokenizer.json text from a path, or `source` itself when it already is JSON text."""
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return source
    path = Path(source)
    if not path.is_file():
        raise PicoError(f"tokenizer file {path} does not exist; run the train_tokenizer job first "
                        f"(snakemake ... {path})")
    return path.read_text(encoding="utf-8")


class BpeTokenizer:
    """A trained byte-level BPE with the interface of a tiktoken Encoding that pico-llm uses."""

    def __init__(self, json_text: str, name: str):
        from tokenizers import Tokenizer
        try:
            self.tokenizer = Tokenizer.from_str(json_text)
        except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
            raise PicoError(f"the tokenizer of {name!r} is not a valid tokenizer.json ({str(exc)[:80]}); "
                            f"rerun the train_tokenizer job") from None
        # encode_ordinary treats "<|endoftext|>" inside a text as text, as tiktoken's does
        self.tokenizer.encode_special_tokens = True
        self.name, self.json = name, json_text
        self.sha256 = hashlib.sha256(json_text.encode("utf-8")).hexdigest()
        self.n_vocab = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.eot_token = self.tokenizer.token_to_id(EOT_TEXT)
        if self.eot_token is None:
            raise PicoError(f"the tokenizer of {name!r} has no {EOT_TEXT} token; rerun the train_tokenizer job")
        char_byte = {c: b for b, c in byte_chars().items()}
        # the raw bytes of every token: a token's symbols are one character per byte
        self.token_bytes = [EOT_TEXT.encode() if i == self.eot_token else
                            bytes(char_byte[c] for c in self.tokenizer.id_to_token(i)) for i in range(self.n_vocab)]

    def encode_ordinary(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_ordinary_batch(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        """Token ids of each text, encoded in parallel by `tokenizers` (its pool's size is set by use_threads)."""
        use_threads(num_threads)
        return [e.ids for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def decode_single_token_bytes(self, token: int) -> bytes:
        if not 0 <= token < self.n_vocab:
            raise KeyError(token)
        return self.token_bytes[token]

    def decode(self, ids) -> str:
        """The text of `ids` (end-of-text included as its text, as tiktoken's decode does)."""
        return b"".join(self.token_bytes[i] for i in ids).decode("utf-8", errors="replace")
