"""Export a trained Transformer to a Hugging Face folder that `transformers` loads with no pico-llm code.

A pico-llm Transformer with rotary positions and RMSNorm is a Llama: pre-norm blocks, rotate-half RoPE,
linears with or without biases. Its SwiGLU MLP is Llama's gate/up/down MLP; its plain SiLU or GELU MLP is
Arcee's up/down MLP (Arcee is Llama with a non-gated MLP). One with learned positions and LayerNorm is a
GPT-2 (GPT2LMHeadModel; a network without biases gets zero ones). Other combinations (learned positions with
RMSNorm, rotary positions with LayerNorm, a gated MLP with learned positions) have no counterpart in
`transformers`, so those models (and the LSTM and k-gram models) are refused. A compact-vocabulary model is
written at the full vocabulary, its unseen ids' shared row once per id (picollm.models.compact). The folder
holds config.json, model.safetensors, generation_config.json and the study's tokenizer (tokenizer.json and
tokenizer_config.json); the export loads it back and checks its logits against pico-llm's before the folder
appears.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from picollm import provenance
from picollm.data.bpe import byte_chars
from picollm.data.sources import EOT_TEXT
from picollm.errors import PicoError
from picollm.hf_form import unexportable
from picollm.io import write_json
from picollm.models import load_model
from picollm.models.compact import CompactVocab

MAX_LOGIT_DIFF = 1e-4  # relative to the largest logit (or 1): float32 noise of different kernels is ~1e-6


PROVENANCE = "picollm_provenance.json"


def export_model(model_path, out_dir) -> dict:
    """Write `out_dir` (atomically) from the checkpoint `model_path`; return a summary of what was written."""
    out_dir = Path(out_dir).resolve()  # "." has no name to put a temporary folder beside
    model = load_model(model_path)
    ckpt = model.checkpoint
    _refuse_unexportable(ckpt)
    check_out_dir(out_dir)
    # a compact vocabulary's unseen ids share one row: written out once per id, it is a plain model
    network = model.expanded() if isinstance(model, CompactVocab) else model
    config = hf_config(network, ckpt)
    tokenizer = hf_tokenizer(ckpt.get("tokenizer", "gpt2"), ckpt["vocab_size"], model.block_size,
                             ckpt.get("tokenizer_json"))
    hf_model = _hf_model(config, hf_state_dict(network))

    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        hf_model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        diff = check_logits(model, tmp)  # measured on the folder as written, loaded the way users load it
        # where the folder came from: this export (the model it converts and its training's seed, model.pt's
        # sha256, code, versions) and the training's own record
        training = provenance.of_checkpoint(ckpt)
        export = provenance.record("export", config={"model": ckpt["model_cfg"]}, seed=training.get("seed"),
                                   inputs=[model_path], outputs=[out_dir], max_logit_diff=diff)
        write_json(tmp / PROVENANCE, {**export, "training": training})
        _readable_by_all(tmp)
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"architecture": config.architectures[0], "files": sorted(p.name for p in out_dir.iterdir()),
            "max_logit_diff": diff, "tokenizer": ckpt.get("tokenizer", "gpt2"), "vocab_size": config.vocab_size,
            "tied_embeddings": config.tie_word_embeddings}


# --- the model ---------------------------------------------------------------------------------------------

def _refuse_unexportable(ckpt) -> None:
    """One line naming why a model has no exact `transformers` form and what to train instead."""
    reason = unexportable(ckpt["model_cfg"])
    if reason:
        raise PicoError(reason)


def hf_config(model, ckpt):
    """The `transformers` config of the same network: GPT-2 for learned positions, else Llama for a SwiGLU MLP
    and Arcee for a SiLU or GELU one (export_model has refused every other network)."""
    from transformers import ArceeConfig, GPT2Config, LlamaConfig

    block = model.blocks[0]
    d_model, n_heads = model.tok_emb.embedding_dim, block.attn.n_heads
    eot = eot_id(ckpt.get("tokenizer", "gpt2"), ckpt.get("tokenizer_json"))
    act = {"silu": "silu", "gelu": "gelu_pytorch_tanh", "swiglu": "silu"}[block.mlp.kind]
    common = dict(vocab_size=model.vocab_size, tie_word_embeddings=model.head.weight is model.tok_emb.weight,
                  bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, dtype="float32")
    if model.pos_emb is not None:
        return GPT2Config(n_positions=model.block_size, n_embd=d_model, n_layer=len(model.blocks), n_head=n_heads,
                          n_inner=block.mlp.proj.in_features, activation_function=act,
                          layer_norm_epsilon=block.attn_norm.eps, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          architectures=["GPT2LMHeadModel"], **common)
    cls, arch = (LlamaConfig, "LlamaForCausalLM") if block.mlp.gated else (ArceeConfig, "ArceeForCausalLM")
    bias = block.attn.qkv.bias is not None
    return cls(
        hidden_size=d_model, intermediate_size=block.mlp.proj.in_features,
        num_hidden_layers=len(model.blocks), num_attention_heads=n_heads, num_key_value_heads=n_heads,
        head_dim=d_model // n_heads, hidden_act=act, max_position_embeddings=model.block_size,
        rms_norm_eps=block.attn_norm.eps,
        # 10000 is the model's default; the logit check catches a table built from anything else.
        rope_parameters={"rope_type": "default", "rope_theta": float(ckpt["model_cfg"].get("rope_base", 10000.0))},
        attention_bias=bias, mlp_bias=bias, architectures=[arch], **common)


def hf_state_dict(model) -> dict:
    """pico-llm parameter names and layouts -> `transformers` GPT-2 or Llama/Arcee ones (the same numbers)."""
    sd = gpt2_state_dict(model) if model.pos_emb is not None else llama_state_dict(model)
    return {k: t.detach().float().contiguous() for k, t in sd.items()}


def _linear(sd: dict, name: str, linear: torch.nn.Linear) -> None:
    sd[name + ".weight"] = linear.weight
    if linear.bias is not None:
        sd[name + ".bias"] = linear.bias


def llama_state_dict(model) -> dict:
    sd = {"model.embed_tokens.weight": model.tok_emb.weight, "model.norm.weight": model.norm.weight,
          "lm_head.weight": model.head.weight}
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        sd |= {p + "input_layernorm.weight": block.attn_norm.weight,
               p + "post_attention_layernorm.weight": block.mlp_norm.weight}
        # qkv is one Linear whose output rows are [q; k; v], heads side by side within each: Llama's q/k/v_proj.
        qkv = block.attn.qkv
        for name, w, b in zip("qkv", qkv.weight.chunk(3), qkv.bias.chunk(3) if qkv.bias is not None else [None] * 3):
            sd[p + f"self_attn.{name}_proj.weight"] = w
            if b is not None:
                sd[p + f"self_attn.{name}_proj.bias"] = b
        _linear(sd, p + "self_attn.o_proj", block.attn.proj)
        _linear(sd, p + "mlp.down_proj", block.mlp.proj)
        if block.mlp.gated:  # fc's rows are [gate; up] (MLP.forward chunks gate first)
            gate, up = block.mlp.fc.weight.chunk(2, dim=0)
            sd |= {p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up}
            if block.mlp.fc.bias is not None:
                gate_b, up_b = block.mlp.fc.bias.chunk(2)
                sd |= {p + "mlp.gate_proj.bias": gate_b, p + "mlp.up_proj.bias": up_b}
        else:
            _linear(sd, p + "mlp.up_proj", block.mlp.fc)
    return sd


def gpt2_state_dict(model) -> dict:
    """GPT-2 keeps every bias (zeros stand in for a bias-free network's) and stores its Linear weights
    transposed (Conv1D: in x out)."""
    def affine(sd, name, module, transpose):
        sd[name + ".weight"] = module.weight.T if transpose else module.weight
        sd[name + ".bias"] = module.bias if module.bias is not None else torch.zeros(sd[name + ".weight"].shape[-1])

    sd = {"transformer.wte.weight": model.tok_emb.weight, "transformer.wpe.weight": model.pos_emb.weight,
          "lm_head.weight": model.head.weight}
    affine(sd, "transformer.ln_f", model.norm, transpose=False)
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        for name, module, transpose in (("ln_1", block.attn_norm, False), ("attn.c_attn", block.attn.qkv, True),
                                        ("attn.c_proj", block.attn.proj, True), ("ln_2", block.mlp_norm, False),
                                        ("mlp.c_fc", block.mlp.fc, True), ("mlp.c_proj", block.mlp.proj, True)):
            affine(sd, p + name, module, transpose)
    return sd


def _hf_model(config, state_dict):
    from transformers import AutoModelForCausalLM, GenerationConfig
    with torch.device("meta"):  # no random init: every weight comes from the state dict
        hf_model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    hf_model.load_state_dict(state_dict, strict=True, assign=True)
    if config.tie_word_embeddings:
        hf_model.tie_weights()
    hf_model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                                  pad_token_id=config.pad_token_id)
    return hf_model.eval()


@torch.no_grad()
def check_logits(model, folder, batch: int = 2, seed: int = 0) -> float:
    """Max |logit difference| between pico-llm and the exported folder on random ids; refuse a mismatch."""
    from transformers import AutoModelForCausalLM
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.vocab_size, (batch, model.block_size), generator=gen)
    ours, theirs = model(ids).float(), hf_model(ids).logits.float()
    diff = (ours - theirs).abs().max().item()
    if diff > MAX_LOGIT_DIFF * max(1.0, ours.abs().max().item()):
        raise PicoError(f"the exported model's logits differ from pico-llm's by {diff:.2e}; nothing was written "
                        f"(an export bug: please report it with the checkpoint's model config)")
    return diff


# The files save_pretrained writes (.bin: older transformers' weights): a folder of such files alone is an
# earlier export, which an export replaces; any other folder holds work of its own.
EXPORT_SUFFIXES = {".json", ".safetensors", ".bin", ".txt", ".jinja", ".model"}
EXPORT_MARKERS = {".snakemake_timestamp"}  # what Snakemake adds to a directory() output it made (rule export)


def check_out_dir(out_dir: Path) -> None:
    """An export replaces `out_dir` whole: refuse a folder that is not missing, empty or an earlier export (a
    results folder, a checkout), whose files the replacement would delete."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise PicoError(f"{out_dir} is a file, not a folder; give the export a folder of its own "
                        "(e.g. results/<experiment>/hf/<run>/seed<k>)")
    foreign = sorted(p.name + "/" * p.is_dir() for p in out_dir.iterdir()
                     if p.is_dir() or (p.suffix not in EXPORT_SUFFIXES and p.name not in EXPORT_MARKERS))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise PicoError(f"{out_dir} exists and is no Hugging Face export (it holds {shown}), and an export replaces "
                        "its folder whole; give a new or empty folder (e.g. a new folder under results/<experiment>/hf/)")


