"""Sample measures on hand-made inputs: distinct-n, repeated 4-grams, English words, the reference of real
stories cut like samples, and a model's log-likelihood of its own samples."""
import math

import numpy as np
import pytest
import torch

from picollm import sample_metrics as sm
from picollm.config import SamplingConfig
from picollm.data.meta import SourceRange
from picollm.data.tokenizer import ByteTokenizer

from toy_models import Uniform, tiny


# --- n-gram measures on known strings ---------------------------------------------------------------

def test_distinct_n_of_a_known_string():
    w = "the cat the cat sat".split()
    assert sm.distinct_n([w], 1) == pytest.approx(3 / 5)  # the, cat, sat
    assert sm.distinct_n([w], 2) == pytest.approx(3 / 4)  # (the cat) twice, (cat the), (cat sat)
    assert sm.distinct_n([w], 3) == pytest.approx(1.0)
    assert sm.distinct_n(["a b a b".split()], 2) == pytest.approx(2 / 3)


def test_distinct_n_pools_samples_and_handles_short_ones():
    # pooled: "a b" twice is 2 bigrams, 1 unique, not the mean of per-sample values (1.0)
    assert sm.distinct_n([["a", "b"], ["a", "b"]], 2) == pytest.approx(0.5)
    assert sm.distinct_n([["a", "b"], ["x"]], 2) == pytest.approx(1.0)  # a 1-word sample adds no bigram
    assert math.isnan(sm.distinct_n([["a"], []], 2))


def test_repeated_4gram_rate():
    assert sm.repeated_ngram_rate("a b c d a b c d".split(), 4) == pytest.approx(1 / 5)  # abcd comes back once
    assert sm.repeated_ngram_rate("a b c d e f".split(), 4) == 0.0
    assert sm.repeated_ngram_rate(["x"] * 10, 4) == pytest.approx(6 / 7)  # 7 four-grams, all the same
    assert math.isnan(sm.repeated_ngram_rate("a b c".split(), 4))


def test_sampling_metrics_groups_decodings_without_a_model():
    recs = [
        {"model": "m", "prompt": "", "decoding": "greedy", "p": None, "sample": 0, "text": "a b a b a b",
         "new_tokens": 6, "token_ids": [1, 2, 1, 2, 1, 2]},
        {"model": "m", "prompt": "", "decoding": 0.9, "p": 0.9, "sample": 0, "text": "a b c", "new_tokens": 3,
         "token_ids": [1, 2, 3]},
        {"model": "m", "prompt": "", "decoding": 0.9, "p": 0.9, "sample": 1, "text": "a b d", "new_tokens": 5,
         "token_ids": [1, 2, 4, 4, 4]},
    ]
    rows = sm.sampling_metrics(recs)
    assert [r["decoding"] for r in rows] == ["greedy", "p=0.9"]
    greedy, nucleus = rows
    assert greedy["distinct_1"] == pytest.approx(2 / 6)
    assert greedy["distinct_2"] == pytest.approx(2 / 5)
    assert greedy["rep_4"] == pytest.approx(1 / 3)  # 1212, 2121, 1212
    assert math.isnan(greedy["p"]) and nucleus["p"] == 0.9
    assert nucleus["samples"] == 2 and nucleus["mean_tokens"] == 4.0 and nucleus["mean_words"] == 3.0
    assert nucleus["distinct_1"] == pytest.approx(4 / 8)  # tokens 1, 2, 3, 4 of 8
    assert nucleus["distinct_2"] == pytest.approx(4 / 6)  # (1 2) twice, (2 3), (2 4), (4 4) twice
    assert nucleus["rep_4"] == pytest.approx(0.0)  # only the 5-token sample has 4-grams: 1244, 2444
    assert nucleus["words_distinct_1"] == pytest.approx(4 / 6)  # a, b, c, d of 6 words
    assert math.isnan(nucleus["words_rep_4"]) and math.isnan(nucleus["mean_loglik"])


