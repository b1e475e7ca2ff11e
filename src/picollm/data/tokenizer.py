"""Tokenizers: any tiktoken encoding (GPT-2 BPE by default), `byte` (UTF-8 bytes + end-of-text) or `bpe:N`
(a byte-level BPE trained on the study's text, picollm.data.bpe)."""
from __future__ import annotations

import os

import numpy as np

from picollm.config import bpe_vocab_size
from picollm.data.sources import EOT_TEXT
from picollm.errors import PicoError


class ByteTokenizer:
    """UTF-8 bytes 0..255 plus one end-of-text token (256): needs no download, ever."""

    name = "byte"
    n_vocab = 257
    eot_token = 256

    def encode_ordinary_batch(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def encode_ordinary(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def decode_single_token_bytes(self, token: int) -> bytes:
        return EOT_TEXT.encode() if token == self.eot_token else bytes([token])


def get_tokenizer(name: str, tokenizer_json=None):
    """The tokenizer object for a config's `tokenizer` value (tiktoken Encoding, ByteTokenizer or BpeTokenizer).

    A `bpe:N` tokenizer is the one trained for the study: `tokenizer_json` gives it, as the path of its
    tokenizer.json or that file's text (a checkpoint carries the text: see checkpoint_tokenizer).
    """
    if name == "byte":
        return ByteTokenizer()
    if bpe_vocab_size(name) is not None:
        from picollm.data.bpe import BpeTokenizer, read_tokenizer_json
        if tokenizer_json is None:
            raise PicoError(f"tokenizer {name!r} is trained on the study's text: give its tokenizer.json "
                            f"(results/<experiment>/data/tokenizer.json) or a checkpoint that holds it")
        return BpeTokenizer(read_tokenizer_json(tokenizer_json), name)
    import tiktoken
    try:
        return tiktoken.get_encoding(name)
    except ValueError as exc:
        raise PicoError(f"unknown tokenizer {name!r}: {exc}; use byte or one of {tiktoken.list_encoding_names()}") from None
    except Exception as exc:  # requests' ConnectionError and friends: the BPE files could not be fetched
        raise PicoError(f"cannot download the {name!r} BPE files ({type(exc).__name__}); set TIKTOKEN_CACHE_DIR to a "
                        f"folder holding them (cache: {os.environ.get('TIKTOKEN_CACHE_DIR', 'unset')}) or use "
                        f"tokenizer: byte") from None


def checkpoint_tokenizer(ckpt: dict):
    """The tokenizer a model was trained with, from its checkpoint alone (a trained BPE's JSON included)."""
    return get_tokenizer(ckpt["tokenizer"], ckpt.get("tokenizer_json"))


def token_dtype(vocab_size: int):
    """uint16 when every id fits (GPT-2's 50257 does), else uint32: half the disk and page cache."""
    return np.uint16 if vocab_size <= 2 ** 16 else np.uint32
