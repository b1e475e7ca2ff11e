"""Evaluation on hand-made inputs: whole-split scoring (every token once, tail included), bits per byte,
per-source aggregation, and the eval tables."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from picollm import evaluate as ev
from picollm import models, tables
from picollm.config import SamplingConfig
from picollm.data.meta import SourceRange, TokenMeta
from picollm.data.tokenizer import ByteTokenizer
from picollm.errors import PicoError

from conftest import needs_gpt2
from toy_models import Uniform, tiny


# --- whole-split scoring and bits per byte ----------------------------------------------------------

def score_tokens(model, tokens: np.ndarray, block_size: int, batch_size: int, device) -> tuple[float, int]:
    """(total nats, number of predicted tokens) of one source spanning the whole array, as evaluate_split
    scores each source: its windows, scored by window_nats."""
    windows = ev.source_windows(0, len(tokens), block_size)
    return float(ev.window_nats(model, tokens, windows, batch_size, device)[0].sum()), ev.predictions(windows)


def brute_force_nats(model, tokens, block):
    """Sum of next-token losses over windows starting at 0, block, 2 block, ... (the last one shorter)."""
    total, count = 0.0, 0
    for s in range(0, len(tokens) - 1, block):
        w = torch.tensor(tokens[s:s + block + 1], dtype=torch.long)
        logits = model(w[None, :-1])[0]
        total += F.cross_entropy(logits, w[1:], reduction="sum").item()
        count += len(w) - 1
    return total, count


@pytest.mark.parametrize("n", [2, 5, 9, 17, 8 * 4 + 1, 8 * 4 + 6])
@pytest.mark.parametrize("model_type", ["transformer", "lstm"])
def test_score_tokens_scores_every_token_once(n, model_type):
    model = tiny(model_type)
    tokens = np.random.default_rng(n).integers(0, 30, n).astype(np.uint16)
    nats, count = score_tokens(model, tokens, block_size=8, batch_size=3, device="cpu")
    want_nats, want_count = brute_force_nats(model, tokens.tolist(), 8)
    assert count == n - 1 == want_count
    assert nats == pytest.approx(want_nats, rel=1e-5)


def test_score_tokens_of_a_compact_vocabulary_model():
    torch.manual_seed(0)
    model = models.build_model({"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1}, 30, 8,
                               compact_ids=[0, 2, 4, 6, 8, 10]).eval()
    tokens = np.random.default_rng(5).integers(0, 30, 29).astype(np.uint16)  # unseen ids included
    nats, count = score_tokens(model, tokens, block_size=8, batch_size=2, device="cpu")
    want_nats, want_count = brute_force_nats(model, tokens.tolist(), 8)  # from the full (B, T, V) logits
    assert count == want_count == 28 and nats == pytest.approx(want_nats, rel=1e-5)


def test_score_tokens_is_deterministic_and_batch_size_free():
    model = tiny()
    tokens = np.random.default_rng(0).integers(0, 30, 100).astype(np.uint16)
    a = score_tokens(model, tokens, 8, 1, "cpu")
    b = score_tokens(model, tokens, 8, 64, "cpu")
    assert a[1] == b[1] and a[0] == pytest.approx(b[0], rel=1e-6)
    assert score_tokens(model, tokens[:1], 8, 4, "cpu") == (0.0, 0)


def test_bits_per_byte_of_a_uniform_byte_model_with_eot_as_zero_bytes():
    tok = ByteTokenizer()
    lengths = ev.token_byte_lengths(tok, tok.n_vocab)
    assert lengths[tok.eot_token] == 0 and (lengths[:256] == 1).all()
    # "héllo" is 6 UTF-8 bytes; then end-of-text; then "ab" and end-of-text
    text = [*"héllo".encode(), 256, *b"ab", 256]
    tokens = np.array(text, dtype=np.uint16)
    res = ev.evaluate_split(Uniform(), tokens, {"s": SourceRange(start=0, end=len(tokens))}, lengths, 8, 4, "cpu")
    rec = res["all"]
    scored = len(tokens) - 1
    assert rec["tokens"] == scored
    assert rec["bytes"] == 5 + 2  # the first byte is context only; both end-of-text tokens count 0 bytes
    assert rec["loss"] == pytest.approx(math.log(257))
    assert rec["perplexity"] == pytest.approx(257)
    assert rec["bpb"] == pytest.approx(scored * math.log(257) / (math.log(2) * 7))
    assert rec["eot_share"] is None  # end-of-text not named: not counted apart
    named = ev.evaluate_split(Uniform(), tokens, {"s": SourceRange(start=0, end=len(tokens))}, lengths, 8, 4, "cpu",
                              eot=tok.eot_token)["all"]
    assert named["nats"] == pytest.approx(rec["nats"])
    assert named["eot_share"] == pytest.approx(2 / scored)  # 2 of the predictions, each ln(257) like the rest


def test_per_source_records_add_up():
    tok = ByteTokenizer()
    lengths = ev.token_byte_lengths(tok, tok.n_vocab)
    model = tiny(vocab=257)
    tokens = np.random.default_rng(1).integers(0, 257, 60).astype(np.uint16)
    sources = {"a": SourceRange(start=0, end=23), "b": SourceRange(start=23, end=60)}
    res = ev.evaluate_split(model, tokens, sources, lengths, 8, 4, "cpu")
    a, b, total = res["sources"]["a"], res["sources"]["b"], res["all"]
    assert total["tokens"] == a["tokens"] + b["tokens"] == 22 + 36  # each source's first token is context only
    assert total["nats"] == pytest.approx(a["nats"] + b["nats"])
    assert total["loss"] == pytest.approx((a["nats"] + b["nats"]) / 58)
    # windows never cross the source boundary
    assert a["nats"] == pytest.approx(score_tokens(model, tokens[:23], 8, 4, "cpu")[0])


@pytest.mark.parametrize("bias", [True, False])
def test_head_losses_match_cross_entropy_across_chunks(bias):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=bias)
    h, y = torch.randn(23, 16), torch.randint(0, 50, (23,))
    want = F.cross_entropy(head(h), y, reduction="none")
    for chunk in (1, 7, 23, 64):  # chunk boundaries inside, at and past the rows
        assert torch.allclose(ev.head_losses(h, head.weight, head.bias, y, chunk), want, rtol=1e-5, atol=1e-6)


def reference_split_nats(model, tokens, sources, block):
    """Per source, the straightforward way: one window at a time, full logits, F.cross_entropy."""
    return {name: brute_force_nats(model, tokens[r.start:r.end].tolist(), block)[0]
            for name, r in sources.items()}


def compact_tiny(vocab=300, block=8):
    torch.manual_seed(0)
    return models.build_model({"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1}, vocab, block,
                              compact_ids=range(0, vocab, 3)).eval()


@pytest.mark.parametrize("model_type", ["transformer", "lstm", "kgram_mlp", "compact"])
def test_batched_split_scoring_matches_the_one_window_reference(model_type, monkeypatch):
    monkeypatch.setitem(ev.HEAD_CHUNK, "cpu", 5)  # several head chunks per batch, a partial one last
    vocab, block = 300, 8
    model = compact_tiny(vocab, block) if model_type == "compact" else tiny(model_type, vocab, block)
    tokens = np.random.default_rng(2).integers(0, vocab, 150).astype(np.uint16)
    sources = {"a": SourceRange(start=0, end=42), "b": SourceRange(start=42, end=43),
               "c": SourceRange(start=43, end=150)}
    lengths = np.ones(vocab, dtype=np.int64)
    want = reference_split_nats(model, tokens, sources, block)
    for batch in (1, 3, 64):
        res = ev.evaluate_split(model, tokens, sources, lengths, block, batch, "cpu")
        for name in sources:
            assert res["sources"][name]["nats"] == pytest.approx(want[name], rel=1e-5, abs=1e-6)
        assert res["all"]["tokens"] == res["tokens_in_split"] == 41 + 0 + 106 and not res["capped"]


def test_a_capped_split_scores_whole_windows_spread_over_it():
    vocab, block = 257, 8
    model = tiny(vocab=vocab, block=block)
    tokens = np.random.default_rng(3).integers(0, vocab, 130).astype(np.uint16)
    sources = {"a": SourceRange(start=0, end=50), "b": SourceRange(start=50, end=130)}
    lengths = np.arange(vocab, dtype=np.int64) % 3  # tokens of 0, 1 and 2 bytes
    per_source = [ev.source_windows(r.start, r.end, block) for r in sources.values()]
    windows, owner = ev.cap_windows(per_source, block, max_tokens=40)
    # a: windows at 0, 8, .., 48 (7, the last predicting 1 token); b: at 50, 58, .., 122 (10): 5 of 17 kept
    assert len(windows) == 5 and ev.predictions(windows) <= 40
    assert windows[0, 0] == 0 and windows[-1, 0] == 122 and set(owner) == {0, 1}
    res = ev.evaluate_split(model, tokens, sources, lengths, block, 4, "cpu", max_tokens=40)
    want_nats = sum(brute_force_nats(model, tokens[a:b].tolist(), block)[0] for a, b in windows)
    want_bytes = sum(int(lengths[tokens[a + 1:b]].sum()) for a, b in windows)
    assert res["capped"] and res["tokens_in_split"] == 49 + 79
    assert res["all"]["tokens"] == ev.predictions(windows)
    assert res["all"]["nats"] == pytest.approx(want_nats, rel=1e-5) and res["all"]["bytes"] == want_bytes
    assert res["sources"]["a"]["tokens"] + res["sources"]["b"]["tokens"] == res["all"]["tokens"]

    whole = ev.evaluate_split(model, tokens, sources, lengths, block, 4, "cpu")
    at_size = ev.evaluate_split(model, tokens, sources, lengths, block, 4, "cpu", max_tokens=128)
    assert not at_size["capped"] and at_size["all"] == whole["all"]  # a cap the split does not reach
    with pytest.raises(PicoError, match="below block_size 8"):
        ev.cap_windows(per_source, block, max_tokens=7)


# --- per-document scoring: lm-evaluation-harness's loglikelihood_rolling ----------------------------------

def harness_rolling_windows(token_list, prefix_token, max_seq_len):
    """lm_eval.utils.get_rolling_token_windows (context_len=1) + make_disjoint_window, as lm_eval 0.4.13 has
    them: [(context, continuation)] token lists, the model reading (context + continuation)[:-1]."""
    pred_len, predicted = max_seq_len, 0
    first = min(max_seq_len, len(token_list))
    pairs = [([prefix_token] + token_list[:first - 1], token_list[:first])] if token_list else []
    predicted += first
    while token_list and predicted < len(token_list):
        n = min(len(token_list) - predicted, pred_len)
        end = predicted + n
        pairs.append((token_list[end - max_seq_len - 1:end - 1], token_list[end - n:end]))
        predicted += n
    return [(a[:len(a) - (len(b) - 1)], b) for a, b in pairs]


def harness_nats(model, documents, eot, block):
    """Total nats of the documents as the harness's HF model scores them, one window at a time."""
    total = 0.0
    for doc in documents:
        for context, continuation in harness_rolling_windows(doc, eot, block):
            ids = torch.tensor((context + continuation)[-(block + 1):])
            logp = torch.log_softmax(model(ids[None, :-1])[0].float(), -1)
            total -= logp[-len(continuation):].gather(1, torch.tensor(continuation)[:, None]).sum().item()
    return total


