"""Best validation bits per byte in a fixed wall-clock budget (`--minutes`, 10 by default) on the local
TinyStories files, each recipe trained from scratch and then scored on the whole validation file.

Rows: Hugging Face GPT2LMHeadModel in a plain AdamW loop (what a user would pick instead), pico-llm's
previous default recipe, each lever alone on top of it (a BPE vocabulary trained on the data, Muon,
torch.compile, bf16 autocast, a GELU MLP), and all levers that beat the previous default together. Every row
has the same width, depth, heads, context and batch. Each row runs in a fresh process, one after the other, and
trains with train.max_minutes: the trainer stops at the first step after the budget is spent, its cosine
decay run over the time, compilation (torch.compile compiles in the first steps) included. Loading the data
and building the model come before the clock starts; evaluation is not counted.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, Sizes, run_child, skipped

TITLE = "Fixed budget: validation bits per byte after the same wall-clock training time"
SHARED = REPO.parent / "shared" / "tinystories"
MODEL = {"type": "transformer", "d_model": 128, "n_heads": 4, "n_layers": 4, "pos_encoding": "rope"}
BLOCK, BATCH, LR = 128, 16, 2e-3
# The plain recipe, without the levers below: GPT-2 BPE with the compact output layer, a SiLU MLP, AdamW, fp32,
# eager. "model" and "train" hold what a recipe sets on top of MODEL and the
# train keys below.
BASE = {"tokenizer": "gpt2", "compact_vocab": True, "model": {"mlp": "silu"},
        "train": {"optimizer": "adamw", "compile": False, "precision": "fp32"}}
BPE_SIZE, QUICK_BPE_SIZE = 4096, 512


# A lever wins when it lowers bits per byte by more than this (single runs: an equal result is no win).
WIN_MARGIN = 0.001


def levers(bpe_size: int, quick: bool) -> dict:
    """name -> what the lever changes in BASE (--quick leaves compile out: its compilation alone takes minutes)."""
    out = {f"bpe:{bpe_size} vocabulary": {"tokenizer": f"bpe:{bpe_size}", "compact_vocab": False},
           "muon": {"train": {"optimizer": "muon"}},
           "compile": {"train": {"compile": True}},
           "bf16 autocast": {"train": {"precision": "bf16"}},
           "gelu": {"model": {"mlp": "gelu"}}}
    if quick:
        del out["compile"]
    return out



def merge(base: dict, change: dict) -> dict:
    """`change` on top of `base`: its model and train keys added to base's, its other keys replacing them."""
    out = {**base, **{k: v for k, v in change.items() if k not in ("model", "train")}}
    for part in ("model", "train"):
        out[part] = {**base.get(part, {}), **change.get(part, {})}
    return out


def train_config(recipe: dict, budget_s: float) -> dict:
    return {"max_steps": 10 ** 9, "max_minutes": budget_s / 60, "batch_size": BATCH, "lr": LR, "warmup_steps": 50,
            "eval_interval": 10 ** 9, "eval_batches": 1, "checkpoint_interval": 10 ** 9, "log_interval": 10 ** 9,
            **recipe["train"]}


# --- one row, in its own process --------------------------------------------------------------------------

def pico_row(recipe: dict, data: Path, out: Path, budget_s: float, threads: int) -> dict:
    import torch

    from picollm.evaluate import evaluate_model
    from picollm.train import train
    torch.set_num_threads(threads)
    summary = train("m", {**MODEL, **recipe.get("model", {})}, train_config(recipe, budget_s),
                    tokens_dir=data / token_folder(recipe["tokenizer"]), out_dir=out, seed=1337, block_size=BLOCK,
                    device="cpu", compact_vocab=recipe["compact_vocab"])
    result, _ = evaluate_model("m", out / "model.pt", data / token_folder(recipe["tokenizer"]))
    return {"train_wall_s": summary["wall_s"], "steps": summary["steps"], "bpb": result["bpb"],
            "val_loss": result["val_loss"], "params": result["params"], "greedy": greedy_text(out / "model.pt")}


