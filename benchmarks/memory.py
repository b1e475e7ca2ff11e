"""4. Peak resident memory of a training step, each model in a fresh subprocess (benchmarks/memory_step.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import REPO, Sizes, child_environ
from benchmarks.memory_step import MODELS

TITLE = "Peak resident memory (RSS) of a training step"
LABELS = {"transformer": "ours, Transformer", "hf_gpt2": "HF GPT2LMHeadModel", "kgram_embedding": "ours, k-gram embedding",
          "kgram_onehot": "ours, k-gram one-hot", "lstm": "ours, LSTM", "starter_kgram": "starter-style k-gram"}


def measure(model: str, sz: Sizes, steps: int = 2) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory_step", model, "--threads", str(sz.threads), "--steps", str(steps)]
    if sz.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, cwd=REPO, env=child_environ(), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"memory_step {model} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sz: Sizes, peak: dict) -> dict:
    rows = {m: measure(m, sz) for m in MODELS}
    for r in rows.values():
        r["step_increase_mib"] = round(r["peak_rss_mib"] - r["rss_before_steps_mib"], 1)
    logits_mib = sz.batch * sz.block * sz.vocab * 4 / 2 ** 20
    notes = [
        "Each model runs 2 full training steps (the first allocates AdamW's state) in a fresh `python -m "
        "benchmarks.memory_step MODEL` process; peak = VmHWM from /proc/self/status (the kernel's high-water "
        "mark of the process's resident memory; not ru_maxrss, which Linux carries over fork + exec from the "
        "parent), so it includes the Python interpreter, torch (and for HF, "
        "transformers) imports, weights, AdamW state, activations, gradients and logits). 'before steps' is "
        "psutil's current RSS after the model and optimizer are built; 'step adds' is peak minus that.",
        f"Sizes as in the speed benchmarks: batch {sz.batch} x block {sz.block}, vocab {sz.vocab}; the Transformers "
        f"d_model {sz.d_model}, {sz.n_layers} layers; k-gram k={sz.kgram_k}, embed {sz.kgram_embed}, hidden "
        f"{sz.kgram_hidden}; LSTM embed {sz.lstm_embed}, hidden {sz.lstm_hidden}. The starter-style k-gram runs at "
        f"batch {sz.starter_batch} x seq {sz.starter_seq} (its speed benchmark's size), so its row is not comparable "
        f"batch for batch.",
        f"One fp32 (batch x block x vocab) logits tensor is {logits_mib:,.0f} MiB here. HF's loss keeps it, its "
        f"log-softmax and the logits' gradient: three of that size, most of what its step adds. Ours run the LM head "
        f"and the cross-entropy together in chunks of 128 rows (picollm.loss.linear_cross_entropy), so none of the "
        f"three exists.",
    ]
    table = {"columns": ["model", "batch x seq", "params", "RSS before steps MiB", "peak RSS MiB", "step adds MiB"],
             "rows": [[LABELS[m], f"{r['batch']} x {r['seq']}", r["params"], r["rss_before_steps_mib"],
                       r["peak_rss_mib"], r["step_increase_mib"]] for m, r in rows.items()]}
    return {"title": TITLE, "results": rows, "method": "VmHWM (/proc/self/status) of a fresh process per model", "targets": [],
            "notes": notes, "table": table}
