"""Two speed-ups (now applied in src/picollm), measured against the plain path: `python -m benchmarks.proposals`.

Not part of `python -m benchmarks` (which measures src/picollm only). Two changes, each a few lines:
  1. fused_head: lm_loss without the (B, T, vocab) logits tensor. The LM head and the cross-entropy run
     together over chunks of 128 rows: the forward pass computes each chunk's logits and softmax, turns the
     softmax in place into the logits' gradient (softmax - one_hot) / N, multiplies it straight into the
     gradients of the hidden states and (accumulating in place) of the head weight, and keeps only those.
     The log-softmax, NLL, their backward and the zero-filled (N, vocab) gradient (memory-bound passes over
     2048 x 50257 floats, ~25% of a Transformer step) shrink to passes over 26 MB chunks, and the step's peak
     memory drops by the two (N, vocab) tensors.
  2. fused_adamw: torch.optim.AdamW(fused=True) on CPU too (make_optimizer once set it on CUDA only).
Writes <out>/proposals.json and prints tokens/s and speed-up per variant; `--chunks` also times other chunk sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

from benchmarks.common import interleaved, machine_info, now_utc, peak_matmul, sizes
from benchmarks.models import RandomTokens, kgram_cfg, lstm_cfg, ours, train_step, transformer_cfg
from picollm.train import linear_cross_entropy, lm_loss

CHUNK_ROWS = 128  # 128 x 50257 fp32 = 26 MB per chunk: the fastest of 32/64/128/256/512/1024/2048 rows here


# --- the two paths compared ----------------------------------------------------------------------------------
# The fused path is what src/picollm/train.py runs now (lm_loss -> linear_cross_entropy over model.features);
# the plain path builds the (B, T, vocab) logits and calls F.cross_entropy, as before the change.

def plain_lm_loss(model, x, y):
    logits = model(x)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))


fused_lm_loss = lm_loss


# --- measurement -------------------------------------------------------------------------------------------

def check_equivalence(sz) -> dict:
    """Loss and gradients of fused_lm_loss vs lm_loss on each model type (max abs differences)."""
    out = {}
    data = RandomTokens(sz.vocab)
    for name, cfg in (("transformer", transformer_cfg(sz)), ("lstm", lstm_cfg(sz)), ("kgram", kgram_cfg(sz, "embedding"))):
        model = ours(cfg, sz, 64)
        x, y = data.sampler(64, seed=3).batch(2)
        ref = plain_lm_loss(model, x, y)
        ref_grads = torch.autograd.grad(ref, list(model.parameters()))
        new = fused_lm_loss(model, x, y)
        new_grads = torch.autograd.grad(new, list(model.parameters()))
        with torch.no_grad():
            nograd = fused_lm_loss(model, x, y)
        out[name] = {"loss_abs_diff": abs(ref.item() - new.item()), "no_grad_loss_abs_diff": abs(ref.item() - nograd.item()),
                     "max_grad_abs_diff": max((a - b).abs().max().item() for a, b in zip(ref_grads, new_grads)),
                     "max_grad_abs": max(a.abs().max().item() for a in ref_grads)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.proposals")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="results/benchmarks")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", type=int, nargs="*", default=[], help="also time these chunk sizes (rows)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sz = sizes(args.quick, args.threads)
    from picollm.io import write_json
    started, peak = now_utc(), peak_matmul(sz.peak_sizes)
    data = RandomTokens(sz.vocab)
    equivalence = check_equivalence(sz)
    results = {}
    for model_name, cfg in (("transformer", transformer_cfg(sz)), ("kgram_embedding", kgram_cfg(sz, "embedding")),
                            ("lstm", lstm_cfg(sz))):
        variants = {}
        for label, loss_fn, fused_opt in (("current", plain_lm_loss, False), ("fused_adamw", plain_lm_loss, True),
                                          ("fused_head", fused_lm_loss, False), ("both", fused_lm_loss, True)):
            variants[label] = train_step(ours(cfg, sz, sz.block), loss_fn, data.sampler(sz.block, seed=1), sz.batch,
                                         fused_adamw=fused_opt)
        if model_name == "transformer":
            for c in args.chunks:
                fn = (lambda c_: lambda m, x, y: linear_cross_entropy(m.features(x).reshape(-1, sz.d_model),
                                                                      m.head.weight, None, y.reshape(-1), c_))(c)
                variants[f"both_chunk{c}"] = train_step(ours(cfg, sz, sz.block), fn, data.sampler(sz.block, seed=1),
                                                        sz.batch, fused_adamw=True)
        timing = interleaved(variants, sz.warmup, sz.reps)
        base = timing["current"]["median_s"]
        results[model_name] = {k: {"tokens_per_s": round(sz.batch * sz.block / v["median_s"], 1),
                                   "speedup": round(base / v["median_s"], 3), "median_s": round(v["median_s"], 4),
                                   "min_s": round(v["min_s"], 4), "samples_s": v["samples_s"], "retaken": v["retaken"]} for k, v in timing.items()}
        print(model_name, {k: (v["tokens_per_s"], v["speedup"]) for k, v in results[model_name].items()}, flush=True)
    # peak memory of a transformer step, current vs fused head, each in a fresh process
    from benchmarks.memory import measure
    memory = {"current": measure("transformer", sz)}
    memory["fused_head"] = _measure_fused_memory(sz)
    record = {"benchmark": "proposals", "started_utc": started, "machine": machine_info(args.threads),
              "peak_matmul": peak, "sizes": sz.as_dict(), "chunk_rows": CHUNK_ROWS, "equivalence": equivalence,
              "results": results, "memory_transformer": memory}
    write_json(os.path.join(args.out, "proposals.json"), record)
    print(json.dumps({"equivalence": equivalence, "memory": memory}, indent=1))
    return 0


def _measure_fused_memory(sz) -> dict:
    import subprocess

    from benchmarks.common import REPO
    code = ("import sys, json, torch; torch.set_num_threads(%d); sys.argv=['x']; "
            "from benchmarks import proposals as P, memory_step as M; from benchmarks.common import sizes; "
            "from benchmarks.models import RandomTokens, ours, transformer_cfg, train_step; sz=sizes(%s, %d); "
            "m=ours(transformer_cfg(sz), sz, sz.block); "
            "step=train_step(m, P.fused_lm_loss, RandomTokens(sz.vocab).sampler(sz.block, seed=1), sz.batch); "
            "before=M.rss_mib(); step(); step(); print(json.dumps({'rss_before_steps_mib': round(before, 1), "
            "'peak_rss_mib': round(M.peak_rss_mib()[0], 1)}))") % (sz.threads, sz.quick, sz.threads)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
