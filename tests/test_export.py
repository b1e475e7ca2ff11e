"""Export to a Hugging Face folder: transformers alone loads it, gives pico-llm's logits and greedy tokens,
and the tokenizer gives pico-llm's ids; models with no exact counterpart are refused in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import TINYSTORIES_VALID, needs_gpt2, needs_tinystories, picollm
from picollm.data.tokenizer import get_tokenizer
from picollm.errors import PicoError
from picollm.export import export_model, hf_tokenizer
from picollm.io import sha256_file
from picollm.models import build_model, checkpoint_dict, load_model
from picollm.sampling import generate

transformers = pytest.importorskip("transformers")

BLOCK = 40
ROPE = {"type": "transformer", "d_model": 32, "n_heads": 4, "n_layers": 2, "mlp_hidden": None, "mlp": "swiglu",
        "pos_encoding": "rope", "dropout": 0.0, "tie_weights": True, "rope_base": 10000.0}
TEXTS = ["Once upon a time, there was a little dog named Max.", "", " leading space", "It's 12:30 -- isn't it?",
         "héllo wörld ✓ 日本語 🐶", "tabs\tand\n\nnew lines   and  runs of spaces ", "The end.\n"]


def save_checkpoint(path, cfg, tokenizer="byte", vocab_size=257, seed=0, compact_ids=None, **extra):
    """A tiny untrained model with weights spread wide enough that greedy decoding does not just repeat."""
    torch.manual_seed(seed)
    model = build_model(cfg, vocab_size, BLOCK, compact_ids)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name else 0.15 * torch.randn_like(p))
    torch.save(checkpoint_dict(model, cfg, vocab_size, BLOCK, tokenizer=tokenizer, **extra), path)
    return path


def load_hf(folder):
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def max_logit_diff(model, hf_model, seed=1) -> float:
    ids = torch.randint(0, model.vocab_size, (3, BLOCK), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (model(ids) - hf_model(ids).logits).abs().max().item()


def greedy_pairs(model, hf_model, tok, prompts, new_tokens=12):
    """(pico-llm's, transformers') greedy continuations, prompt + new tokens within block_size (beyond it
    pico-llm slides its window while transformers runs on past the trained positions)."""
    eot = tok.eot_token
    for prompt in prompts:
        ids = [eot, *tok.encode_ordinary(prompt)]
        assert len(ids) + new_tokens <= BLOCK
        ours = generate(model, ids, new_tokens, stop_token=eot).tolist()
        theirs = hf_model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False)[0].tolist()
        yield ours, theirs


@pytest.mark.parametrize("tokenizer", ["byte", pytest.param("gpt2", marks=needs_gpt2)])
def test_rope_swiglu_transformer_becomes_llama(tmp_path, tokenizer):
    tok = get_tokenizer(tokenizer)
    ckpt = save_checkpoint(tmp_path / "model.pt", ROPE, tokenizer, tok.n_vocab,
                           provenance=json.dumps({"stage": "train", "seed": 5}))
    summary = export_model(ckpt, tmp_path / "hf")

    assert summary["architecture"] == "LlamaForCausalLM" and summary["max_logit_diff"] < 1e-4
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "picollm_provenance.json"} <= set(summary["files"]) == set(os.listdir(tmp_path / "hf"))
    # the folder names its source: the checkpoint's sha256, this export's code, and the training's own record
    record = json.loads((tmp_path / "hf" / "picollm_provenance.json").read_text())
    assert record["stage"] == "export" and record["inputs"] == {str(ckpt): sha256_file(ckpt)}
    assert record["max_logit_diff"] == summary["max_logit_diff"] and record["training"]["stage"] == "train"
    assert record["seed"] == 5 and record["config"] == {"model": ROPE}  # the model it converts, and its seed
    assert record["outputs"] == [str(tmp_path / "hf")]
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "llama" and "auto_map" not in config  # no custom code to trust
    model, hf_model = load_model(ckpt), load_hf(tmp_path / "hf")
    assert type(hf_model).__name__ == "LlamaForCausalLM"
    assert max_logit_diff(model, hf_model) < 1e-4
    pairs = list(greedy_pairs(model, hf_model, tok, ["Once upon a time", "", "The dog"]))
    assert all(ours == theirs for ours, theirs in pairs), pairs
    assert len({tuple(o) for o, _ in pairs}) == len(pairs)  # the prompts lead somewhere different


def test_silu_mlp_becomes_arcee(tmp_path):
    """Arcee is Llama with a non-gated MLP: pico-llm's plain SiLU MLP exactly (and an untied head, rope_base)."""
    cfg = {**ROPE, "mlp": "silu", "mlp_hidden": 48, "tie_weights": False, "rope_base": 500.0}
    ckpt = save_checkpoint(tmp_path / "model.pt", cfg)
    summary = export_model(ckpt, tmp_path / "hf")
    model, hf_model = load_model(ckpt), load_hf(tmp_path / "hf")
    assert summary["architecture"] == type(hf_model).__name__ == "ArceeForCausalLM"
    assert hf_model.config.rope_parameters["rope_theta"] == 500.0 and hf_model.config.intermediate_size == 48
    assert max_logit_diff(model, hf_model) < 1e-4
    pairs = list(greedy_pairs(model, hf_model, get_tokenizer("byte"), ["Once upon a time", "Lily"]))
    assert all(ours == theirs for ours, theirs in pairs), pairs