def hf_row(data: Path, budget_s: float, threads: int) -> dict:
    """GPT2LMHeadModel at the same size, GPT-2 tokens, AdamW at a constant lr until the budget is spent."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from picollm.data.tokenizer import get_tokenizer
    from picollm.data.tokens import WindowSampler, load_tokens, read_meta
    from picollm.evaluate import evaluate_split, token_byte_lengths
    torch.set_num_threads(threads)
    torch.manual_seed(1337)
    folder = data / token_folder("gpt2")
    meta = read_meta(folder / "meta.json")
    cfg = GPT2Config(vocab_size=meta.vocab_size, n_positions=BLOCK, n_embd=MODEL["d_model"],
                     n_layer=MODEL["n_layers"], n_head=MODEL["n_heads"])
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    sampler = WindowSampler(load_tokens(folder / "train.bin", meta), meta.splits.train.sources,
                            {"ts": 1.0}, BLOCK, 1337)
    steps = 0
    t0 = time.perf_counter()  # the clock starts with the first step, as the trainer's does
    while time.perf_counter() - t0 < budget_s:
        x, y = sampler.batch(BATCH)
        loss = torch.nn.functional.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    wall = time.perf_counter() - t0

    class Scored(torch.nn.Module):  # features + head: picollm's evaluation scores the head in chunks of rows
        def __init__(self, inner):
            super().__init__()
            self.inner, self.head = inner, inner.lm_head

        def features(self, idx):
            return self.inner.transformer(idx).last_hidden_state

    lengths = token_byte_lengths(get_tokenizer("gpt2"), meta.vocab_size)
    val = load_tokens(folder / "val.bin", meta)
    result = evaluate_split(Scored(model).eval(), val, meta.splits.val.sources, lengths, BLOCK, 32,
                            torch.device("cpu"))
    return {"train_wall_s": wall, "steps": steps, "bpb": result["all"]["bpb"], "val_loss": result["all"]["loss"],
            "params": sum(p.numel() for p in model.parameters()), "greedy": None,
            "mean_step_s": wall / max(steps, 1)}


def greedy_text(model_path: Path) -> str:
    from picollm.config import SamplingConfig
    from picollm.data.tokenizer import checkpoint_tokenizer
    from picollm.models import load_model
    from picollm.sampling import sample_records
    model = load_model(model_path)
    tokenizer = checkpoint_tokenizer(model.checkpoint)
    # greedy decoding is always drawn; one p value is the least a sampling section holds
    cfg = SamplingConfig(prompts=["Once upon a time"], p_values=[1.0], max_new_tokens=60, num_samples=1)
    records = sample_records(model, tokenizer, "m", cfg, 1337)
    return "Once upon a time" + next(r["text"] for r in records if r["decoding"] == "greedy")


def token_folder(tokenizer: str) -> str:
    return "tok-" + tokenizer.replace(":", "")


# --- the benchmark ----------------------------------------------------------------------------------------

def prepare_gpt2(data: Path, quick: bool, threads: int) -> dict:
    """The raw train and validation text (--quick: 200 documents of each) and its GPT-2 token folder;
    returns the raw files as tokenize() takes them."""
    from picollm.data.sources import iter_documents, write_documents
    from picollm.data.tokens import tokenize
    limit = 200 if quick else None
    raw = {"ts": {s: data / f"raw/{s}.txt" for s in ("train", "val")}}
    for split, name in (("train", "TinyStories-train-head.txt"), ("val", "TinyStories-valid-head.txt")):
        write_documents(raw["ts"][split], list(iter_documents(SHARED / name))[:limit])
    tokenize("gpt2", raw, data / token_folder("gpt2"), threads)
    return raw


def prepare(data: Path, quick: bool, threads: int, bpe_size: int) -> None:
    """Raw text and the token folders of both tokenizers (GPT-2 BPE, and a BPE trained on the train file)."""
    from picollm.data.bpe import write_tokenizer
    from picollm.data.tokens import tokenize
    raw = prepare_gpt2(data, quick, threads)
    write_tokenizer([raw["ts"]["train"]], bpe_size, data / "tokenizer.json")
    tokenize(f"bpe:{bpe_size}", raw, data / token_folder(f"bpe:{bpe_size}"), threads,
             tokenizer_json=data / "tokenizer.json")


def child(kind: str, recipe: dict | None, data: Path, out: Path, budget_s: float, threads: int) -> dict:
    """Run one row in a fresh process and return its result. No compiled code is carried over: the compile
    caches on disk are off, so every run with train.compile pays its compilation as a user's first run does."""
    spec = {"kind": kind, "recipe": recipe, "data": str(data), "out": str(out), "budget_s": budget_s,
            "threads": threads}
    return run_child("benchmarks.budget", spec, f"{kind} row", env={"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"})