def documents_split(lengths_per_source, eot, vocab, seed=0):
    """Token array of sources of documents (each closed by eot), its meta-style sources and the documents."""
    rng = np.random.default_rng(seed)
    tokens, sources, docs = [], {}, []
    for name, lengths in lengths_per_source.items():
        start = len(tokens)
        for n in lengths:
            doc = rng.integers(0, eot, n).tolist()
            docs.append(doc)
            tokens += doc + [eot]
        sources[name] = SourceRange(start=start, end=len(tokens))
    return np.array(tokens, dtype=np.uint16), sources, docs


@pytest.mark.parametrize("model_type", ["transformer", "lstm"])
def test_per_document_scoring_is_the_harness_rolling_loglikelihood(model_type, monkeypatch):
    """Documents shorter than, as long as, and 1, 2, 3 windows longer than block_size, over two sources (the
    first document of the split has no end-of-text before it in the array)."""
    monkeypatch.setattr(ev, "LENGTH_STEP", 4)  # several padded lengths
    vocab, block, eot = 30, 8, 29
    model = tiny(model_type, vocab, block)
    tokens, sources, docs = documents_split({"a": [1, 8, 9, 17, 3], "b": [20, 2, 16, 7]}, eot, vocab)
    lengths = np.ones(vocab, dtype=np.int64)
    lengths[eot] = 0
    for batch in (1, 3, 64):
        res = ev.evaluate_split(model, tokens, sources, lengths, block, batch, "cpu", scoring="per_document", eot=eot)
        assert res["all"]["nats"] == pytest.approx(harness_nats(model, docs, eot, block), rel=1e-5)
        assert res["sources"]["a"]["nats"] == pytest.approx(harness_nats(model, docs[:5], eot, block), rel=1e-5)
        # every document token once, no end-of-text: tokens and bytes are the documents' own
        assert res["all"]["tokens"] == res["all"]["bytes"] == res["tokens_in_split"] == sum(map(len, docs))
        assert not res["capped"]