@pytest.mark.parametrize("tokenizer, tie", [("byte", True), ("byte", False), pytest.param("gpt2", True, marks=needs_gpt2)])
def test_compact_vocabulary_exports_as_a_full_vocabulary_llama(tmp_path, tokenizer, tie):
    """The unseen ids' shared row, written once per unseen id: the same logits over the whole vocabulary (the
    unseen ids' included), the same greedy tokens, and a tied head stays tied."""
    tok = get_tokenizer(tokenizer)
    kept = sorted(set(tok.encode_ordinary("Once upon a time there was a little dog. Lily wanted to play.")))
    ckpt = save_checkpoint(tmp_path / "model.pt", {**ROPE, "tie_weights": tie}, tokenizer, tok.n_vocab,
                           compact_ids=[*kept, tok.eot_token])
    summary = export_model(ckpt, tmp_path / "hf")
    model, hf_model = load_model(ckpt), load_hf(tmp_path / "hf")
    assert summary["vocab_size"] == hf_model.config.vocab_size == tok.n_vocab
    assert hf_model.config.tie_word_embeddings is tie and summary["max_logit_diff"] < 1e-4
    assert max_logit_diff(model, hf_model) < 1e-4
    unseen = [i for i in range(tok.n_vocab) if i not in kept and i != tok.eot_token][:50]
    ids = torch.tensor([[tok.eot_token, *unseen[:10], *kept[:5]]])
    with torch.no_grad():
        assert torch.allclose(model(ids), hf_model(ids).logits, atol=1e-4)
    # every unseen id is the one shared row (logit and embedding alike), so an unseen id is the same greedy pick
    # whichever of them an argmax over tied logits returns: the exported matmul may rank the ties otherwise
    known = {*kept, tok.eot_token}
    same = [[i if i in known else "unseen" for i in seq] for pair in
            greedy_pairs(model, hf_model, tok, ["Once upon a time", "Lily"]) for seq in pair]
    assert same[0::2] == same[1::2], same


GPT2_NET = {**ROPE, "pos_encoding": "learned", "norm": "layernorm", "bias": True, "mlp": "gelu"}


@pytest.mark.parametrize("cfg", [GPT2_NET, {**GPT2_NET, "bias": False, "mlp": "silu", "tie_weights": False}],
                         ids=["gpt2", "bias-free-silu-untied"])
def test_learned_positions_and_layernorm_become_gpt2(tmp_path, cfg):
    """norm: layernorm + learned positions is GPT-2's network: GPT2LMHeadModel gives the same logits and greedy
    tokens (a bias-free network exports with zero biases)."""
    ckpt = save_checkpoint(tmp_path / "model.pt", cfg)
    summary = export_model(ckpt, tmp_path / "hf")
    model, hf_model = load_model(ckpt), load_hf(tmp_path / "hf")
    assert summary["architecture"] == type(hf_model).__name__ == "GPT2LMHeadModel"
    assert hf_model.config.tie_word_embeddings is cfg["tie_weights"]
    assert max_logit_diff(model, hf_model) < 1e-4
    pairs = list(greedy_pairs(model, hf_model, get_tokenizer("byte"), ["Once upon a time", "Lily"]))
    assert all(ours == theirs for ours, theirs in pairs), pairs


def test_biased_gelu_rope_transformer_becomes_arcee_with_biases(tmp_path):
    ckpt = save_checkpoint(tmp_path / "model.pt", {**ROPE, "mlp": "gelu", "bias": True})
    summary = export_model(ckpt, tmp_path / "hf")
    model, hf_model = load_model(ckpt), load_hf(tmp_path / "hf")
    assert summary["architecture"] == "ArceeForCausalLM" and hf_model.config.attention_bias
    assert max_logit_diff(model, hf_model) < 1e-4


