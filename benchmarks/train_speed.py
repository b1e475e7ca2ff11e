"""1. Training tokens/s and MFU: our Transformer vs transformers.GPT2LMHeadModel of the same sizes."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.common import (FLOPS_FORMULA, Sizes, interleaved, matmul_params, profile_breakdown,
                               train_flops_per_token)
from benchmarks.models import LOSSES, RandomTokens, hf_gpt2, ours, train_step, transformer_cfg
from picollm.fused_head import HeadPlan
from picollm.head_plan import plan_record
from picollm.loss import linear_cross_entropy

TITLE = "Training throughput: our Transformer vs Hugging Face GPT2LMHeadModel"
TARGET_RATIO, TARGET_MFU, TARGET_HEAD = 1.5, 0.75, 1.0


def head_loss(sz: Sizes) -> dict:
    """The LM head + loss alone, forward and backward, at the training step's N = batch x block rows: the fused
    path in this machine's plan (picollm.head_plan, measured once and cached), in torch's matmuls alone, and plain
    autograd F.cross_entropy(F.linear(h, W), y), interleaved."""
    n, gen = sz.batch * sz.block, torch.Generator().manual_seed(0)
    h = torch.randn(n, sz.d_model, generator=gen).requires_grad_()
    w = (torch.randn(sz.vocab, sz.d_model, generator=gen) * 0.02).requires_grad_()
    y = torch.randint(0, sz.vocab, (n,), generator=gen)
    record = plan_record(sz.vocab, sz.d_model, torch.device("cpu"))
    plan = HeadPlan(**record["plan"])

    def run(loss_fn):
        def call():
            h.grad = w.grad = None
            loss_fn().backward()
        return call

    timing = interleaved({
        "fused": run(lambda: linear_cross_entropy(h, w, None, y, plan)),
        "fused_torch_matmuls": run(lambda: linear_cross_entropy(h, w, None, y, HeadPlan(plan.chunk))),
        "plain": run(lambda: F.cross_entropy(F.linear(h, w), y)),
    }, sz.warmup, sz.reps)
    return {"rows": n, "plan": record["plan"], "plan_source": record["source"],
            "plan_timings_ms": record.get("timings_ms"),
            **{name: {k: round(v, 4) for k, v in t.items() if k != "samples_s"} for name, t in timing.items()},
            "fused_vs_plain": round(timing["plain"]["median_s"] / timing["fused"]["median_s"], 3)}


def measure(sz: Sizes, peak: dict) -> tuple[dict, dict, dict]:
    """Both models' training steps, timed in the same interleaved rounds as an n x n fp32 matmul: ({model: row},
    {model: its step}, the peak {n, in_rounds, used} in GFLOP/s). The matmul shares the rounds so that MFU's
    numerator and denominator see the same machine (on a shared machine, other load moves both); the better of
    it and the run's standalone peak is used."""
    data = RandomTokens(sz.vocab)
    models = {"ours": ours(transformer_cfg(sz), sz, sz.block), "hf": hf_gpt2(sz, sz.block)}
    steps = {name: train_step(m, LOSSES[name], data.sampler(sz.block, seed=1), sz.batch) for name, m in models.items()}
    n = max(sz.peak_sizes)
    a, b = torch.randn(n, n), torch.randn(n, n)
    timing = interleaved({**steps, "matmul": lambda: torch.mm(a, b)}, sz.warmup, sz.reps)
    in_rounds = 2 * n ** 3 / timing.pop("matmul")["median_s"] / 1e9
    used = max(peak["peak_gflops"], in_rounds)
    tokens_per_step = sz.batch * sz.block
    rows = {}
    for name, model in models.items():
        n_matmul = matmul_params(model, sz.d_model, sz.vocab)
        flops = train_flops_per_token(n_matmul, sz.n_layers, sz.d_model, sz.block)
        tps = tokens_per_step / timing[name]["median_s"]
        rows[name] = {"params": sum(p.numel() for p in model.parameters()), "matmul_params": n_matmul,
                      "flops_per_token": flops, "tokens_per_s": round(tps, 1),
                      "achieved_gflops": round(tps * flops / 1e9, 1), "mfu": round(tps * flops / 1e9 / used, 3),
                      **{k: round(v, 4) for k, v in timing[name].items() if k != "samples_s"},
                      "samples_s": timing[name]["samples_s"]}
    return rows, steps, {"n": n, "in_rounds": in_rounds, "used": used}