def test_document_windows_read_at_most_block_size_tokens():
    tokens, sources, docs = documents_split({"a": [5, 8, 19]}, 29, 30)
    w = ev.document_windows(tokens, 0, len(tokens), 29, 8)
    assert w.tolist() == [[-1, 5, 0],  # from the prefix end-of-text
                          [5, 14, 6],  # an exactly-full document: one window
                          [14, 23, 15], [22, 31, 23], [25, 34, 31]]  # 8 + 8 + 3: the last reads 8 tokens
    assert ev.predictions(w) == 5 + 8 + 19 and ((w[:, 1] - w[:, 0]) <= 9).all()


def test_per_document_scoring_capped_and_uniform():
    tok = ByteTokenizer()
    lengths = ev.token_byte_lengths(tok, tok.n_vocab)
    tokens, sources, docs = documents_split({"a": [30, 4, 12], "b": [25, 9]}, tok.eot_token, tok.n_vocab)
    res = ev.evaluate_split(Uniform(), tokens, sources, lengths, 8, 4, "cpu", scoring="per_document",
                            eot=tok.eot_token)
    assert res["all"]["bpb"] == pytest.approx(math.log2(257))  # one byte per token, none for end-of-text
    capped = ev.evaluate_split(Uniform(), tokens, sources, lengths, 8, 4, "cpu", max_tokens=40,
                               scoring="per_document", eot=tok.eot_token)
    assert capped["capped"] and 32 < capped["all"]["tokens"] <= 40 and capped["tokens_in_split"] == 80