def test_tied_embeddings_stay_tied(tmp_path):
    from safetensors import safe_open
    for tie in (True, False):
        folder = tmp_path / f"hf-{tie}"
        export_model(save_checkpoint(tmp_path / f"model-{tie}.pt", {**ROPE, "tie_weights": tie}), folder)
        hf_model = load_hf(folder)
        shared = hf_model.lm_head.weight.data_ptr() == hf_model.model.embed_tokens.weight.data_ptr()
        with safe_open(folder / "model.safetensors", "pt") as f:
            stored = set(f.keys())
        assert hf_model.config.tie_word_embeddings is tie and shared is tie
        assert ("lm_head.weight" in stored) is not tie  # one copy of the table on disk when tied


@pytest.mark.parametrize("tokenizer", ["byte", pytest.param("gpt2", marks=needs_gpt2)])
def test_tokenizer_gives_pico_ids_without_pico_code(tmp_path, tokenizer):
    tok = get_tokenizer(tokenizer)
    export_model(save_checkpoint(tmp_path / "model.pt", ROPE, tokenizer, tok.n_vocab), tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in TEXTS:
        ids = tok.encode_ordinary(text)
        assert hf_tok.encode(text, add_special_tokens=False) == ids, text
        assert hf_tok.decode(ids) == text == tok.decode(ids)
    assert hf_tok.eos_token_id == tok.eot_token == hf_tok.convert_tokens_to_ids("<|endoftext|>")
    assert hf_tok.decode([*tok.encode_ordinary("Hi"), tok.eot_token], skip_special_tokens=True) == "Hi"


def test_trained_bpe_exports_as_itself_from_the_checkpoint(tmp_path):
    """tokenizer: bpe:N: the folder's tokenizer is the trained one, taken from model.pt (no tokenizer.json)."""
    from picollm.data.bpe import train_bpe
    from picollm.data.sources import write_documents
    write_documents(tmp_path / "train.txt", [t for t in TEXTS if t] * 20 + ["The cat and the dog played."] * 50)
    tok = get_tokenizer("bpe:300", train_bpe([tmp_path / "train.txt"], 300))
    ckpt = save_checkpoint(tmp_path / "model.pt", ROPE, "bpe:300", tok.n_vocab, tokenizer_json=tok.json)
    summary = export_model(ckpt, tmp_path / "hf")
    assert summary["tokenizer"] == "bpe:300" and summary["max_logit_diff"] < 1e-4
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in TEXTS:
        ids = tok.encode_ordinary(text)
        assert hf_tok.encode(text, add_special_tokens=False) == ids, text
        assert hf_tok.decode(ids) == text == tok.decode(ids)
    assert hf_tok.eos_token_id == tok.eot_token == load_hf(tmp_path / "hf").config.eos_token_id


@needs_gpt2
@needs_tinystories
def test_gpt2_tokenizer_matches_tiktoken_on_tinystories():
    """The merges rebuilt from tiktoken's ranks give tiktoken's ids on real stories, not just a few strings."""
    enc, hf_tok = get_tokenizer("gpt2"), hf_tokenizer("gpt2", 50257, 128)
    stories = TINYSTORIES_VALID.read_text(encoding="utf-8").split("<|endoftext|>")[:300]
    assert all(hf_tok.encode(story, add_special_tokens=False) == enc.encode_ordinary(story) for story in stories)


def test_folder_generates_in_a_process_without_picollm(tmp_path):
    """Greedy text from transformers alone (picollm cannot even be imported there) is pico-llm's text."""
    tok = get_tokenizer("byte")
    ckpt = save_checkpoint(tmp_path / "model.pt", ROPE, seed=3)
    export_model(ckpt, tmp_path / "hf")
    script = (
        "import sys; sys.modules['picollm'] = None\n"  # any import of picollm now fails
        "import torch, transformers\n"
        "tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "ids = tok('Once upon a time', return_tensors='pt').input_ids\n"  # end-of-text first, as pico-llm prompts
        "out = model.generate(ids, max_new_tokens=7, do_sample=False)\n"
        "print(repr(tok.decode(out[0, ids.size(1):], skip_special_tokens=True)))\n"
        "pipe = transformers.pipeline('text-generation', model=model, tokenizer=tok)\n"
        "print(repr(pipe('Once upon a time', max_new_tokens=7, do_sample=False, return_full_text=False)"
        "[0]['generated_text']))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "hf")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    prompt = [tok.eot_token, *tok.encode_ordinary("Once upon a time")]
    new = generate(load_model(ckpt), prompt, 7, stop_token=tok.eot_token)[len(prompt):].tolist()
    expected = tok.decode(new[:new.index(tok.eot_token)] if tok.eot_token in new else new)
    generated, piped = proc.stdout.strip().splitlines()[-2:]
    assert generated == repr(expected)
    assert piped == repr(expected)  # the pipeline as users call it: end-of-text added as BOS, same text


def test_export_is_readable_by_others(tmp_path):
    """Every file of the folder gets the user's usual mode (safetensors alone writes 0600 files)."""
    old = os.umask(0o022)
    try:
        export_model(save_checkpoint(tmp_path / "model.pt", ROPE), tmp_path / "hf")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "hf").iterdir()}
    assert set(modes.values()) == {0o644}, modes
    assert (tmp_path / "hf").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("cfg, compact, needle", [
    ({**ROPE, "pos_encoding": "learned"}, False, "pos_encoding: rope"),
    ({**ROPE, "norm": "layernorm"}, False, "norm: rmsnorm"),
    ({**GPT2_NET, "mlp": "swiglu"}, False, "mlp: gelu"),
    ({"type": "lstm", "embed_dim": 16, "hidden_dim": 32, "num_layers": 1, "dropout": 0.0}, False, "'lstm'"),
    ({"type": "kgram_mlp", "k": 3, "embed_dim": 16, "hidden_dim": 32, "num_inner_layers": 1, "input": "embedding"},
     False, "'kgram_mlp'"),
], ids=["learned-rmsnorm", "rope-layernorm", "learned-swiglu", "lstm", "kgram"])
def test_unexportable_models_are_refused_in_one_line(tmp_path, cfg, compact, needle):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier export")
    ckpt = save_checkpoint(tmp_path / "model.pt", cfg, compact_ids=list(range(0, 200)) if compact else None)
    with pytest.raises(PicoError) as err:
        export_model(ckpt, out)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg, msg
    assert any(fix in msg for fix in ("pos_encoding: rope", "norm: rmsnorm"))  # the fix
    assert sorted(os.listdir(tmp_path)) == ["hf", "model.pt"] and os.listdir(out) == ["keep.txt"]  # nothing touched