def matmul_speed(sz: Sizes, self_ms: dict, n_matmul: int, peak_gflops: float) -> dict:
    """How fast the step's own matmuls run (from the profile's self times): the bound on MFU if nothing else
    took time."""
    tokens_per_step = sz.batch * sz.block
    head_gflop = 3 * 2 * tokens_per_step * sz.d_model * sz.vocab / 1e9  # forward, grad input, grad weight
    all_mm_gflop = 6 * n_matmul * tokens_per_step / 1e9
    mm_ms = self_ms.get("lm_head_matmul", 0.0) + self_ms.get("other_matmul", 0.0)
    return {
        "head_matmul_gflops": round(head_gflop / max(self_ms.get("lm_head_matmul", 0.0), 1e-9) * 1e3, 1),
        "all_matmul_gflops": round(all_mm_gflop / max(mm_ms, 1e-9) * 1e3, 1),
        "mfu_bound_matmuls_only": round(all_mm_gflop / max(mm_ms, 1e-9) * 1e3 / peak_gflops, 3),
    }


def targets(ratio: float, mfu: float, head: dict) -> list[dict]:
    return [
        {"target": f"our tokens/s >= {TARGET_RATIO}x HF's", "value": round(ratio, 2), "met": ratio >= TARGET_RATIO},
        {"target": f"our MFU >= {TARGET_MFU:.0%}", "value": mfu, "display": f"{mfu:.0%}", "met": mfu >= TARGET_MFU},
        {"target": f"fused head + loss >= {TARGET_HEAD:g}x plain autograd's speed", "value": head["fused_vs_plain"],
         "met": head["fused_vs_plain"] >= TARGET_HEAD},
    ]


def notes(sz: Sizes, peak: dict, standalone_gflops: float, head: dict, share: dict) -> list[str]:
    """What was measured and how, in words."""
    return [
        f"Both models: batch {sz.batch} x block {sz.block}, vocab {sz.vocab}, d_model {sz.d_model}, {sz.n_layers} layers, "
        f"{sz.n_heads} heads, fp32, random init, the same AdamW (picollm.optim.make_optimizer, config/config.yaml's "
        f"train settings), the same cross-entropy and clip_grad_norm_, batches from a memory-mapped token file "
        f"(WindowSampler). HF is GPT2LMHeadModel(GPT2Config(...), attn_implementation='sdpa'), called with "
        f"use_cache=False; ours is build_model({transformer_cfg(sz)}) and picollm.loss.lm_loss.",
        FLOPS_FORMULA,
        f"Peak: an fp32 {peak['n']} x {peak['n']} torch.mm timed in the same interleaved rounds as the two models "
        f"({peak['in_rounds']:,.0f} GFLOP/s), and before the benchmark ({standalone_gflops:,.0f} GFLOP/s); MFU uses "
        f"the larger, {peak['used']:,.0f} GFLOP/s.",
        f"Head + loss alone (N = {head['rows']}, V = {sz.vocab}, H = {sz.d_model}, forward and backward, median of "
        f"{sz.reps} interleaved): fused in this machine's plan {head['fused']['median_s']:.3f} s, fused with torch's "
        f"matmuls alone {head['fused_torch_matmuls']['median_s']:.3f} s, plain autograd F.cross_entropy(F.linear(h, W), y) "
        f"{head['plain']['median_s']:.3f} s. The plan (picollm.head_plan: {head['plan']}, {head['plan_source']}) "
        f"was chosen by timing each chunk size and each matmul library (torch's BLAS, oneDNN) once on this machine.",
        f"Profile of one step of ours (self CPU time): LM head matmuls {share.get('lm_head_matmul', 0):.0%}, "
        f"cross-entropy (softmax or log-softmax, NLL and their backward) "
        f"{share.get('cross_entropy', 0):.0%}, other matmuls {share.get('other_matmul', 0):.0%}, attention "
        f"{share.get('attention', 0):.0%}, AdamW {share.get('optimizer', 0):.0%}, everything else {share.get('other', 0):.0%}.",
    ]