def test_split_scoring_shows_progress_on_stderr(capsys):
    tokens = np.arange(40, dtype=np.uint16) % 30
    ev.evaluate_split(tiny(), tokens, {"s": SourceRange(start=0, end=40)}, np.ones(30, np.int64), 8, 2, "cpu",
                      desc="val loss m")
    assert "val loss m" in capsys.readouterr().err


@needs_gpt2
def test_gpt2_token_bytes_sum_to_the_text_bytes():
    from picollm.data.tokenizer import get_tokenizer
    tok = get_tokenizer("gpt2")
    lengths = ev.token_byte_lengths(tok, tok.n_vocab)
    text = "Once upon a time, a naïve dog — “Spot” — ran. 🐕"
    ids = tok.encode_ordinary(text)
    assert lengths[ids].sum() == len(text.encode("utf-8"))
    assert lengths[tok.eot_token] == 0


# --- evaluate_model and the tables -------------------------------------------------------------------

def test_evaluate_model_and_tables(tmp_path):
    from picollm.data.tokens import tokenize
    from picollm.train import train
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.txt").write_text("\n".join(f"{i} {i + 1} {i + 2} {i + 3}" for i in range(300)))
    (raw / "val.txt").write_text("\n".join(f"{i} {i + 1} {i + 2}" for i in range(40)))
    tokenize("byte", {"s": {"train": str(raw / "train.txt"), "val": str(raw / "val.txt")}}, tmp_path / "tok", 1)
    meta = json.loads((tmp_path / "tok" / "meta.json").read_text())
    train_cfg = {"max_steps": 4, "batch_size": 4, "lr": 0.01, "min_lr_ratio": 0.1, "warmup_steps": 1,
                 "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.99, "grad_clip": 1.0, "eval_interval": 2,
                 "eval_batches": 2, "checkpoint_interval": 100, "log_interval": 1, "threads": 1}
    train("k", {"type": "lstm", "embed_dim": 8, "hidden_dim": 16}, train_cfg,
          tokens_dir=tmp_path / "tok", out_dir=tmp_path / "m", seed=0, block_size=16)
    samples = tmp_path / "k.jsonl"
    samples.write_text("\n".join(json.dumps(r) for r in [
        {"model": "k", "prompt": "1 2", "decoding": "greedy", "p": None, "sample": 0, "text": " 3 4",
         "new_tokens": 4, "token_ids": [32, 51, 32, 52]},
        {"model": "k", "prompt": "1 2", "decoding": 0.5, "p": 0.5, "sample": 0, "text": " 3",
         "new_tokens": 2, "token_ids": [32, 51]}]))
    sampling_cfg = {"prompts": ["1 2"], "p_values": [0.5], "max_new_tokens": 5, "num_samples": 2,
                    "stop_at_eot": True}
    out, rows = ev.evaluate_model("k", tmp_path / "m" / "model.pt", tmp_path / "tok", samples_path=samples,
                                  sampling=SamplingConfig(**sampling_cfg, sweep_p_values=[0.5, 0.3]))
    assert out["val_tokens_scored"] == out["val_tokens_in_split"] == meta["splits"]["val"]["tokens"] - 1
    assert out["val_capped"] is False and out["max_tokens"] is None and out["method"].startswith("whole split")
    assert out["perplexity"] == pytest.approx(math.exp(out["val_loss"]))
    assert out["val_bytes"] == sum(len(f"{i} {i + 1} {i + 2}") for i in range(40)) - 1  # minus the first byte
    assert out["tokens_seen"] == 4 * 4 * 16 and out["params"] > out["params_non_embedding"]
    # the denser sweep adds p=0.3 (p=0.5 is already in the samples), sorted in
    assert [(r["decoding"], r["origin"], r["samples"]) for r in rows] == [
        ("greedy", "samples", 1), ("p=0.3", "sweep", 2), ("p=0.5", "samples", 1)]
    assert all(r["mean_loglik"] < 0 for r in rows)

    capped, _ = ev.evaluate_model("k", tmp_path / "m" / "model.pt", tmp_path / "tok", max_tokens=40)
    assert capped["val_capped"] is True and capped["max_tokens"] == 40 and capped["method"].startswith("capped")
    assert 0 < capped["val_tokens_scored"] <= 40 and capped["val_tokens_in_split"] == out["val_tokens_in_split"]
    with pytest.raises(PicoError, match="null for the whole split"):
        ev.evaluate_model("k", tmp_path / "m" / "model.pt", tmp_path / "tok", max_tokens=0)

    (tmp_path / "k.json").write_text(json.dumps(out))
    pd.DataFrame(rows).to_csv(tmp_path / "k.csv", index=False)
    frame = tables.eval_table({"k": {0: tmp_path / "k.json"}}, tmp_path / "eval.csv", tmp_path / "eval.md", "exp1")
    assert list(frame["source"]) == ["all"]  # per-source rows only when there are several sources
    md = (tmp_path / "eval.md").read_text()
    assert "exp1" in md and "256 training tokens per model" in md
    sampling = tables.sampling_table({"k": {0: tmp_path / "k.csv"}}, tmp_path / "sampling.csv", "exp1")
    assert set(sampling["experiment"]) == {"exp1"} and set(sampling["train_tokens"]) == {256}