def test_a_loop_without_spaces_is_caught_on_tokens_not_words():
    rec = {"model": "m", "prompt": "", "decoding": "greedy", "text": "\n" * 40, "new_tokens": 40,
           "token_ids": [198] * 40}
    row = sm.sampling_metrics([rec])[0]
    assert row["distinct_1"] == pytest.approx(1 / 40) and row["rep_4"] == pytest.approx(36 / 37)
    assert row["mean_words"] == 0 and math.isnan(row["words_distinct_1"])


def test_english_word_share_of_a_hand_made_text():
    # words: the, cat, didn't, see, zzgr, qwv (digits and signs split words, case is ignored)
    assert sm.english_word_share(["The cat didn\u2019t see 42 zzgr-qwv!"]) == pytest.approx(4 / 6)
    assert sm.english_word_share(["Lily ran", "xq"]) == pytest.approx(2 / 3)  # pooled over the texts
    assert sm.WORD.findall("once upon a time, lily's dog") == ["once", "upon", "a", "time", "lily's", "dog"]
    assert math.isnan(sm.english_word_share(["0 1 1 2 3", "\n\n"]))  # no words at all


def test_english_word_share_is_not_applicable_to_a_text_that_is_not_english():
    rec = {"model": "m", "prompt": "", "decoding": "greedy", "text": "the dog ran", "new_tokens": 3,
           "token_ids": [1, 2, 3], "ended": True}
    assert sm.sampling_metrics([rec])[0]["english_word_share"] == 1.0
    row = sm.sampling_metrics([rec], english=False)[0]
    assert math.isnan(row["english_word_share"]) and row["ended_share"] == 1.0


STORIES = ["the cat sat on the mat", "a dog ran", "once upon a time a bird sang and sang", "the end"]


def byte_split(stories) -> tuple[np.ndarray, dict]:
    """A split of byte tokens, every story followed by end-of-text, as one source; and its sources."""
    ids = [t for story in stories for t in (*story.encode(), ByteTokenizer.eot_token)]
    return np.array(ids, dtype=np.uint16), {"s": SourceRange(start=0, end=len(ids))}


def test_reference_stories_are_real_stories_cut_like_samples():
    tokens, sources = byte_split(STORIES)
    starts = sm.story_starts(tokens, sources, 256)
    assert starts.tolist() == [0, 23, 33, 71]
    recs = sm.reference_records(tokens, sources, ByteTokenizer(), count=4, max_new_tokens=12, seed=1)
    assert sorted(r["text"] for r in recs) == sorted(s[:12] for s in STORIES)  # each story once, from its start
    assert [r["ended"] for r in sorted(recs, key=lambda r: r["document"])] == [False, True, False, True]
    assert all(r["new_tokens"] == len(r["token_ids"]) == len(r["text"]) <= 12 for r in recs)
    again = sm.reference_records(tokens, sources, ByteTokenizer(), count=2, max_new_tokens=12, seed=1)
    assert again == sm.reference_records(tokens, sources, ByteTokenizer(), count=2, max_new_tokens=12, seed=1)
    assert len(again) == 2 and len({r["document"] for r in again}) == 2  # distinct stories, fixed by the seed
    # 10 wanted of 4 stories: the 4, then the 4 excerpts one max_new_tokens apart inside them (at 12, 45, 57, 69)
    more = sm.reference_records(tokens, sources, ByteTokenizer(), 10, 12, seed=1)
    assert len(more) == 8 and sum(r["story_start"] for r in more) == 4


ONE_STORY = " ".join(f"the {animal} saw {i * 37 % 101} {thing}." for i, (animal, thing)
                     in enumerate(zip(["cat", "dog", "bird", "fox"] * 9, ["trees", "cars", "boats"] * 12)))


