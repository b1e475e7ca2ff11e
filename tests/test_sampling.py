"""Nucleus sampling against its definition (exactly and statistically) and a library version;
generate() for every model type: greedy = argmax, seeded reproducibility, past block_size; sample records
say whether the story ended; `picollm generate` draws the sample stage's samples."""
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from picollm.config import SamplingConfig
from picollm.data.tokenizer import ByteTokenizer
from picollm.errors import PicoError
from picollm.models import build_model
from picollm.sample_metrics import sampling_metrics
from picollm.sampling import decodings, generate, nucleus_sample, sample_records, sample_seed

from conftest import ROOT, byte_tokens, picollm

MODELS = {
    "kgram_mlp": {"type": "kgram_mlp", "k": 3, "embed_dim": 8, "hidden_dim": 16},
    "lstm": {"type": "lstm", "embed_dim": 8, "hidden_dim": 16},
    "transformer_learned": {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1},
    "transformer_rope": {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1, "pos_encoding": "rope"},
}


def nucleus_reference(probs: np.ndarray, p: float) -> np.ndarray:
    """The definition, written plainly: smallest most-probable prefix with mass >= p, renormalized."""
    order = np.argsort(-probs, kind="stable")
    kept, mass = [], 0.0
    for i in order:
        kept.append(i)
        mass += probs[i]
        if mass >= p:
            break
    out = np.zeros_like(probs)
    out[kept] = probs[kept]
    return out / out.sum()


@pytest.mark.parametrize("p", [0.3, 0.7, 0.9, 1.0])
def test_nucleus_matches_the_definition_statistically(p):
    torch.manual_seed(0)
    logits = torch.randn(12) * 2
    expected = nucleus_reference(torch.softmax(logits, -1).double().numpy(), p)
    n = 40000
    draws = nucleus_sample(logits.expand(n, -1), p, torch.Generator().manual_seed(1))
    freq = np.bincount(draws.numpy(), minlength=12) / n
    assert np.all(freq[expected == 0] == 0)  # never a token outside the nucleus
    stderr = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(freq - expected) <= 5 * stderr + 1e-12)
    chi2 = n * np.sum((freq[expected > 0] - expected[expected > 0]) ** 2 / expected[expected > 0])
    dof = max(1, int((expected > 0).sum()) - 1)
    assert chi2 < dof + 6 * np.sqrt(2 * dof)


def test_kept_set_matches_transformers_top_p():
    transformers = pytest.importorskip("transformers")
    warper = transformers.TopPLogitsWarper
    torch.manual_seed(0)
    for p in (0.5, 0.8, 0.95):
        logits = torch.randn(64, 50) * 3
        lib_kept = torch.isfinite(warper(top_p=p)(None, logits.clone()))
        for row in range(64):
            probs = torch.softmax(logits[row], -1).double().numpy()
            ours = nucleus_reference(probs, p) > 0
            assert np.array_equal(ours, lib_kept[row].numpy()), (p, row)
        # and the sampler never leaves the library's kept set
        draws = nucleus_sample(logits, p, torch.Generator().manual_seed(0))
        assert lib_kept[torch.arange(64), draws].all()


def test_batched_over_leading_dims_and_small_p_is_argmax():
    logits = torch.randn(3, 5, 20)
    out = nucleus_sample(logits, 1e-6)
    assert out.shape == (3, 5) and out.dtype == torch.long and torch.equal(out, logits.argmax(-1))


