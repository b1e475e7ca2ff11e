"""Data sources, tokenizers, token arrays and the training-window sampler."""
import json
import time

import numpy as np
import pytest
import torch

from conftest import TINYSTORIES_TRAIN, needs_gpt2, needs_tinystories
from picollm.data import sources
from picollm.data.meta import SourceRange
from picollm.data.sources import iter_documents, three_seqs, write_documents
from picollm.data.tokenizer import ByteTokenizer, get_tokenizer, token_dtype
from picollm.data.tokens import WindowSampler, eval_windows, load_tokens, read_meta, tokenize
from picollm.config.sections import SOURCE_CLASSES, TextSource, TinyStoriesSource
from picollm.errors import PicoError


def test_documents_separated_by_endoftext_lines(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("Once upon a time.\nThe end.\n<|endoftext|>\nSecond story.\n<|endoftext|>\n\n")
    assert list(iter_documents(f)) == ["Once upon a time.\nThe end.", "Second story."]


def test_one_document_per_line_without_separator(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("first line\n\nsecond line\n")
    assert sources.detect_split([f]) == "line"
    assert list(iter_documents(f, sources.detect_split([f]))) == ["first line", "second line"]


def test_write_then_read_roundtrip(tmp_path):
    docs = ["a b\nc", "d", "e  f"]
    assert write_documents(tmp_path / "x.txt", docs) == 3
    assert list(iter_documents(tmp_path / "x.txt")) == docs


def test_not_utf8_names_byte_offset(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"hello\nwor\xffld\n")
    with pytest.raises(PicoError, match=r"offset 9; convert it \(e.g. iconv -t UTF-8\)$"):
        list(iter_documents(f))
    # a raw file the download stage wrote (results/<experiment>/data/raw/<source>/) is made again, not converted
    raw = tmp_path / "data" / "raw" / "stories" / "train.txt"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(f.read_bytes())
    with pytest.raises(PicoError, match=r"offset 9; delete it and rerun: download makes it again$"):
        list(iter_documents(raw))


def test_missing_file(tmp_path):
    with pytest.raises(PicoError, match="does not exist"):
        list(iter_documents(tmp_path / "nope.txt"))


def test_text_source_empty_file_and_holdout(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    src = TextSource(kind="text", name="t", train_files=[str(empty)], val_files=[])
    with pytest.raises(PicoError, match="empty"):
        sources.download(src, 0, 0.1, tmp_path / "tr.txt", tmp_path / "va.txt")
    assert not (tmp_path / "tr.txt").exists()
    full = tmp_path / "full.txt"
    full.write_text("\n".join(f"doc {i}" for i in range(20)))
    src = src.model_copy(update={"train_files": [str(full)]})
    counts = sources.download(src, 0, 0.1, tmp_path / "tr.txt", tmp_path / "va.txt")
    assert counts == {"train_documents": 18, "val_documents": 2, "split_on": "line"}
    assert list(iter_documents(tmp_path / "va.txt")) == ["doc 18", "doc 19"]


def test_three_seqs_deterministic_and_well_formed():
    a, b = list(three_seqs(200, 8, seed=3)), list(three_seqs(200, 8, seed=3))
    assert a == b and a != list(three_seqs(200, 8, seed=4))
    for line in a:
        nums = [int(x) for x in line.split()]
        assert 2 <= len(nums) <= 8
        diffs = {y - x for x, y in zip(nums, nums[1:])}
        fib = all(z == x + y for x, y, z in zip(nums, nums[1:], nums[2:]))
        squares = all(int(round(n ** 0.5)) ** 2 == n for n in nums)
        powers = all(n > 0 and n & (n - 1) == 0 for n in nums)
        assert diffs == {1} or fib or squares or powers or set(nums) == {0}, line


def test_tinystories_offline_fails_fast_with_alternatives(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # nothing listens there: like being offline
    start = time.perf_counter()
    src = TinyStoriesSource(kind="tinystories", name="ts", train_stories=5, val_stories=5,
                            dataset="roneneldan/TinyStories", revision="main")
    with pytest.raises(PicoError) as err:
        sources.download(src, 0, 0.1, tmp_path / "tr.txt", tmp_path / "va.txt")
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert "Hugging Face Hub" in msg and "'text' source" in msg and "3seqs" in msg and "\n" not in msg


@needs_gpt2
def test_the_vocabularies_a_study_counts_before_tokenizing_are_the_tokenizers():
    """config.FIXED_VOCAB, which a study's FLOP budget is checked with before any text is tokenized."""
    from picollm.config.sections import FIXED_VOCAB
    assert {name: get_tokenizer(name).n_vocab for name in ("gpt2", "byte")} == {"gpt2": 50257, "byte": 257}
    assert {name: FIXED_VOCAB[name] for name in ("gpt2", "byte")} == {"gpt2": 50257, "byte": 257}


def test_byte_tokenizer():
    tok = ByteTokenizer()
    ids = tok.encode_ordinary("héllo")
    assert max(ids) < 256 and tok.decode(ids + [tok.eot_token]) == "héllo" and tok.n_vocab == 257


@needs_gpt2
def test_gpt2_offline_from_cache():
    tok = get_tokenizer("gpt2")
    assert tok.encode_ordinary("Hello world") == [15496, 995] and tok.eot_token == 50256


def test_unreachable_bpe_host_names_the_fixes(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    import tiktoken.load

    def offline(url):
        raise ConnectionError(f"cannot reach {url}")
    monkeypatch.setattr(tiktoken.load, "read_file", offline)
    import tiktoken.registry
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget encodings loaded by other tests
    with pytest.raises(PicoError, match="TIKTOKEN_CACHE_DIR.*tokenizer: byte"):
        get_tokenizer("r50k_base")


def test_dtype_choice():
    assert token_dtype(257) == np.uint16 and token_dtype(50257) == np.uint16 and token_dtype(100277) == np.uint32


def _raw(tmp_path, name, train_docs, val_docs):
    d = tmp_path / "raw" / name
    write_documents(d / "train.txt", train_docs)
    write_documents(d / "val.txt", val_docs)
    return {"train": str(d / "train.txt"), "val": str(d / "val.txt")}


def test_tokenize_writes_bins_and_meta(tmp_path):
    raw = {"a": _raw(tmp_path, "a", ["ab", "c"], ["d"]), "b": _raw(tmp_path, "b", ["xyz"], ["w"])}
    meta = tokenize("byte", raw, tmp_path / "tok", threads=1)
    train = np.fromfile(tmp_path / "tok" / "train.bin", dtype=np.uint16)
    assert train.tolist() == [97, 98, 256, 99, 256, 120, 121, 122, 256]
    assert meta["splits"]["train"]["sources"] == {"a": {"start": 0, "end": 5, "documents": 2},
                                                  "b": {"start": 5, "end": 9, "documents": 1}}
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 257 and len(meta["raw_sha256"]) == 4
    assert meta["splits"]["val"]["sources"]["a"]["documents_in_train"] == 0


def test_tokenize_counts_validation_documents_found_in_training(tmp_path):
    """meta.json says how many validation documents also appear word for word in training (evaluation's note
    that their loss measures recall); 3seqs' small space of sequences repeats most of them."""
    raw = {"a": _raw(tmp_path, "a", ["one", "two", "two", "three"], ["two", "four", "one", "five"])}
    meta = tokenize("byte", raw, tmp_path / "tok", threads=1)
    assert meta["splits"]["val"]["sources"]["a"]["documents_in_train"] == 2
    lines = list(three_seqs(4000, 10, 1337))  # config/offline.yaml's: the first 200 are held out
    meta = tokenize("byte", {"s": _raw(tmp_path, "s", lines[200:], lines[:200])}, tmp_path / "tok3", threads=1)
    assert 0.5 < meta["splits"]["val"]["sources"]["s"]["documents_in_train"] / 200 < 1


@needs_gpt2
@needs_tinystories
def test_tokenize_real_tinystories_gpt2(tmp_path):
    docs = list(iter_documents(TINYSTORIES_TRAIN))[:50]
    raw = {"ts": _raw(tmp_path, "ts", docs[:45], docs[45:])}
    meta = tokenize("gpt2", raw, tmp_path / "tok", threads=2)
    tokens = np.fromfile(tmp_path / "tok" / "train.bin", dtype=np.uint16)
    assert (tokens == 50256).sum() == 45 and meta["splits"]["train"]["tokens"] == len(tokens)
    tok = get_tokenizer("gpt2")
    first_doc = tokens[: np.argmax(tokens == 50256)]
    assert tok.decode(first_doc.tolist()) == docs[0]


def test_window_sampler_shapes_targets_and_mixing(tmp_path):
    tokens = np.arange(1000, dtype=np.uint16)
    ranges = {"a": SourceRange(start=0, end=500), "b": SourceRange(start=500, end=1000)}
    sampler = WindowSampler(tokens, ranges, {"a": 3.0, "b": 1.0}, block_size=16, seed=0)
    x, y = sampler.batch(4000)
    assert x.shape == y.shape == (4000, 16) and torch.equal(x[:, 1:], y[:, :-1]) and torch.all(y == x + 1)
    from_a = (x[:, 0] < 500 - 16).float().mean().item()
    assert abs(from_a - 0.75) < 0.03  # weight 3:1
    assert int(y[x[:, 0] < 500].max()) < 500  # a window never runs past its source's tokens
    again = WindowSampler(tokens, ranges, {"a": 3.0, "b": 1.0}, block_size=16, seed=0).batch(4000)[0]
    assert torch.equal(x, again)


def test_window_sampler_reaches_every_start_of_a_large_source():
    """Starts are drawn in float64: a source past 2^24 tokens gets odd starts and its last ones, which float32
    draws (2^24 values) would skip."""
    span = 2 ** 25 + 5
    tokens = np.arange(span + 15, dtype=np.uint32)  # a token is its own offset
    sampler = WindowSampler(tokens, {"a": SourceRange(start=0, end=span + 15)}, {"a": 1.0}, block_size=15, seed=0)
    starts = sampler.batch(200_000)[0][:, 0]
    assert (starts % 2 == 1).float().mean() > 0.4 and int(starts.max()) < span


def test_too_few_tokens_for_a_window():
    with pytest.raises(PicoError, match="fewer than block_size"):
        WindowSampler(np.zeros(10, np.uint16), {"a": SourceRange(start=0, end=10)}, {"a": 1}, block_size=16, seed=0)


def test_weights_of_other_sources_than_the_token_folder_are_refused():
    """A source missing from the weights, or a misspelt weight key, is one line naming both lists, never a source
    silently left out of training."""
    tokens = np.arange(100, dtype=np.uint16)
    ranges = {"a": SourceRange(start=0, end=50), "b": SourceRange(start=50, end=100)}
    for weights in ({"a": 1.0}, {"a": 1.0, "bb": 1.0}, {"a": 1.0, "b": 1.0, "c": 1.0}):
        with pytest.raises(PicoError) as err:
            WindowSampler(tokens, ranges, weights, block_size=8, seed=0)
        assert str(err.value) == (f"the sampling weights name the sources {sorted(weights)}, but the token folder "
                                  f"holds ['a', 'b']; give one weight per source of the token folder")


def test_eval_windows_tile_without_overlap():
    starts = eval_windows(100, 10)
    assert starts.tolist() == list(range(0, 90, 10)) and eval_windows(100, 10, 3).tolist() == [0, 40, 80]


def test_a_token_folder_one_level_up_names_the_right_one(tmp_path):
    byte = tokenize("byte", {"a": _raw(tmp_path, "a", ["ab"], ["c"])}, tmp_path / "data" / "tokens", threads=1)
    assert byte["vocab_size"] == 257
    with pytest.raises(PicoError) as err:
        read_meta(tmp_path / "data" / "meta.json")
    assert str(err.value) == (f"{tmp_path / 'data' / 'meta.json'} does not exist; the token folder is "
                              f"{tmp_path / 'data' / 'tokens'}: give that")


def test_missing_token_files(tmp_path):
    with pytest.raises(PicoError, match="tokenize stage"):
        read_meta(tmp_path / "meta.json")
    with pytest.raises(PicoError, match="tokenize stage"):
        load_tokens(tmp_path / "train.bin", {"dtype": "uint16"})
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint16"}))  # JSON, without what the stages read
    with pytest.raises(PicoError, match=r"is not a whole meta.json \(no valid vocab_size, splits\)"):
        read_meta(tmp_path / "meta.json")
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": 257, "splits": {}}))
    with pytest.raises(PicoError, match=r"is not a whole meta.json \(no valid splits.train, splits.val\)"):
        read_meta(tmp_path / "meta.json")  # evaluate would fail on it with a KeyError
    split = {"tokens": 2, "sources": {"a": {"start": 0, "end": 2}}}  # a sha256 is checked where there is one
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": 257,
                                                    "splits": {"train": split, "val": {**split, "sources": None}}}))
    with pytest.raises(PicoError, match=r"is not a whole meta.json \(no valid splits.val.sources\)"):
        read_meta(tmp_path / "meta.json")
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": 257,
                                                    "splits": {"train": split, "val": split}}))
    assert read_meta(tmp_path / "meta.json").dtype == "uint16"


