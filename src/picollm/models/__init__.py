"""Building and loading models: build_model / load_model (the types themselves: picollm.model_types).

Every model maps a LongTensor (batch, seq) to logits (batch, seq, vocab), batch first, and offers
`forward_step(idx, state) -> (logits, state)` for incremental generation: `idx` holds only the new
tokens, `state` is whatever the model carries between calls (None at the start). The model never sees
more than `block_size` tokens of context in training; generation slides the window (see sampling.py).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import zipfile
from pathlib import Path

import torch

from picollm.config import ModelConfig, model_config
from picollm import model_types
from picollm.errors import PicoError
from picollm.flops import compact_width
from picollm.layout import MODEL_PATH, is_model_path
from picollm.models import compact
from picollm.models.compact import CompactVocab
from picollm.resume_names import kind_of

CHECKPOINT_FORMAT = "picollm.model/1"
# How torch.save's files begin: its zip archive (the default format), or the legacy format's pickle protocol 2
TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02")


def model_class(model_type: str) -> type:
    """A type's class, imported now: a model's code identity holds its own type's modules only."""
    module, name = model_types.model_type(model_type).implementation.split(":")
    return getattr(importlib.import_module(module), name)


def build_model(model_cfg: ModelConfig | dict, vocab_size: int, block_size: int, compact_ids=None) -> torch.nn.Module:
    """Build a freshly initialised model from its config (picollm.config's object for its type, or a mapping
    {type: ..., hyperparameters}, which is checked and given the type's defaults).

    With `compact_ids` (the token ids seen in training), the model's own vocabulary is those ids plus one
    row shared by every unseen id, wrapped so that it still maps full-vocabulary ids to full-vocabulary logits.
    """
    cfg = model_config(model_cfg)
    if compact_ids is not None:
        inner = build_model(cfg, compact_width(compact_ids), block_size)
        return CompactVocab(inner, compact_ids, vocab_size)
    model = model_class(cfg.type)(vocab_size=vocab_size, block_size=block_size, **cfg.hyperparameters())
    _check_members(model, cfg.type)
    return model


# What training (features, head), generation (forward_step, context_limited) and evaluation call on every model
MEMBERS = ("features", "head", "forward_step", "context_limited")


def _check_members(model: torch.nn.Module, model_type: str) -> None:
    """A type's class that lacks one of MEMBERS stops where it is built, before any training, in one line: not
    as an AttributeError in the job that first calls it, after the training."""
    missing = [member for member in MEMBERS if not hasattr(model, member)]
    if missing:
        where = model_types.model_type(model_type).implementation
        raise PicoError(f"model type {model_type!r} ({where}) has no {', '.join(missing)}, which every model "
                        f"offers; add {'it' if len(missing) == 1 else 'them'} (docs/extending.md, What a model "
                        f"offers)")


def checkpoint_dict(model: torch.nn.Module, model_cfg: dict, vocab_size: int, block_size: int, **extra) -> dict:
    """What model.pt holds: enough to rebuild the model without the Snakefile. `extra` names the tokenizer,
    and a model of a trained tokenizer (`bpe:N`) carries its JSON as `tokenizer_json`, so sampling, evaluation
    and export need no file beside the checkpoint."""
    compact_ids = model.kept_ids if isinstance(model, CompactVocab) else None
    state_dict = model.state_dict()
    ckpt = {"format": CHECKPOINT_FORMAT, "model_cfg": dict(model_cfg), "vocab_size": vocab_size,
            "block_size": block_size, "compact_ids": compact_ids, "state_dict": state_dict,
            "sha256": tensors_sha256(state_dict), **({"compact_form": compact.FORM} if compact_ids else {}), **extra}
    return {**ckpt, "meta_sha256": metadata_sha256(ckpt)}


def metadata_sha256(ckpt: dict) -> str:
    """sha256 of what a model.pt holds besides its weights (config, tokenizer, summary, provenance): a byte
    changed there would read as another record of how the model was made."""
    meta = {key: value for key, value in ckpt.items() if key not in ("state_dict", "sha256", "meta_sha256")}
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=repr).encode()).hexdigest()


def tensors_sha256(obj) -> str:
    """sha256 over every tensor in `obj` (nested dicts, lists and tuples): each one's place, dtype, shape and
    bytes. torch.load checks no checksum of its own, so bytes changed in place would load as other weights."""
    digest = hashlib.sha256()
    _update(digest, obj, "")
    return digest.hexdigest()


def _update(digest, obj, place: str) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"{place}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            _update(digest, obj[key], f"{place}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _update(digest, value, f"{place}/{i}")


def damaged(ckpt: dict, tensors) -> bool:
    """Whether a checkpoint's tensors no longer match the checksum saved with them (one saved without a
    checksum passes)."""
    return "sha256" in ckpt and tensors_sha256(tensors) != ckpt["sha256"]