def tokens_of(trained: dict) -> TokenMeta:
    """The meta.json of tokens of the tokenizer a checkpoint records (its "tokenizer" and "vocab_size")."""
    split = {"tokens": 2, "sources": {"s": {"start": 0, "end": 2}}}
    return TokenMeta.model_validate({**trained, "dtype": "uint16", "splits": {"train": split, "val": split}})


def test_a_model_is_scored_only_on_tokens_of_its_own_tokenizer():
    byte = {"tokenizer": "byte", "vocab_size": 257}
    gpt2 = {"tokenizer": "gpt2", "vocab_size": 50257}
    ev.check_tokens_match(byte, None, tokens_of(byte), "m/model.pt", "tok")
    with pytest.raises(PicoError, match=r"^m/model.pt was trained on gpt2 tokens \(50,257 ids\), but tok holds byte "
                                        r"tokens \(257 ids\); evaluate it on the tokens it was trained on, or delete "
                                        r"it and rerun training$"):
        ev.check_tokens_match(gpt2, None, tokens_of(byte), "m/model.pt", "tok")
    with pytest.raises(PicoError, match="was trained on byte tokens"):  # it would index past its embedding
        ev.check_tokens_match(byte, None, tokens_of(gpt2), "m/model.pt", "tok")


def test_train_tokens_note():
    assert tables.train_tokens_note({"a": 1000, "b": 1000}) == "1,000 training tokens per model"
    assert tables.train_tokens_note({"a": 1000, "b": 2000, "c": 1500}) == ("1,000 to 2,000 training tokens per model "
                                                                          "(each: tables/models.csv)")