def test_token_ids_that_do_not_fit_the_dtype(tmp_path, monkeypatch):
    class Liar(ByteTokenizer):  # claims a byte-sized vocabulary, emits a huge id
        def encode_ordinary_batch(self, texts, num_threads=1):
            return [[70000] for _ in texts]
    from picollm.data import tokens as tokens_module
    monkeypatch.setattr(tokens_module, "get_tokenizer", lambda name, tokenizer_json=None: Liar())
    raw = {"a": _raw(tmp_path, "a", ["x"], ["y"])}
    with pytest.raises(PicoError, match="does not fit uint16"):
        tokenize("byte", raw, tmp_path / "tok", threads=1)
    assert not (tmp_path / "tok" / "train.bin").exists()


def test_text_source_split_rules(tmp_path):
    """eot, blank_line, line and none cut one file four ways; end-of-text lines are never text."""
    path = tmp_path / "t.txt"
    path.write_text("a1\na2\n\nb1\n<|endoftext|>\nc1\n\nc2\n")
    assert list(iter_documents(path, "eot")) == ["a1\na2\n\nb1", "c1\n\nc2"]
    assert list(iter_documents(path, "blank_line")) == ["a1\na2", "b1", "c1", "c2"]
    assert list(iter_documents(path, "line")) == ["a1", "a2", "b1", "c1", "c2"]
    assert list(iter_documents(path, "none")) == ["a1\na2\n\nb1\nc1\n\nc2"]


def test_validation_files_are_split_as_the_train_files(tmp_path, capsys):
    """A validation file without end-of-text lines is not cut per line when the train files hold such lines."""
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("one story\n\nits second paragraph\n<|endoftext|>\nanother story\n<|endoftext|>\n")
    val.write_text("a held-out story\n\nits second paragraph\n")
    src = TextSource(kind="text", name="t", train_files=[str(train)], val_files=[str(val)])
    counts = sources.download(src, 0, 0.1, tmp_path / "tr.txt", tmp_path / "va.txt")
    assert counts == {"train_documents": 2, "val_documents": 1, "split_on": "eot"}
    assert "split_on not given; its files are cut at <|endoftext|> lines (split_on: eot)" in capsys.readouterr().out
    line = TextSource(kind="text", name="t", train_files=[str(train)], val_files=[str(val)], split_on="blank_line")
    assert sources.download(line, 0, 0.1, tmp_path / "tr.txt", tmp_path / "va.txt")["val_documents"] == 2


def test_every_source_kind_of_the_schema_has_its_download():
    assert set(sources.DOWNLOADS) == set(SOURCE_CLASSES)
