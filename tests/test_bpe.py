"""`tokenizer: bpe:N`: a byte-level BPE trained on the study's text. Deterministic training, exact round trips,
token bytes that add up to the text's UTF-8 bytes, config errors in one line, checkpoints that carry the
tokenizer, and a tiny workflow run whose bits per byte are over the same bytes as a byte-level model's."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import (TINYSTORIES_TRAIN, TINYSTORIES_VALID, needs_tinystories, picollm, snakemake,
                      tiny_offline_config, write_config)
from picollm.config import load_study
from picollm.data.bpe import EOT_TEXT, BpeTokenizer, train_bpe, write_tokenizer
from picollm.data.sources import iter_documents, write_documents
from picollm.data.tokenizer import checkpoint_tokenizer, get_tokenizer
from picollm.data.tokens import read_meta, tokenize
from picollm.errors import PicoError
from picollm.evaluate import token_byte_lengths
from picollm.models import build_model, checkpoint_dict, load_model

TEXTS = ["Once upon a time, there was a little dog named Max.", "", " leading space", "héllo wörld ✓ 日本語",
         "tabs\tand\n\nnew lines   and  runs of spaces ", f"text that mentions {EOT_TEXT} as text", "\x00\x7f\r\n"]
TRANSFORMER = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 1}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small training text: the TinyStories head's first 200 stories, or generated stories without it."""
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    if TINYSTORIES_TRAIN.is_file():
        docs = [d for _, d in zip(range(200), iter_documents(TINYSTORIES_TRAIN))]
    else:
        docs = [f"Story {i}: the cat saw {i % 7} dogs and a bird, and they played in the park." for i in range(200)]
    write_documents(path, docs)
    return path


@pytest.fixture(scope="module")
def bpe(corpus):
    return BpeTokenizer(train_bpe([corpus], 512), "bpe:512")


def test_training_twice_gives_the_same_file(corpus, tmp_path):
    first = write_tokenizer([corpus], 400, tmp_path / "a.json")
    write_tokenizer([corpus], 400, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert first.n_vocab == 400 and first.name == "bpe:400" and first.eot_token is not None


def test_round_trip_and_token_bytes_add_up_to_the_text(bpe):
    lengths = token_byte_lengths(bpe, bpe.n_vocab)
    assert lengths[bpe.eot_token] == 0 and (np.delete(lengths, bpe.eot_token) >= 1).all()
    for text in TEXTS:
        ids = bpe.encode_ordinary(text)
        assert bpe.decode(ids) == text
        assert b"".join(bpe.decode_single_token_bytes(i) for i in ids) == text.encode("utf-8")
        assert bpe.eot_token not in ids  # end-of-text inside a text is text, as in tiktoken's encode_ordinary


@needs_tinystories
def test_on_tinystories_bytes_match_and_batch_equals_single(bpe):
    docs = [d for _, d in zip(range(300), iter_documents(TINYSTORIES_VALID))]
    batch = bpe.encode_ordinary_batch(docs, num_threads=2)
    assert batch == [bpe.encode_ordinary(d) for d in docs]
    lengths = token_byte_lengths(bpe, bpe.n_vocab)
    assert sum(int(lengths[ids].sum()) for ids in batch) == sum(len(d.encode("utf-8")) for d in docs)
    assert all(bpe.decode(ids) == d for ids, d in zip(batch, docs))
    # merges learnt on stories: well under one token per byte
    assert sum(map(len, batch)) < 0.5 * sum(len(d.encode("utf-8")) for d in docs)


@pytest.mark.parametrize("name, message", [
    ("bpe:256", "config key 'tokenizer' is 'bpe:256': a byte-level BPE needs at least 257 tokens (256 bytes + "
                "end-of-text); use bpe:257 or more, e.g. bpe:4096"),
    ("bpe:65537", "config key 'tokenizer' is 'bpe:65537': at most 65536 tokens (ids are stored as uint16); use "
                  "bpe:65536 or less, e.g. bpe:4096"),
    ("bpe:4k", "config key 'tokenizer' is 'bpe:4k'; use byte, bpe:N (a BPE of N tokens trained on the study's text, "
               "257..65536, e.g. bpe:4096) or a tiktoken encoding (gpt2, r50k_base, p50k_base, p50k_edit, "
               "cl100k_base, o200k_base, o200k_harmony)"),
    ("gpt5", "config key 'tokenizer' is 'gpt5'; use byte, bpe:N"),
])
def test_bad_tokenizer_is_one_line(name, message):
    with pytest.raises(PicoError) as err:
        load_study(["config/offline.yaml"], {"tokenizer": name})
    assert str(err.value).startswith(f"--config: {message}") and "\n" not in str(err.value)


def test_validate_config_reports_a_bad_size(tmp_path):
    cfg = write_config(tmp_path / "study.yaml", tiny_offline_config(tokenizer="bpe:100"))
    result = picollm("validate-config", cfg)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {cfg}: config key 'tokenizer' is 'bpe:100'")
    assert load_study([cfg], {"tokenizer": "bpe:257"}).tokenizer == "bpe:257"


def test_a_trained_tokenizer_needs_its_json():
    with pytest.raises(PicoError, match="give its tokenizer.json"):
        get_tokenizer("bpe:300")


def test_checkpoint_carries_the_tokenizer_and_compact_vocab_works(corpus, tmp_path):
    """Tokens record the tokenizer; a checkpoint given it carries it, so sampling and evaluation need no
    tokenizer.json; a compact vocabulary is the ids seen, as with any tokenizer."""
    write_tokenizer([corpus], 300, tmp_path / "tokenizer.json")
    raw = {"s": {"train": corpus, "val": corpus}}
    meta = tokenize("bpe:300", raw, tmp_path / "tokens", 1, tokenizer_json=tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer.json").unlink()
    meta = read_meta(tmp_path / "tokens" / "meta.json")
    assert meta.tokenizer_sha256 == BpeTokenizer(meta.tokenizer_json, "bpe:300").sha256
    assert meta.vocab_size == 300 and len(meta.train_vocab) <= 300

    model = build_model(TRANSFORMER, meta.vocab_size, 16, compact_ids=meta.train_vocab)
    ids = torch.from_numpy(np.fromfile(tmp_path / "tokens" / "train.bin", dtype=meta.dtype)[:17].astype(np.int64))
    logits = model(ids[None, :-1])
    assert logits.shape[-1] == 300
    assert math.isfinite(torch.nn.functional.cross_entropy(logits[0], ids[1:]).item())

    torch.save(checkpoint_dict(model, TRANSFORMER, meta.vocab_size, 16, tokenizer=meta.tokenizer,
                               tokenizer_json=meta.tokenizer_json), tmp_path / "model.pt")
    tok = checkpoint_tokenizer(load_model(tmp_path / "model.pt").checkpoint)
    assert tok.name == "bpe:300" and tok.decode(tok.encode_ordinary(TEXTS[3])) == TEXTS[3]


def run_study(tmp_path, experiment: str, tokenizer: str) -> dict:
    """A tiny 3seqs study of one Transformer, run up to its evaluation; the eval JSON."""
    cfg = tiny_offline_config(experiment=experiment, steps=10, tokenizer=tokenizer)
    cfg["models"] = {"transformer": cfg["models"]["transformer"]}
    study = write_config(tmp_path / f"{experiment}.yaml", cfg)
    target = f"results/{experiment}/eval/transformer/seed7.json"
    result = snakemake(tmp_path, "--cores", "2", target, f"results/{experiment}/samples/transformer/seed7.jsonl",
                       "--configfile", study)  # --configfile takes every word after it
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / target).read_text())