def run(sz: Sizes, peak: dict) -> dict:
    if not (SHARED / "TinyStories-train-head.txt").is_file():
        return skipped(TITLE, f"no {SHARED}")
    budget_s = sz.budget_minutes * 60
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        bpe_size = QUICK_BPE_SIZE if sz.quick else BPE_SIZE
        prepare(data, sz.quick, sz.threads, bpe_size)

        def pico(name, recipe):
            row = child("pico", recipe, data, tmp / name.replace(" ", "_"), budget_s, sz.threads)
            results[name] = {**row, "recipe": recipe}
            print(f"  budget: {name}: {row['steps']} steps in {row['train_wall_s']:.0f} s, bpb {row['bpb']:.4f}",
                  flush=True)

        results["hf GPT2LMHeadModel + AdamW"] = child("hf", None, data, tmp / "hf", budget_s, sz.threads)
        print(f"  budget: hf: bpb {results['hf GPT2LMHeadModel + AdamW']['bpb']:.4f}", flush=True)
        pico("previous default", BASE)
        base_bpb = results["previous default"]["bpb"]
        winners = {}
        for lever, change in levers(bpe_size, sz.quick).items():
            pico(f"+ {lever}", merge(BASE, change))
            if results[f"+ {lever}"]["bpb"] < base_bpb - WIN_MARGIN:
                winners[lever] = change
        best = BASE
        for change in winners.values():
            best = merge(best, change)
        pico("all winners", best)
    return report(results, winners, sz, budget_s)


def report(results: dict, winners: dict, sz: Sizes, budget_s: float) -> dict:
    hf = results["hf GPT2LMHeadModel + AdamW"]["bpb"]
    rows = [[name, r["steps"], round(r["train_wall_s"], 1), r["params"], round(r["val_loss"], 4), round(r["bpb"], 4),
             f"{r['bpb'] / hf:.3f}"] for name, r in results.items()]
    best_name = min((n for n in results if n != "hf GPT2LMHeadModel + AdamW"), key=lambda n: results[n]["bpb"])
    ratio = results[best_name]["bpb"] / hf
    notes = [f"Every row: d_model {MODEL['d_model']}, {MODEL['n_layers']} layers, {MODEL['n_heads']} heads, block "
             f"{BLOCK}, batch {BATCH}, peak lr {LR}, {sz.threads} threads, seed 1337, {budget_s / 60:g} minutes of "
             "training (train.max_minutes: compilation included, data loading not), one run each, back to back.",
             "bpb: whole validation file (TinyStories-valid-head), bits per UTF-8 byte of the raw text, so GPT-2 BPE "
             "and the trained BPE rows compare directly. val_loss is nats per token of each row's own tokenizer.",
             "HF row: transformers GPT2LMHeadModel (learned positions, GELU, LayerNorm, tied head), full 50,257-token "
             "vocabulary, torch.optim.AdamW at a constant lr, no schedule or clipping, trained until the budget ends.",
             f"Levers that beat the previous default alone by more than {WIN_MARGIN} bpb (and went into "
             f"'all winners'): "
             f"{', '.join(winners) or 'none'}.",
             f"Greedy sample of '{best_name}': {results[best_name].get('greedy')!r}",
             f"Greedy sample of 'previous default': {results['previous default'].get('greedy')!r}"]
    return {"title": TITLE, "results": results, "winners": list(winners), "budget_minutes": budget_s / 60,
            "targets": [{"target": "best recipe's bpb <= 0.8 x the HF row's", "value": round(ratio, 3),
                         "met": ratio <= 0.8, "display": f"{ratio:.3f} ({best_name})"}],
            "notes": notes,
            "table": {"columns": ["recipe", "steps", "train s", "params", "val loss (nats/token)", "bpb", "bpb / HF"],
                      "rows": rows}}


def main(spec: str) -> None:
    args = json.loads(spec)
    data, out = Path(args["data"]), Path(args["out"])
    if args["kind"] == "hf":
        result = hf_row(data, args["budget_s"], args["threads"])
    else:
        result = pico_row(args["recipe"], data, out, args["budget_s"], args["threads"])
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
