"""The default study's vocabulary: GPT-2 BPE with the compact output layer against a BPE trained on the
study's text with its full output layer (which a Hugging Face export can hold exactly), at equal steps.

Every model of config/config.yaml (its hyperparameters, train section and per-model overrides) trains
train.max_steps steps on the local TinyStories train head under each vocabulary, once per seed, and is scored
on the whole validation head. Bits per byte compares the two vocabularies on the same text; rows are paired by
seed (the same seed initialises and orders the batches alike), so the table gives the trained BPE's paired
difference from GPT-2 compact with its 95% Student-t interval, per model type.
"""
from __future__ import annotations

import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.budget import BPE_SIZE, QUICK_BPE_SIZE, SHARED, prepare, token_folder
from benchmarks.common import REPO, Sizes, run_child, skipped

TITLE = "The default study's vocabulary: GPT-2 compact head against a trained BPE's full head, equal steps"


def vocabularies(bpe_size: int) -> dict:
    """name -> (tokenizer, compact_vocab)."""
    return {"gpt2 compact": ("gpt2", True), f"bpe:{bpe_size} full": (f"bpe:{bpe_size}", False)}


def one_run(spec: dict) -> dict:
    """Train and score one (model, vocabulary, seed) in this process."""
    import torch

    from picollm.config import load_study
    from picollm.evaluate import evaluate_model
    from picollm.train import train
    torch.set_num_threads(spec["threads"])
    study = load_study([REPO / "config" / "config.yaml"])
    train_cfg = study.train_of(spec["model"]).model_copy(update={"precision": "fp32"} | spec["train_changes"])
    out = Path(spec["out"])
    summary = train(spec["model"], study.models[spec["model"]], train_cfg, tokens_dir=spec["data"], out_dir=out,
                    seed=spec["seed"], block_size=study.block_size, device="cpu", compact_vocab=spec["compact"])
    result, _ = evaluate_model(spec["model"], out / "model.pt", spec["data"])
    return {"bpb": result["bpb"], "val_loss": result["val_loss"], "params": result["params"],
            "output_vocab": summary["output_vocab"], "train_wall_s": summary["wall_s"]}


def run(sz: Sizes, peak: dict) -> dict:
    if not (SHARED / "TinyStories-train-head.txt").is_file():
        return skipped(TITLE, f"no {SHARED}")
    from picollm.config import load_study
    study = load_study([REPO / "config" / "config.yaml"])
    bpe_size = QUICK_BPE_SIZE if sz.quick else BPE_SIZE
    vocabs = vocabularies(bpe_size)
    seeds = study.seeds[:1] if sz.quick else study.seeds
    changes = {"max_steps": 20, "warmup_steps": 5, "snapshot_steps": []} if sz.quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        prepare(data, sz.quick, sz.threads, bpe_size)
        specs = [{"model": m, "vocab": v, "seed": s, "data": str(data / token_folder(tok)), "compact": compact,
                  "train_changes": changes, "threads": 1, "out": str(Path(tmp) / f"{m}-{v.replace(':', '')}-{s}")}
                 for s in seeds for m in study.models for v, (tok, compact) in vocabs.items()]
        with ThreadPoolExecutor(max_workers=sz.threads) as pool:
            results = list(pool.map(lambda spec: run_child("benchmarks.vocab", spec, spec["out"]), specs))
    runs: dict = {}
    for spec, result in zip(specs, results):
        runs.setdefault(spec["model"], {}).setdefault(spec["vocab"], {})[spec["seed"]] = result
        print(f"  vocab: {spec['model']} {spec['vocab']} seed {spec['seed']}: {result['bpb']:.4f} bpb", flush=True)
    return report(runs, list(vocabs), seeds, study.train.max_steps if not sz.quick else 20)


def report(runs: dict, vocabs: list[str], seeds: list[int], steps: int) -> dict:
    from picollm.stats import paired_difference, t_interval
    base, other = vocabs
    rows, results = [], {}
    for model, by_vocab in runs.items():
        bpb = {v: {s: r["bpb"] for s, r in by_vocab[v].items()} for v in vocabs}
        diff = paired_difference(bpb[other], bpb[base])
        stats = {v: t_interval(bpb[v].values()) for v in vocabs}
        results[model] = {"runs": by_vocab, "bpb": stats, "vs_gpt2_compact": diff}
        rows.append([model, *(f"{stats[v]['mean']:.4f}" for v in vocabs),
                     f"{diff['mean_diff']:+.4f} ({diff['ci_low']:+.4f}..{diff['ci_high']:+.4f})",
                     diff["verdict"].replace("a better", f"{other} better").replace("b better", f"{base} better"),
                     *(next(iter(by_vocab[v].values()))["output_vocab"] for v in vocabs)])
    notes = [f"config/config.yaml's models and train settings, {steps} steps, fp32, seeds {seeds}; bits per byte on "
             f"the whole local validation head, mean over seeds; the difference is {other} minus {base}, paired by "
             f"seed, with its 95% Student-t interval (negative: the trained BPE is better)."]
    return {"title": TITLE, "results": results, "targets": [], "notes": notes,
            "table": {"columns": ["model", f"{base} bpb", f"{other} bpb", f"{other} - {base}", "verdict",
                                  f"{base} head", f"{other} head"], "rows": rows}}


if __name__ == "__main__":
    print(json.dumps(one_run(json.loads(sys.argv[1])), default=str))