def test_workflow_trains_the_tokenizer_and_bpb_counts_the_same_bytes(tmp_path):
    bpe_eval = run_study(tmp_path, "bpe", "bpe:300")
    data = tmp_path / "results" / "bpe" / "data"
    tok = BpeTokenizer((data / "tokenizer.json").read_text(), "bpe:300")
    assert bpe_eval["tokenizer"] == "bpe:300" and math.isfinite(bpe_eval["bpb"]) and bpe_eval["bpb"] > 0
    samples = (tmp_path / "results" / "bpe" / "samples" / "transformer" / "seed7.jsonl").read_text().splitlines()
    assert samples and all(isinstance(json.loads(line)["text"], str) for line in samples)

    # Both count the UTF-8 bytes of the validation documents (end-of-text counts 0 bytes), less the bytes of
    # the split's first token, which is context only: 1 byte for a byte model, a whole token for the BPE.
    # (A byte model's evaluation counts the bytes of its val.bin's tokens 1..end: those of the byte tokens.)
    raw = {"3seqs": {s: data / "raw" / "3seqs" / f"{s}.txt" for s in ("train", "val")}}
    byte_meta = tokenize("byte", raw, tmp_path / "byte-tokens", 1)
    byte_val = np.fromfile(tmp_path / "byte-tokens" / "val.bin", dtype=byte_meta["dtype"])
    byte_bytes = int(token_byte_lengths(get_tokenizer("byte"), 257)[byte_val[1:]].sum())
    docs = list(iter_documents(raw["3seqs"]["val"]))
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    first = tok.decode_single_token_bytes(tok.encode_ordinary(docs[0])[0])
    assert byte_bytes == text_bytes - 1
    assert bpe_eval["val_bytes"] == text_bytes - len(first)
    assert bpe_eval["val_tokens_scored"] < byte_meta["splits"]["val"]["tokens"] - 1


def test_train_tokenizer_job_is_given_the_tokenizer_only():
    from picollm import jobs
    cfg = load_study(["config/offline.yaml"], {"tokenizer": "bpe:300"})
    assert jobs.trains_tokenizer(cfg) and jobs.tokenizer(cfg) == {"tokenizer": "bpe:300"}
    assert not jobs.trains_tokenizer(load_study(["config/offline.yaml"]))
    assert jobs.code("train_tokenizer") != jobs.code("tokenize")