def whole_archive(path: Path) -> bool:
    """Whether `path` is an undamaged zip archive, as torch.save writes: every member's CRC checks."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def unloadable(path: Path) -> str:
    """Why an undamaged checkpoint is no model: a training's resume point (last.pt holds its optimizer and
    sampler state too), or another program's file."""
    kind = kind_of(path)
    if kind == "own":
        return (f"{path} is the resume point of an unfinished training, not a model: keep it; rerun the training "
                f"(the same snakemake command) to continue from it and write model.pt")
    if kind == "damaged":
        return (f"{path} is a resume point that training could not resume, kept for a look, not a model; delete it "
                f"when done")
    if kind == "aside":
        return (f"{path} is the resume point of a training of another config, set aside until that config trains "
                f"here again, not a model: keep it (or delete it if that config is gone)")
    return (f"{path} is a whole PyTorch file but no pico-llm model (it holds more than weights); give the model.pt "
            f"that picollm train wrote ({MODEL_PATH})")


def read_checkpoint(path) -> dict:
    """Load a model.pt dict, turning a truncated or foreign file into one clear error."""
    path = Path(path)
    if not path.exists():
        fix = f"train the model first (snakemake --cores N {path} --configfile STUDY.yaml)" if is_model_path(path) \
            else f"give the path of a model.pt ({MODEL_PATH})"
        raise PicoError(f"checkpoint {path} does not exist; {fix}")
    if path.is_dir():
        inside = path / "model.pt"
        seeds = sorted(path.glob("seed*/model.pt"))
        fix = f"give {inside}" if inside.is_file() else f"give the model.pt of one of its seeds, e.g. {seeds[0]}" \
            if seeds else f"give the path of a model.pt ({MODEL_PATH})"
        raise PicoError(f"{path} is a folder, not a checkpoint; {fix}")
    with open(path, "rb") as fh:
        foreign = not fh.read(4).startswith(TORCH_MAGIC)
    if foreign and path.suffix != ".pt":  # another file named by mistake, not a damaged one to delete
        raise PicoError(f"{path} is no PyTorch checkpoint; give the model.pt that picollm train wrote ({MODEL_PATH})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        if whole_archive(path):  # readable, but not as plain weights: never advise deleting it
            raise PicoError(unloadable(path)) from None
        raise PicoError(f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}); "
                        f"delete it and rerun training") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PicoError(f"{path} is not a pico-llm model checkpoint; give the model.pt that picollm train wrote, "
                        f"or rerun training to rebuild it")
    if ckpt.get("compact_ids") is not None and ckpt.get("compact_form") != compact.FORM:
        raise PicoError(f"checkpoint {path} has a compact output vocabulary of an older pico-llm, whose unseen ids' "
                        f"logits this one defines otherwise; rerun training to rebuild it")
    if damaged(ckpt, ckpt["state_dict"]):
        raise PicoError(f"checkpoint {path} is damaged: its weights do not match the checksum saved with them; "
                        f"delete it and rerun training")
    if "meta_sha256" in ckpt and metadata_sha256(ckpt) != ckpt["meta_sha256"]:  # one saved without it passes
        raise PicoError(f"checkpoint {path} is damaged: what it records besides its weights (config, tokenizer, "
                        f"provenance) does not match the checksum saved with it; delete it and rerun training")
    return ckpt


def load_model(path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from a model.pt written by training (weights + config + vocab size)."""
    ckpt = read_checkpoint(path)
    try:  # the checksum covers the weights: a config or size changed in place shows here
        model = build_model(ckpt["model_cfg"], ckpt["vocab_size"], ckpt["block_size"], ckpt.get("compact_ids"))
    except (PicoError, KeyError, TypeError, ValueError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise PicoError(f"checkpoint {path} is damaged: its model does not build from it ({reason}); delete it and "
                        f"rerun training") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise PicoError(f"checkpoint {path} does not match its model config ({first}); rerun training") from None
    model.checkpoint = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(device).eval()


def output_vocab_size(model: torch.nn.Module) -> int:
    """Classes the model's head scores: the vocabulary, or a compact vocabulary's kept ids + its shared row."""
    return model.other + 1 if isinstance(model, CompactVocab) else model.head.out_features


def table_parameters(model: torch.nn.Module) -> set:
    """The lookup tables: every nn.Embedding's weight, and the weights a model names in lookup_tables()."""
    tables = {p for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return tables | {p for m in model.modules() if hasattr(m, "lookup_tables") for p in m.lookup_tables()}


def count_parameters(model: torch.nn.Module) -> dict:
    """Parameters split the same way for every model type, params = embedding + head + core:
    embedding: the token and learned position tables (table_parameters: every nn.Embedding, and the k-gram's
               one-hot first layer);
    head:      the output layer, 0 when tied to the token table (counted once, as embedding; head_tied);
    core:      everything else, also reported as params_non_embedding (Kaplan et al.'s N: no tables, no head).
    A CompactVocab has no parameters of its own; its inner model's head is the head.
    """
    head_module = (model.inner if isinstance(model, CompactVocab) else model).head
    embedding = table_parameters(model)
    head = set(head_module.parameters()) - embedding  # a tied head's weight is the token table itself
    counts = {"params": sum(p.numel() for p in model.parameters()),  # parameters() yields a shared one once
              "params_embedding": sum(p.numel() for p in embedding), "params_head": sum(p.numel() for p in head)}
    counts["params_core"] = counts["params"] - counts["params_embedding"] - counts["params_head"]
    return {**counts, "params_non_embedding": counts["params_core"], "head_tied": head_module.weight in embedding}