def test_a_split_of_one_story_gives_as_many_excerpts_as_samples():
    # a text without end-of-text separators is one story: excerpts from inside it fill the count
    ids = np.array(list(ONE_STORY.encode()), dtype=np.uint16)
    sources = {"s": SourceRange(start=0, end=len(ids))}
    assert sm.story_starts(ids, sources, 256).tolist() == [0]
    recs = sm.reference_records(ids, sources, ByteTokenizer(), count=6, max_new_tokens=12, seed=1)
    assert len(recs) == 6 and len({r["text"] for r in recs}) == 6  # distinct excerpts, not one story six times
    assert [r["story_start"] for r in recs] == [True] + [False] * 5 and recs[0]["text"] == ONE_STORY[:12]
    assert all(r["text"] in ONE_STORY and r["new_tokens"] == 12 and not r["ended"] for r in recs)
    starts = [start for start, _, _ in sm.reference_starts(ids, sources, 256, 6, 12, seed=1)]
    assert starts[0] == 0 and all(s % 12 == 0 for s in starts) and starts == sorted(set(starts))  # no overlap
    other = sm.reference_records(ids, sources, ByteTokenizer(), count=6, max_new_tokens=12, seed=2)
    assert {r["text"] for r in other} != {r["text"] for r in recs}  # another seed reads other excerpts
    assert recs == sm.reference_records(ids, sources, ByteTokenizer(), count=6, max_new_tokens=12, seed=1)


def test_an_excerpt_inside_a_story_is_cut_at_its_end_of_text():
    tokens, sources = byte_split(["abcdefghij"])  # one story of 10 tokens, then end-of-text
    offsets, docs = sm.inside_starts(tokens, sources, 256, 4)
    assert offsets.tolist() == [4, 8] and docs.tolist() == [0, 0]
    recs = sm.reference_records(tokens, sources, ByteTokenizer(), count=3, max_new_tokens=4, seed=0)
    assert [(r["text"], r["ended"]) for r in recs] == [("abcd", False), ("efgh", False), ("ij", True)]
    assert len(sm.reference_records(tokens, sources, ByteTokenizer(), 5, 4, seed=0)) == 3  # all the split holds


def test_reference_measures_of_hand_made_stories(tmp_path, capsys):
    from picollm.data.tokens import tokenize
    (tmp_path / "train.txt").write_text("\n".join(STORIES))
    (tmp_path / "val.txt").write_text("\n".join(STORIES))  # one story per line
    tokenize("byte", {"s": {"train": str(tmp_path / "train.txt"), "val": str(tmp_path / "val.txt")}},
             tmp_path / "tok", 1)
    sampling = SamplingConfig(prompts=["a", "b"], num_samples=2, max_new_tokens=1000)  # 4 stories: all of them
    row, = sm.reference_measures(tmp_path / "tok", sampling, seed=3)
    words = [w for story in STORIES for w in story.split()]
    assert row["decoding"] == row["model"] == "reference" and math.isnan(row["p"]) and row["samples"] == 4
    assert row["ended_share"] == 1.0 and row["mean_words"] == len(words) / 4
    assert row["mean_tokens"] == sum(map(len, STORIES)) / 4 and math.isnan(row["mean_loglik"])
    assert row["words_distinct_1"] == pytest.approx(len(set(words)) / len(words))
    assert row["english_word_share"] == 1.0
    assert math.isnan(sm.reference_measures(tmp_path / "tok", sampling, seed=3, english=False)[0]["english_word_share"])
    # 10 tokens: "a dog ran" (9) and "the end" (7) end within them, their end-of-text included
    short, = sm.reference_measures(tmp_path / "tok", sampling.model_copy(update={"max_new_tokens": 10}), seed=3)
    assert short["ended_share"] == 2 / 4 and short["mean_tokens"] == (10 + 9 + 10 + 7) / 4
    shorter, = sm.reference_measures(tmp_path / "tok", sampling.model_copy(update={"max_new_tokens": 9}), seed=3)
    assert shorter["ended_share"] == 1 / 4  # "a dog ran" fills the 9 tokens: its end-of-text would be the 10th
    assert "fewer than" not in capsys.readouterr().out
    more, = sm.reference_measures(tmp_path / "tok", sampling.model_copy(update={"num_samples": 3}), seed=3)
    assert more["samples"] == 4
    assert "note: the validation split holds 4 stories, fewer than the 6" in capsys.readouterr().out