def test_p_out_of_range():
    for p in (0.0, 1.5, -1):
        with pytest.raises(ValueError):
            nucleus_sample(torch.randn(5), p)


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(100, 30)
    a = nucleus_sample(logits, 0.9, torch.Generator().manual_seed(5))
    b = nucleus_sample(logits, 0.9, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_generate_greedy_is_argmax_of_full_forward(name):
    torch.manual_seed(0)
    model = build_model(MODELS[name], vocab_size=30, block_size=16).eval()
    out = generate(model, [1, 2, 3], max_new_tokens=8)
    assert out.shape == (11,) and out[:3].tolist() == [1, 2, 3]
    for t in range(3, 11):
        with torch.no_grad():
            logits = model(out[None, :t])
        assert logits[0, -1].argmax().item() == out[t].item()


@pytest.mark.parametrize("name", MODELS)
def test_only_a_transformer_cuts_a_prompt_longer_than_block_size(name):
    """The k-gram MLP and the LSTM carry a state over any length: they read the whole prompt (a block at a time,
    so that a long prompt holds one block's logits), and continue it as their forward pass over all of it does;
    a Transformer reads its last block_size tokens."""
    torch.manual_seed(0)
    model = build_model(MODELS[name], vocab_size=30, block_size=8).eval()
    prompt = torch.randint(0, 30, (20,)).tolist()
    read, step = [], model.forward_step
    model.forward_step = lambda x, state: (read.append(x.size(1)), step(x, state))[1]
    out = generate(model, prompt, max_new_tokens=4)
    if model.context_limited:
        assert read[0] == 8  # the last block_size tokens
    else:
        assert read[:3] == [8, 8, 4]  # all 20, a block at a time
    if not model.context_limited:
        for t in range(20, 24):
            with torch.no_grad():
                logits = model(out[None, :t])
            assert logits[0, -1].argmax().item() == out[t].item()


@pytest.mark.parametrize("name", MODELS)
def test_generate_past_block_size_and_long_prompts(name):
    torch.manual_seed(0)
    model = build_model(MODELS[name], vocab_size=30, block_size=8)
    out = generate(model, list(range(20)), max_new_tokens=40, p=0.9, seed=3)  # prompt > block, output >> block
    assert out.shape == (60,)
    assert torch.equal(out, generate(model, list(range(20)), max_new_tokens=40, p=0.9, seed=3))
    batched = generate(model, torch.zeros(3, 4, dtype=torch.long), max_new_tokens=20)
    assert batched.shape == (3, 24)


def test_generate_stops_at_stop_token_and_rejects_empty_prompts():
    model = build_model(MODELS["lstm"], vocab_size=30, block_size=8)
    with torch.no_grad():
        model.head.bias.fill_(0)
        model.head.bias[7] = 100.0  # the model always says 7
    out = generate(model, [1], max_new_tokens=10, stop_token=7)
    assert out.tolist() == [1, 7]
    with pytest.raises(PicoError, match="tokenizes to nothing"):
        generate(model, [], max_new_tokens=3)


def test_sample_seeds_and_decodings():
    assert sample_seed(1, "m", "prompt", 0.9, 0) == sample_seed(1, "m", "prompt", 0.9, 0)
    assert sample_seed(1, "m", "prompt", 0.9, 0) != sample_seed(1, "m", "prompt", 0.9, 1)
    assert decodings([0.8, 1]) == ["greedy", 0.8, 1.0]


def saying(token: int, vocab_size: int = 257, also: int | None = None):
    """An LSTM over byte ids whose next token is always `token` (or, with `also`, one of the two, equally)."""
    model = build_model(MODELS["lstm"], vocab_size=vocab_size, block_size=8)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-100.0)
        model.head.bias[token] = 100.0
        if also is not None:
            model.head.bias[also] = 100.0
    return model


@pytest.mark.parametrize("stop_at_eot", [True, False])
def test_records_say_whether_the_story_ended_and_the_share_is_measured(stop_at_eot):
    tokenizer = ByteTokenizer()
    cfg = SamplingConfig(prompts=["Once", ""], p_values=[1.0], max_new_tokens=6, num_samples=3,
                         stop_at_eot=stop_at_eot)
    ends = sample_records(saying(tokenizer.eot_token), tokenizer, "ends", cfg, seed=0)
    goes_on = sample_records(saying(ord("a")), tokenizer, "goes_on", cfg, seed=0)
    assert all(r["ended"] and r["text"] == "" and r["new_tokens"] == 0 for r in ends)
    assert not any(r["ended"] for r in goes_on) and {r["text"] for r in goes_on} == {"aaaaaa"}
    assert [row["ended_share"] for row in sampling_metrics(ends + goes_on)] == [0.5, 0.5]  # greedy, p=1
    # a coin between 'a' and end-of-text: a sample ends within 6 tokens unless it draws 'a' six times
    coin = sample_records(saying(ord("a"), also=tokenizer.eot_token), tokenizer, "coin", cfg.model_copy(
        update={"num_samples": 200, "prompts": [""]}), seed=0)
    nucleus = [r for r in coin if r["decoding"] == 1.0]
    assert all(r["ended"] == (r["new_tokens"] < 6) for r in nucleus)
    assert sampling_metrics(nucleus)[0]["ended_share"] == pytest.approx(1 - 0.5 ** 6, abs=0.05)
    # records without `ended`: no share rather than a made-up one
    assert np.isnan(sampling_metrics([{k: v for k, v in r.items() if k != "ended"} for r in ends])[0]["ended_share"])