def test_export_replaces_an_old_folder_atomically(tmp_path):
    ckpt = save_checkpoint(tmp_path / "model.pt", ROPE)
    out = tmp_path / "hf"
    out.mkdir()
    (out / "stale.bin").write_bytes(b"old weights")
    summary = export_model(ckpt, out)
    assert "stale.bin" not in os.listdir(out) and set(summary["files"]) == set(os.listdir(out))
    assert sorted(os.listdir(tmp_path)) == ["hf", "model.pt"]  # no temporary folder left beside it
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in os.listdir(out))  # safetensors only
    load_model(ckpt)  # model.pt keeps working


def test_a_failed_replace_puts_the_old_folder_back(tmp_path, monkeypatch):
    from picollm import export
    old, new = tmp_path / "hf", tmp_path / ".hf.tmp"
    old.mkdir()
    (old / "config.json").write_text("old")
    new.mkdir()
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == 2:  # the new folder onto the old one's place
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        export._replace_dir(new, old)
    assert (old / "config.json").read_text() == "old" and sorted(os.listdir(tmp_path)) == [".hf.tmp", "hf"]


def test_export_refuses_a_folder_that_holds_other_work(tmp_path):
    """An export replaces its folder whole: a results folder, a checkout or the working directory is refused in one
    line and left as it was; the command says so on the terminal, with no traceback."""
    (tmp_path / "results" / "models").mkdir(parents=True)
    ckpt = save_checkpoint(tmp_path / "results" / "model.pt", ROPE)
    before = sorted(p.name for p in (tmp_path / "results").iterdir())
    with pytest.raises(PicoError, match=r"results exists and is no Hugging Face export \(it holds model.pt, "
                                        r"models/\).*give a new or empty folder"):
        export_model(ckpt, tmp_path / "results")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == before
    result = picollm("export", ckpt, ".", cwd=tmp_path / "results")
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'results'} exists and is no Hugging Face export (it holds model.pt, models/), and an "
        "export replaces its folder whole; give a new or empty folder (e.g. a new folder under "
        "results/<experiment>/hf/)"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == before


def test_export_replaces_the_folder_snakemake_built(tmp_path):
    """rule export's folder holds Snakemake's .snakemake_timestamp beside the export: exporting into it by hand
    (another checkpoint, another seed's) replaces it as it would an earlier export."""
    ckpt = save_checkpoint(tmp_path / "model.pt", ROPE)
    out = tmp_path / "hf" / "transformer" / "seed1"
    export_model(ckpt, out)
    (out / ".snakemake_timestamp").touch()
    export_model(ckpt, out)
    assert (out / "config.json").is_file()