@pytest.mark.parametrize("scoring", ["windows", "per_document"])
def test_scaling_curves_convert_training_loss_with_the_windows_bytes_per_token(tmp_path, scoring):
    """Training's validation loss is on packed windows, end-of-text targets included: a uniform model's curve
    point is its windows' true bits per byte whichever way the final evaluation scored (per_document leaves
    the closing end-of-text tokens out of its own count)."""
    from picollm.scaling import run_points

    tok, vocab = ByteTokenizer(), 257
    ids = [t for doc in ["1 2 3", "4 9 16 25", "0 0"] * 20 for t in [*doc.encode(), tok.eot_token]]
    tokens, sources = np.array(ids, np.uint16), {"s": SourceRange(start=0, end=len(ids))}
    lengths = ev.token_byte_lengths(tok, vocab)
    true_bpb = math.log(vocab) * (len(ids) - 1) / (math.log(2) * int(lengths[tokens[1:]].sum()))
    scored = ev.evaluate_split(Uniform(vocab, 8), tokens, sources, lengths, 8, 4, "cpu", scoring=scoring,
                               eot=tok.eot_token)
    pd.DataFrame({"step": [0, 10], "tokens_seen": [0, 100], "train_loss": [np.nan, 5.0],
                  "val_loss": [math.log(vocab)] * 2, "lr": [0.1, 1.0]}).to_csv(tmp_path / "metrics.csv", index=False)
    (tmp_path / "eval.json").write_text(json.dumps({
        "type": "x", "params_non_embedding": 1, "flops_per_token": 1, "tokens_seen": 100, "train_flops": 100,
        "bpb": scored["all"]["bpb"], "val_bytes_per_window_token": ev.bytes_per_window_token(tokens, sources, lengths)}))
    points = run_points("r", 1, tmp_path / "metrics.csv", tmp_path / "eval.json")
    assert points.loc[points["kind"] == "curve", "bpb"].item() == pytest.approx(true_bpb, rel=1e-9)


def test_scaling_points_leave_out_warmup_as_the_run_recorded_it(tmp_path):
    """train.warmup_steps from the evaluation's config marks the points past warm-up; without a recorded
    config, the step of the highest learning rate does."""
    from picollm.scaling import run_points

    pd.DataFrame({"step": [0, 4, 8, 16], "tokens_seen": [0, 40, 80, 160], "train_loss": 3.0, "val_loss": 3.0,
                  "lr": [0.1, 0.5, 1.0, 0.2]}).to_csv(tmp_path / "metrics.csv", index=False)
    ev = {"type": "x", "params_non_embedding": 1, "flops_per_token": 1, "tokens_seen": 160, "train_flops": 160,
          "bpb": 1.0, "val_bytes_per_window_token": 1.0}
    for config, warm in [({"train": {"warmup_steps": 4}}, [True, True, True]), ({}, [False, True, True])]:
        (tmp_path / "eval.json").write_text(json.dumps({**ev, "config": config}))
        points = run_points("r", 1, tmp_path / "metrics.csv", tmp_path / "eval.json")
        assert points.loc[points["kind"] == "curve", "after_warmup"].tolist() == warm
        assert points.loc[points["kind"] == "final", "step"].item() == 16