@pytest.mark.parametrize("scale", [4.0, 0.3])  # peaked: the nucleus is within the first 64; flat: k must grow
def test_nucleus_over_a_large_vocabulary_stays_in_transformers_kept_set(scale):
    transformers = pytest.importorskip("transformers")
    logits = torch.randn(32, 3000, generator=torch.Generator().manual_seed(0)) * scale
    for p in (0.5, 0.9, 0.99):
        lib_kept = torch.isfinite(transformers.TopPLogitsWarper(top_p=p)(None, logits.clone()))
        for seed in range(5):
            draws = nucleus_sample(logits, p, torch.Generator().manual_seed(seed))
            assert lib_kept[torch.arange(32), draws].all()
    assert torch.equal(nucleus_sample(logits, 1e-6), logits.argmax(-1))


@pytest.mark.parametrize("name", MODELS)
def test_a_batch_with_a_seed_per_row_draws_what_each_row_draws_alone(name):
    torch.manual_seed(0)
    model = build_model(MODELS[name], vocab_size=30, block_size=8)
    seeds = [11, 12, 13]
    batch = generate(model, [[1, 2, 3]] * 3, max_new_tokens=12, p=0.9, seed=seeds)
    for row, seed in zip(batch, seeds):
        assert torch.equal(row, generate(model, [1, 2, 3], max_new_tokens=12, p=0.9, seed=seed))
    assert not torch.equal(batch[0], batch[1])


# --- picollm generate: the sample stage's draws, for prompts of one's own --------------------------------

def trained_and_sampled(root) -> tuple:
    """A model trained by `picollm train` (seed 5) and its samples from `picollm sample`, as the workflow runs
    them: (model.pt, the sample stage's records)."""
    tokens = byte_tokens(root)
    train = {"max_steps": 4, "batch_size": 4, "warmup_steps": 1, "eval_interval": 2, "eval_batches": 1}
    proc = picollm("train", "--config", json.dumps({"models": {"m": MODELS["lstm"]}, "train": train, "seed": 5,
                                                     "block_size": 16}),
                   "--tokens-dir", tokens, "--out-dir", root / "m")
    assert proc.returncode == 0, proc.stderr
    sampling = {"prompts": ["1 2 3", ""], "p_values": [0.7], "num_samples": 2, "max_new_tokens": 9}
    proc = picollm("sample", "--config", json.dumps({"sampling": sampling, "seed": 5}), "--name", "m",
                   "--model-path", root / "m" / "model.pt", "--out", root / "samples.jsonl")
    assert proc.returncode == 0, proc.stderr
    return root / "m" / "model.pt", [json.loads(line) for line in (root / "samples.jsonl").read_text().splitlines()]


