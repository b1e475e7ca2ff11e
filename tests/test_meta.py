"""meta.json read as a TokenMeta: the same values as the file's JSON, in every fingerprint and checkpoint."""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pydantic
import pytest

from picollm import checkpoint, finished, train
from picollm.config import TrainConfig, model_config
from picollm.data.meta import ITEMSIZE, Dtype, SourceRange, TokenMeta
from picollm.data.sources import write_documents
from picollm.data.tokens import read_meta, tokenize
from picollm.errors import PicoError
from picollm.flops import output_vocab

ROOT = Path(__file__).resolve().parent.parent
REBUILD = "; delete it and rerun: tokenize rebuilds it (models trained on it are kept)"
MODEL = model_config({"type": "transformer", "n_layers": 1, "d_model": 16, "n_heads": 2})


@pytest.fixture
def tokens(tmp_path) -> Path:
    """A token folder as the tokenize stage writes it: two sources, byte tokens, a provenance record."""
    raw = {}
    for name, docs in (("a", ["ab", "cd", "ab"]), ("b", ["xyz", "w"])):
        write_documents(tmp_path / name / "train.txt", docs)
        write_documents(tmp_path / name / "val.txt", docs[:1])
        raw[name] = {split: str(tmp_path / name / f"{split}.txt") for split in ("train", "val")}
    folder = tmp_path / "tokens"
    tokenize("byte", raw, folder, 1, provenance={"stage": "tokenize", "inputs": ["a"]})
    return folder


def test_the_typed_meta_holds_exactly_the_json(tokens):
    data = json.loads((tokens / "meta.json").read_text())
    meta = read_meta(tokens / "meta.json")
    assert meta.model_dump(exclude_unset=True) == data
    assert meta.splits.val.sources["a"] == SourceRange(start=0, end=3, documents=1, documents_in_train=1)
    assert meta.splits.train.sha256 == data["splits"]["train"]["sha256"] and meta.itemsize == 2
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        meta.vocab_size = 3


def test_a_key_it_does_not_name_is_kept(tokens):
    data = json.loads((tokens / "meta.json").read_text())
    data["splits"]["test"] = data["splits"]["val"]
    (tokens / "meta.json").write_text(json.dumps({**data, "note": [1, "x"]}))
    meta = read_meta(tokens / "meta.json")
    assert meta.model_dump(exclude_unset=True) == {**data, "note": [1, "x"]}
    assert list(meta.splits.by_name()) == ["train", "val", "test"] and meta.splits.by_name()["test"] == meta.splits.val


def test_fingerprints_hash_the_json_values(tokens, monkeypatch):
    """resume_id and finished_identity hash meta.json's own values (plain JSON, never an object's repr), so that
    a checkpoint or a finished run of a token folder matches as it did when the stages read a dict."""
    data = json.loads((tokens / "meta.json").read_text())
    meta = read_meta(tokens / "meta.json")
    hashed = []
    monkeypatch.setattr(checkpoint, "fingerprint", lambda *parts: hashed.append(parts) or "hash")
    monkeypatch.setattr(finished, "code", lambda kind: "code")
    checkpoint.resume_id(train.TrainSpec("m", MODEL, TrainConfig(), 1, 8, compact_vocab=True), meta)
    checkpoint.finished_identity(train.TrainSpec("m", MODEL, TrainConfig(), 1, 8, weights={"a": 1.0},
                                                 compact_vocab=True), meta)
    resume, identity_resume, identity = hashed  # finished_identity hashes its resume_id and the checksums
    checksums = {split: info["sha256"] for split, info in data["splits"].items()}
    assert data["raw_sha256"] in resume and data["tokenizer"] in resume
    assert data["raw_sha256"] in identity_resume and data["tokenizer"] in identity_resume
    assert identity == ("hash", checksums)
    json.dumps([resume, identity_resume, identity])  # every part is JSON as it is: fingerprint's default=str never runs
    assert output_vocab(meta, True) == len(set(data["train_vocab"])) + 1 and output_vocab(meta, False) == 257


def test_a_split_without_a_checksum_hashes_none(tokens, monkeypatch):
    data = json.loads((tokens / "meta.json").read_text())
    del data["splits"]["val"]["sha256"], data["raw_sha256"]
    (tokens / "meta.json").write_text(json.dumps(data))
    hashed = []
    monkeypatch.setattr(checkpoint, "fingerprint", lambda *parts: hashed.append(parts) or "hash")
    checkpoint.finished_identity(train.TrainSpec("m", MODEL, TrainConfig(), 1, 8), read_meta(tokens / "meta.json"))
    resume, identity = hashed
    assert None in resume and identity == ("hash", {"train": data["splits"]["train"]["sha256"], "val": None})


@pytest.mark.parametrize("change, says", [
    (lambda d: d["splits"]["val"]["sources"]["a"].pop("start"), "no valid splits.val.sources.a.start"),
    (lambda d: d.update(vocab_size="257"), "no valid vocab_size"),
    (lambda d: d.update(tokenizer=7, eot_token=None), "no valid tokenizer"),
    (lambda d: d["splits"].pop("train"), "no valid splits.train"),
    # a list's bad items are named by the list, and at most three places are named
    (lambda d: d.update(train_vocab=[str(i) for i in range(5000)]), "no valid train_vocab"),
    (lambda d: d.update(vocab_size=None, eot_token="x", tokenizer=1, raw_bytes=[]),
     "no valid tokenizer, vocab_size, eot_token, ..."),
])
def test_a_damaged_meta_json_is_one_line_naming_the_key(tokens, change, says):
    data = json.loads((tokens / "meta.json").read_text())
    change(data)
    (tokens / "meta.json").write_text(json.dumps(data))
    with pytest.raises(PicoError) as err:
        read_meta(tokens / "meta.json")
    assert str(err.value) == f"{tokens / 'meta.json'} is not a whole meta.json ({says}){REBUILD}"


@pytest.mark.parametrize("content", [[1, 2], {"dtype": "float32", "vocab_size": 3}, {"vocab_size": 3}])
def test_another_json_file_has_no_known_dtype(tmp_path, content):
    (tmp_path / "meta.json").write_text(json.dumps(content))
    with pytest.raises(PicoError) as err:
        read_meta(tmp_path / "meta.json")
    assert str(err.value) == f"{tmp_path / 'meta.json'} is not a token folder's meta.json (no known dtype){REBUILD}"


def test_compact_vocab_on_tokens_without_their_training_ids_is_one_line(tokens):
    data = json.loads((tokens / "meta.json").read_text())
    del data["train_vocab"]
    (tokens / "meta.json").write_text(json.dumps(data))
    meta = read_meta(tokens / "meta.json")
    assert output_vocab(meta, compact_vocab=False) == meta.vocab_size
    with pytest.raises(PicoError, match=r"^the token folder's meta.json lists no train_vocab, which compact_vocab: "
                                        r"true needs; delete the token folder and rerun: tokenize rebuilds it"):
        output_vocab(meta, compact_vocab=True)


def test_tokens_give_a_token_meta_in_file_order(tokens):
    meta = read_meta(tokens / "meta.json")
    assert isinstance(meta, TokenMeta) and list(meta.splits.train.sources) == ["a", "b"]


def test_the_snakefile_checks_token_folders_without_torch():
    code = ("import sys, picollm.data.check; loaded = {'torch', 'numpy', 'pandas'} & set(sys.modules); "
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_dtype_has_its_size():
    assert set(get_args(Dtype)) == set(ITEMSIZE)
