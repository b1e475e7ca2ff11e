"""Child process of the memory benchmark: build one model, take training steps, print peak RSS as JSON.

python -m benchmarks.memory_step MODEL [--quick] [--threads N] [--steps 2]
Run in a fresh process per model, so the peak is that model's alone: imports, weights, AdamW state,
activations, gradients, logits. The peak is VmHWM from /proc/self/status, the high-water mark of this
process image's resident memory. (Not ru_maxrss: Linux carries it over fork + exec, so a child would
report its parent's peak whenever that is larger.) Where /proc is missing, ru_maxrss is the fallback.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

MODELS = ("transformer", "hf_gpt2", "kgram_embedding", "kgram_onehot", "lstm", "starter_kgram")


def rss_mib() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2 ** 20


def peak_rss_mib() -> tuple[float, str]:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "VmHWM"  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"  # KiB on Linux


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from benchmarks.common import sizes
    from benchmarks.models import (LOSSES, RandomTokens, hf_gpt2, kgram_cfg, lstm_cfg, ours, starter, train_step,
                                   transformer_cfg)
    sz = sizes(args.quick, args.threads)
    batch, block = sz.batch, sz.block
    if args.model == "transformer":
        model, loss = ours(transformer_cfg(sz), sz, block), LOSSES["ours"]
    elif args.model == "hf_gpt2":
        model, loss = hf_gpt2(sz, block), LOSSES["hf"]
    elif args.model.startswith("kgram_"):
        model, loss = ours(kgram_cfg(sz, args.model.split("_", 1)[1]), sz, block), LOSSES["ours"]
    elif args.model == "lstm":
        model, loss = ours(lstm_cfg(sz), sz, block), LOSSES["ours"]
    else:  # the starter-style loop: seconds per token, so its own small batch x seq
        model, loss = starter(sz), LOSSES["starter"]
        batch, block = sz.starter_batch, sz.starter_seq
    data = RandomTokens(sz.vocab)
    step = train_step(model, loss, data.sampler(block, seed=1), batch)
    before = rss_mib()
    peak_before = peak_rss_mib()[0]
    t = time.perf_counter()
    for _ in range(args.steps):  # the first step also allocates AdamW's state
        step()
    peak, source = peak_rss_mib()
    print(json.dumps({"model": args.model, "batch": batch, "seq": block, "vocab": sz.vocab, "steps": args.steps,
                      "params": sum(p.numel() for p in model.parameters()),
                      "rss_before_steps_mib": round(before, 1), "peak_rss_before_steps_mib": round(peak_before, 1),
                      "peak_rss_mib": round(peak, 1), "peak_source": source, "wall_s": round(time.perf_counter() - t, 2)}))


if __name__ == "__main__":
    sys.exit(main())