def _readable_by_all(folder: Path) -> None:
    """The modes a plain file and folder get under the user's umask: some writers (safetensors) create files
    readable by their owner alone, which others on a shared cluster could then not load."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _replace_dir(src: Path, dst: Path) -> None:
    """Put folder `src` at `dst`, replacing an old `dst`: a reader sees the old folder or the new one."""
    old = dst.with_name(f".{dst.name}.{os.getpid()}.old")
    moved = dst.exists()
    if moved:
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:  # the new folder did not land: the old one goes back, so dst is never missing
        if moved:
            os.replace(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- the tokenizer -----------------------------------------------------------------------------------------

def eot_id(name: str, tokenizer_json=None) -> int:
    from picollm.data.tokenizer import get_tokenizer
    return get_tokenizer(name, tokenizer_json).eot_token


def hf_tokenizer(name: str, vocab_size: int, block_size: int, tokenizer_json=None):
    """A `transformers` fast tokenizer giving the same ids as pico-llm's `name` for ordinary text
    (`tokenizer_json`: a trained `bpe:N` tokenizer's JSON, as its checkpoint carries it)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    from picollm.data.tokenizer import get_tokenizer
    enc = get_tokenizer(name, tokenizer_json)
    if enc.n_vocab != vocab_size:
        raise PicoError(f"the checkpoint's vocabulary ({vocab_size}) does not match tokenizer {name!r} "
                        f"({enc.n_vocab}); retrain the model")
    if name == "byte":
        tok = byte_tokenizer(enc.eot_token)
    elif hasattr(enc, "json"):  # a trained BPE already is a `tokenizers` tokenizer: a fresh copy of it
        from tokenizers import Tokenizer
        tok = Tokenizer.from_str(enc.json)
    else:
        tok = tiktoken_tokenizer(enc)
    # pico-llm starts every prompt with end-of-text, as every training document starts after one: the export
    # adds it as BOS, so transformers' pipeline continues "Once upon a time" as the sample table does.
    tok.post_processor = processors.TemplateProcessing(single=f"{EOT_TEXT} $A", pair=f"{EOT_TEXT} $A {EOT_TEXT} $B",
                                                       special_tokens=[(EOT_TEXT, enc.eot_token)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT_TEXT, eos_token=EOT_TEXT, pad_token=EOT_TEXT,
                                   model_max_length=block_size, clean_up_tokenization_spaces=False)


def byte_tokenizer(eot: int):
    """pico-llm's byte tokenizer: one token per UTF-8 byte (id = byte value), end-of-text = `eot`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    byte_char = byte_chars()
    vocab = {byte_char[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges: every byte stays a token
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOT_TEXT])
    assert tok.token_to_id(EOT_TEXT) == eot
    return tok


def tiktoken_tokenizer(enc):
    """A byte-level BPE with tiktoken's ranks as merges and its split pattern, e.g. GPT-2's exactly."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    byte_char = byte_chars()
    ranks = enc._mergeable_ranks  # token bytes -> id; tiktoken has no public accessor
    as_text = lambda bs: "".join(byte_char[b] for b in bs)
    vocab = {as_text(t): r for t, r in ranks.items()}
    merges = [tuple(map(as_text, _split_in_two(t, ranks))) for t, r in sorted(ranks.items(), key=lambda kv: kv[1])
              if len(t) > 1]
    # Special tokens go in the vocabulary with their own ids (not necessarily the next free ones), then are
    # marked special so that they are never split and decode(skip_special_tokens=True) drops them.
    tok = Tokenizer(models.BPE(vocab={**vocab, **enc._special_tokens}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(enc._pat_str), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(enc._special_tokens))
    return tok


def _split_in_two(token: bytes, ranks: dict) -> tuple[bytes, bytes]:
    """The last merge that builds `token`: run BPE on its bytes with only the lower-ranked merges."""
    parts = [bytes([b]) for b in token]
    limit = ranks[token]
    while len(parts) > 2:
        pairs = [(ranks.get(a + b, limit), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank >= limit:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise PicoError(f"tiktoken token {token!r} is not a merge of two tokens; this encoding cannot be exported")
    return parts[0], parts[1]