def test_reference_measures_of_one_story_read_excerpts_inside_it(tmp_path, capsys):
    from picollm.data.tokens import tokenize
    (tmp_path / "train.txt").write_text("\n".join(STORIES))
    (tmp_path / "val.txt").write_text(ONE_STORY)
    tokenize("byte", {"s": {"train": str(tmp_path / "train.txt"), "val": str(tmp_path / "val.txt")}},
             tmp_path / "tok", 1)
    sampling = SamplingConfig(prompts=["a", "b", "c"], num_samples=2, max_new_tokens=20)
    rows = [sm.reference_measures(tmp_path / "tok", sampling, seed=seed)[0] for seed in (1, 2)]
    assert [r["samples"] for r in rows] == [6, 6]
    # one story marks no story ends: every excerpt would run its full 20 tokens and none end, by construction,
    # so those measures are left empty rather than read as the stories' own
    assert all(math.isnan(r[k]) for r in rows for k in sm.UNENDED)
    assert sm.UNENDED == ("ended_share", "mean_tokens", "mean_words") and 0 < rows[0]["english_word_share"] <= 1
    measures = [tuple(r[f"distinct_{n}"] for n in (1, 2, 3)) for r in rows]
    assert measures[0] != measures[1]  # the seeds draw other excerpts: the band over them has a width
    assert ("note: the validation split holds 1 story, fewer than the 6 of a nucleus decoding; the reference also "
            "reads excerpts from inside its stories") in capsys.readouterr().out


# --- sample log-likelihood --------------------------------------------------------------------------

def test_sample_loglik_of_a_uniform_model():
    rec = {"prompt": "ab", "token_ids": [99, 100, 101]}
    s, c = sm.sample_loglik(Uniform(), ByteTokenizer(), rec)
    assert c == 3 and s == pytest.approx(-3 * math.log(257))
    assert sm.sample_loglik(Uniform(), ByteTokenizer(), {"prompt": "", "token_ids": []}) == (0.0, 0)


def test_sample_loglik_scores_only_the_new_tokens_given_the_prompt():
    model = tiny(vocab=257, block=32)
    tok = ByteTokenizer()
    rec = {"prompt": "12", "token_ids": [51, 52, 32]}
    ids = [256, 49, 50, 51, 52, 32]
    logp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0], -1)
    want = sum(logp[t - 1, ids[t]].item() for t in range(3, 6))
    s, c = sm.sample_loglik(model, tok, rec)
    assert c == 3 and s == pytest.approx(want, rel=1e-5)


def test_sequence_logprobs_slides_a_transformer_past_block_size():
    block = 8
    model = tiny("transformer", block=block)
    ids = torch.randint(0, 30, (21,), generator=torch.Generator().manual_seed(3)).tolist()
    got = sm.sequence_logprobs(model, ids, block)
    assert got.shape == (20,)

    def logp(context, target):
        return torch.log_softmax(model(torch.tensor([context]))[0, -1], -1)[target].item()

    for t in range(1, block + 1):  # first window: everything before t
        assert got[t - 1].item() == pytest.approx(logp(ids[:t], ids[t]), abs=1e-5)
    half = block // 2
    for t in range(block + 1, 2 * block - half + 1):  # second window starts at block - half
        assert got[t - 1].item() == pytest.approx(logp(ids[block - half:t], ids[t]), abs=1e-5)
    for t in range(1, 21):  # every token keeps at least half a block of context (or all of it)
        assert got[t - 1].item() <= 0


def test_lstm_scores_a_long_sample_in_one_pass():
    model = tiny("lstm", block=4)
    ids = list(range(1, 15))
    got = sm.sequence_logprobs(model, ids, 4)
    full = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0], -1)
    assert torch.allclose(got, full[torch.arange(13), torch.tensor(ids[1:])], atol=1e-6)