def mfu_missed_note(sz: Sizes, speed: dict, head: dict, share: dict) -> str:
    """Why the step's MFU stays below the target: how fast its matmuls alone run, and the head's share."""
    head_share = share.get("lm_head_matmul", 0.0) + share.get("cross_entropy", 0.0)
    return (f"MFU target missed. In the profiled step the matmuls themselves run at "
            f"{speed['all_matmul_gflops']:,.0f} GFLOP/s (the LM head's at {speed['head_matmul_gflops']:,.0f}), "
            f"{speed['mfu_bound_matmuls_only']:.0%} of the peak: the MFU this step would reach if everything "
            f"that is not a matmul took no time at all. {head_share:.0%} of the step is the vocabulary projection and its cross-entropy. "
            f"Ours runs them fused over chunks of {head['plan']['chunk']} rows (picollm.loss.linear_cross_entropy: no "
            f"{sz.batch * sz.block} x {sz.vocab} tensor exists), but the head's matmuls still run below the square-matrix "
            f"peak (their inner dimension, d_model = {sz.d_model}, is short), and each chunk's softmax is a memory-bound "
            f"pass that does no matmul FLOPs.")


def table(rows: dict) -> dict:
    return {
        "columns": ["model", "params", "tokens/s", "step s (median)", "GFLOP/s", "MFU", "vs HF"],
        "rows": [[label, rows[n]["params"], rows[n]["tokens_per_s"], rows[n]["median_s"], rows[n]["achieved_gflops"],
                  f"{rows[n]['mfu']:.0%}", f"{rows[n]['tokens_per_s'] / rows['hf']['tokens_per_s']:.2f}x"]
                 for n, label in (("ours", "ours (picollm Transformer)"), ("hf", "HF GPT2LMHeadModel (sdpa)"))],
    }


def run(sz: Sizes, peak: dict) -> dict:
    rows, steps, peaks = measure(sz, peak)
    ratio = rows["ours"]["tokens_per_s"] / rows["hf"]["tokens_per_s"]
    profiles = {name: profile_breakdown(steps[name], sz.vocab) for name in steps}
    head = head_loss(sz)
    share = profiles["ours"]["share"]
    speed = matmul_speed(sz, profiles["ours"]["self_ms"], rows["ours"]["matmul_params"], peaks["used"])
    goals = targets(ratio, rows["ours"]["mfu"], head)
    words = notes(sz, peaks, peak["peak_gflops"], head, share)
    if not goals[1]["met"]:
        words.append(mfu_missed_note(sz, speed, head, share))
    headline = (f"training: ours {ratio:.2f}x HF tokens/s; head + loss fused {head['fused_vs_plain']:.2f}x plain "
                f"autograd (plan {head['plan']})")
    return {"title": TITLE, "results": rows, "ratio_vs_hf": round(ratio, 3), "peak_gflops": round(peaks["used"], 1),
            "head_loss": head, "headline": headline,
            "matmul_speed_in_step": speed,
            "peak_in_rounds_gflops": round(peaks["in_rounds"], 1), "peak_standalone_gflops": peak["peak_gflops"],
            "flops_formula": FLOPS_FORMULA, "profiles": profiles,
            "targets": goals, "notes": words, "table": table(rows)}