def test_generate_draws_the_sample_stages_samples(tmp_path):
    model, records = trained_and_sampled(tmp_path)
    table = {(r["prompt"], r["decoding"], r["sample"]): {k: v for k, v in r.items() if k != "train_tokens"}
             for r in records}
    for args, decoding in ((["--p", "0.7", "--num-samples", "2"], 0.7), ([], "greedy")):
        proc = picollm("generate", model, "1 2 3", "", "--max-new-tokens", "9", "--jsonl", *args)
        assert proc.returncode == 0, proc.stderr
        drawn = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(drawn) == (2 if decoding == 0.7 else 1) * 2
        assert all(r == table[(r["prompt"], decoding, r["sample"])] for r in drawn)
    text = picollm("generate", model, "1 2 3", "--p", "0.7", "--max-new-tokens", "9").stdout.splitlines()
    first = table[("1 2 3", 0.7, 0)]
    assert text == [f"--- m, p=0.7, sample 0, seed {first['seed']}",
                    "1 2 3" + first["text"] + (" [end of story]" if first["ended"] else
                                               f" [cut at {first['new_tokens']} new tokens]")]
    other = picollm("generate", model, "1 2 3", "--p", "0.7", "--seed", "6", "--jsonl").stdout
    assert json.loads(other)["seed"] != first["seed"]
    # without --max-new-tokens, the study's (its provenance/study.json beside models/<run>/seed<k>/), as sampled
    study = tmp_path / "results" / "exp"
    (study / "models" / "m" / "seed5").mkdir(parents=True)
    (study / "provenance").mkdir()
    (study / "provenance" / "study.json").write_text(json.dumps({"sampling": {"max_new_tokens": 9}}))
    placed = study / "models" / "m" / "seed5" / "model.pt"
    shutil.copy(model, placed)
    assert json.loads(picollm("generate", placed, "1 2 3", "--p", "0.7", "--jsonl").stdout) == first
    outside = json.loads(picollm("generate", model, "1 2 3", "--no-stop", "--jsonl").stdout)  # no study: the schema's
    assert outside["new_tokens"] == SamplingConfig.model_fields["max_new_tokens"].default
    # prompts may follow the options too
    after = picollm("generate", model, "--p", "0.7", "--num-samples", "2", "--max-new-tokens", "9", "--jsonl", "1 2 3")
    assert [json.loads(line) for line in after.stdout.splitlines()] == [table[("1 2 3", 0.7, s)] for s in (0, 1)]
    bogus = picollm("generate", model, "1", "--bogus").stderr
    assert "picollm generate: error: unrecognized arguments: --bogus" in bogus and "model_path" in bogus  # its usage
    swapped = picollm("generate", "1 2 3", model).stderr.strip()
    assert swapped == f"error: the model comes first, then the prompts: picollm generate {shlex.quote(str(model))} " \
                      f"'1 2 3'", swapped
    # output piped into a reader that stops early (| head -1): no traceback
    command = (f"{sys.executable} -m picollm generate {shlex.quote(str(model))} '1 2' --p 0.7 --num-samples 3000 "
               f"--max-new-tokens 2")
    piped = subprocess.run(f"{command} | head -1", shell=True, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert piped.stdout.startswith("--- m, p=0.7, sample 0") and "Traceback" not in piped.stderr, piped.stderr
    # an LSTM reads a prompt of any length (only a Transformer's context stops at block_size, noted on
    # stderr: tests/test_faults.py): no note
    long = picollm("generate", model, "1 " * 20, "--max-new-tokens", "2", "--jsonl")
    assert json.loads(long.stdout)["prompt"] == "1 " * 20 and long.stderr == ""


@pytest.mark.parametrize("args, line", [
    (["--p", "1.5"], "error: --p 1.5 is no nucleus probability; give one in (0, 1], e.g. --p 0.9 (leave it out for "
                     "greedy decoding)"),
    (["--num-samples", "3"], "error: --num-samples 3 without --p: greedy decoding gives one continuation; add --p "
                             "(e.g. --p 0.9) to draw 3 samples"),
    (["--max-new-tokens", "0"], "error: --max-new-tokens 0 is not a positive count; give 1 or more"),
])
def test_generate_refuses_bad_arguments_in_one_line(tmp_path, args, line):
    proc = picollm("generate", tmp_path / "model.pt", "Once", *args)
    assert proc.returncode == 1 and proc.stderr.strip() == line and not proc.stdout


@pytest.mark.parametrize("threads", ["0", "-1", "two"])
def test_a_thread_count_below_one_is_refused_not_read_as_one(tmp_path, threads):
    proc = picollm("generate", tmp_path / "model.pt", "Once", "--threads", threads)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f"picollm generate: error: argument --threads: '{threads}' is not a whole number of at least 1")


def test_generate_names_a_missing_model(tmp_path):
    proc = picollm("generate", tmp_path / "model.pt", "Once")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr == (f"error: checkpoint {tmp_path / 'model.pt'} does not exist; give the path of a model.pt "
                           "(results/<experiment>/models/<run>/seed<k>/model.pt)\n")
    built = "results/x/models/lstm/seed1/model.pt"  # a workflow output not built yet: how to build it
    assert picollm("generate", built, "Once").stderr == (f"error: checkpoint {built} does not exist; train the model "
                                                         f"first (snakemake --cores N {built} --configfile STUDY.yaml)\n")
