"""6. Full vs compact output vocabulary: training tokens/s and validation loss at equal steps.

Both runs train config/config.yaml's Transformer with picollm.train.train on the local TinyStories text
(../shared/tinystories, GPT-2 BPE), same seed, same batches; the compact one has `compact_vocab: true`
(output layer over the token ids seen in training + one row shared by the unseen ids). The validation loss is over the
full GPT-2 vocabulary in both (the same fixed validation windows), so the two are directly comparable.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from benchmarks.common import REPO, Sizes

TITLE = "Compact vocabulary: full vs compact output layer on TinyStories text"
SHARED = REPO.parent / "shared" / "tinystories"


def run(sz: Sizes, peak: dict) -> dict:
    from picollm.data.sources import iter_documents, write_documents
    from picollm.data.tokens import tokenize
    from picollm.train import train

    study = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    model_cfg = study["models"]["transformer"]
    steps = 4 if sz.quick else 100
    train_cfg = {"max_steps": steps, "batch_size": study["train"]["batch_size"], "lr": study["train"]["lr"],
                 "min_lr_ratio": 0.1, "warmup_steps": min(10, steps), "weight_decay": 0.1, "beta1": 0.9,
                 "beta2": 0.99, "grad_clip": 1.0, "eval_interval": steps, "eval_batches": 20,
                 "checkpoint_interval": 10 * steps, "log_interval": 10, "threads": sz.threads}
    train_file, valid_file = SHARED / "TinyStories-train-head.txt", SHARED / "TinyStories-valid-head.txt"
    if not train_file.is_file():
        return {"title": TITLE, "results": {}, "targets": [], "notes": [f"skipped: no {train_file}"],
                "table": {"columns": [], "rows": []}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        limit = 50 if sz.quick else None
        train_docs = list(iter_documents(train_file))[:limit]
        write_documents(tmp / "raw/ts/train.txt", train_docs)
        write_documents(tmp / "raw/ts/val.txt", list(iter_documents(valid_file))[:limit or 400])
        meta = tokenize("gpt2", {"ts": {"train": tmp / "raw/ts/train.txt", "val": tmp / "raw/ts/val.txt"}},
                        tmp / "tok", sz.threads)
        results = {}
        for name, compact in (("full", False), ("compact", True)):
            summary = train(name, model_cfg, train_cfg, tokens_dir=tmp / "tok", out_dir=tmp / name, seed=1337,
                            block_size=study["block_size"], device="cpu", compact_vocab=compact)
            results[name] = {k: summary[k] for k in ("params", "output_vocab", "tokens_per_s", "wall_s",
                                                     "first_val_loss", "final_val_loss", "tokens_seen")}
    full, comp = results["full"], results["compact"]
    rows = [[name, r["output_vocab"], r["params"], r["tokens_per_s"], r["final_val_loss"],
             f"{r['tokens_per_s'] / full['tokens_per_s']:.2f}x"] for name, r in results.items()]
    notes = [f"Transformer of config/config.yaml (d_model {model_cfg['d_model']}, {model_cfg['n_layers']} layers), "
             f"{steps} steps of batch {train_cfg['batch_size']} x block {study['block_size']} on "
             f"{len(train_docs)} TinyStories stories ({meta['splits']['train']['tokens']:,} tokens, "
             f"{len(meta['train_vocab']):,} distinct ids of GPT-2's {meta['vocab_size']:,}); same seed and batches.",
             "tokens/s is the whole run's (training steps, validations), one run each, full first: not interleaved "
             "step by step like the other comparisons.",
             f"Validation loss over the full GPT-2 vocabulary on the same {train_cfg['eval_batches']} x "
             f"{train_cfg['batch_size']} fixed windows: full {full['final_val_loss']:.3f}, compact "
             f"{comp['final_val_loss']:.3f} nats/token."]
    return {"title": TITLE, "results": results, "targets": [], "notes": notes,
            "table": {"columns": ["output layer", "output classes", "params", "tokens/s", "val loss", "vs full"],
                      "rows": rows}}
