"""A token folder's meta.json as a typed, frozen object: what tokenize records and the stages read.

picollm.data.check reads the file into a TokenMeta (one line naming the file and the fix when it is not one);
train, evaluate and the reference samples read its attributes. A file must hold its dtype, its vocabulary size
and each split's token count and source ranges; any other key of these classes is None where the file lacks it,
and a key they do not name is kept as it is, so model_dump(exclude_unset=True) is the file's JSON. Types are
strict, as JSON gives them: a count is an int, never a string or a yes/no.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from picollm.errors import PicoError

# the bytes of one token id in each dtype tokenize may store them in
ITEMSIZE = {"uint8": 1, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8}
Dtype = Literal[tuple(ITEMSIZE)]


class MetaPart(BaseModel):
    """A part of meta.json: frozen, strict, and the keys it does not name kept, so that a dump is the file."""
    model_config = ConfigDict(frozen=True, strict=True, extra="allow")


class SourceRange(MetaPart):
    """Where one source's tokens lie in a split's .bin: token offsets [start, end)."""
    start: int
    end: int
    documents: Optional[int] = None
    documents_in_train: Optional[int] = None  # validation documents that appear word for word in training


class Split(MetaPart):
    """One split's .bin: its token count, its sources in file order, and the sha256 check_split compares."""
    tokens: int
    sources: dict[str, SourceRange]
    sha256: Optional[str] = None


class Splits(MetaPart):
    """The train and val splits every stage reads; any other split in the file is a Split too."""
    __pydantic_extra__: dict[str, Split]
    train: Split
    val: Split

    def by_name(self) -> dict[str, Split]:
        """Every split, by name: train, val and the others the file holds."""
        return dict(self)


class TokenMeta(MetaPart):
    """meta.json of a token folder (picollm.data.tokens.tokenize writes it)."""
    tokenizer: Optional[str] = None
    vocab_size: int
    eot_token: Optional[int] = None
    dtype: Dtype
    splits: Splits
    raw_sha256: Optional[dict[str, str]] = None  # {source/split: sha256 of its raw text}
    raw_bytes: Optional[dict[str, int]] = None
    tokenizer_sha256: Optional[str] = None  # a trained BPE's
    tokenizer_json: Optional[str] = None  # a trained BPE's tokenizer.json, as text
    train_vocab: Optional[list[int]] = None  # the ids the training split holds: the compact vocabulary
    provenance: Optional[dict] = None

    def compact_ids(self) -> list[int]:
        """The ids the training split holds: the compact vocabulary of compact_vocab: true."""
        if self.train_vocab is None:
            raise PicoError("the token folder's meta.json lists no train_vocab, which compact_vocab: true needs; "
                            "delete the token folder and rerun: tokenize rebuilds it (models trained on it are kept)")
        return self.train_vocab

    @property
    def itemsize(self) -> int:
        """Bytes per token in the .bin files."""
        return ITEMSIZE[self.dtype]
