"""2. k-gram MLP training tokens/s: `input: embedding` vs `input: onehot` vs the starter-style implementation."""
from __future__ import annotations

from benchmarks.common import Sizes, interleaved, profile_breakdown
from benchmarks.models import LOSSES, RandomTokens, kgram_cfg, ours, starter, train_step

TITLE = "k-gram MLP training: embedding vs one-hot input vs the starter-style loop"
TARGET = 10.0


def _rows(timing: dict, tokens_per_step: int) -> dict:
    return {name: {"tokens_per_s": round(tokens_per_step / t["median_s"], 2),
                   **{k: round(v, 4) for k, v in t.items() if k != "samples_s"}, "samples_s": t["samples_s"]}
            for name, t in timing.items()}


def run(sz: Sizes, peak: dict) -> dict:
    data = RandomTokens(sz.vocab)
    small_b, small_t = sz.starter_batch, sz.starter_seq
    full_tokens = sz.batch * sz.block
    # Like for like: all three at the starter's small batch x seq, interleaved in one process.
    small = {"embedding": train_step(ours(kgram_cfg(sz, "embedding"), sz, small_t), LOSSES["ours"],
                                     data.sampler(small_t, seed=1), small_b),
             "onehot": train_step(ours(kgram_cfg(sz, "onehot"), sz, small_t), LOSSES["ours"],
                                  data.sampler(small_t, seed=1), small_b),
             "starter": train_step(starter(sz), LOSSES["starter"], data.sampler(small_t, seed=1), small_b)}
    # The starter is slow (seconds per step): one warm-up round and the minimum number of measured rounds.
    reps_small = 5
    small_rows = _rows(interleaved(small, warmup=1, reps=reps_small), small_b * small_t)
    # The starter's AdamW step alone (its gradients are still there from the last step): the part of its step
    # that does not grow with the number of positions.
    opt = interleaved({"starter_adamw": small["starter"].optimizer.step}, warmup=1, reps=5)["starter_adamw"]
    starter_step = small_rows["starter"]["median_s"]
    per_position = max(starter_step - opt["median_s"], 0.0) / (small_b * small_t)
    starter_full_s = per_position * full_tokens + opt["median_s"]  # its cost is a loop over positions
    starter_full_tps = full_tokens / starter_full_s
    # Ours at the training benchmark's batch x block (a starter step there would take many minutes).
    full = {"embedding": train_step(ours(kgram_cfg(sz, "embedding"), sz, sz.block), LOSSES["ours"],
                                    data.sampler(sz.block, seed=1), sz.batch),
            "onehot": train_step(ours(kgram_cfg(sz, "onehot"), sz, sz.block), LOSSES["ours"],
                                 data.sampler(sz.block, seed=1), sz.batch)}
    full_rows = _rows(interleaved(full, sz.warmup, sz.reps), full_tokens)
    full_rows["starter_extrapolated"] = {"tokens_per_s": round(starter_full_tps, 2), "median_s": round(starter_full_s, 1),
                                         "extrapolated": True}
    ratio_small = small_rows["embedding"]["tokens_per_s"] / small_rows["starter"]["tokens_per_s"]
    ratio_full = full_rows["embedding"]["tokens_per_s"] / starter_full_tps
    profile = profile_breakdown(small["embedding"], sz.vocab, top=8)  # where ours spends a tiny step
    share = profile["share"]
    targets = [{"target": f"embedding >= {TARGET:g}x the starter-style implementation at batch {sz.batch} x {sz.block} "
                          f"(starter extrapolated from its measured per-position cost)",
                "value": round(ratio_full, 1), "met": ratio_full >= TARGET}]
    cfg = kgram_cfg(sz, "embedding")
    notes = [
        f"Hyperparameters (config/config.yaml's kgram_mlp): k={cfg['k']}, embed_dim={cfg['embed_dim']}, "
        f"hidden_dim={cfg['hidden_dim']}, num_inner_layers={cfg['num_inner_layers']}, vocab {sz.vocab}; the starter "
        f"model has the same MLP (Linear(k*vocab, {sz.kgram_hidden}) -> SiLU -> inner -> Linear(., vocab)). Every "
        f"variant takes full trainer steps (AdamW from picollm.train.make_optimizer, clip, same cross-entropy).",
        f"The starter-style model (benchmarks/starter_kgram.py: a one-hot k x vocab row built per position and per "
        f"batch row in a Python loop) is measured at batch {small_b} x seq {small_t} = {small_b * small_t} tokens per "
        f"step ({reps_small} steps after one warm-up), interleaved with ours at the same size. Its AdamW step alone takes "
        f"{opt['median_s']:.2f} s (median of 5); the rest, {per_position:.3f} s per position, is the per-position loop, "
        f"so a {sz.batch} x {sz.block} step is extrapolated as {full_tokens} x {per_position:.3f} + {opt['median_s']:.2f} "
        f"= {starter_full_s:,.0f} s. Ours is measured at {sz.batch} x {sz.block}.",
        f"At the same tiny size ({small_b} x {small_t}) ours is only {ratio_small:.1f}x the starter: a step of "
        f"{small_b * small_t} tokens is mostly AdamW over the ~{sum(p.numel() for p in small['embedding'].optimizer.param_groups[0]['params']) / 1e6:.0f}M "
        f"weights (optimizer {share.get('optimizer', 0):.0%} of ours' profiled step, LM head + loss "
        f"{share.get('lm_head_matmul', 0) + share.get('cross_entropy', 0):.0%}), which a real batch amortises. "
        f"At {sz.batch} x {sz.block}: {ratio_full:,.0f}x.",
        "One-hot (ours) gathers the k weight columns instead of multiplying a one-hot matrix, so its forward pass is "
        "as cheap as the embedding's, but its first layer has k * vocab * hidden weights for AdamW to update.",
    ]
    table = {"columns": ["implementation", "batch x seq", "tokens/s", "step s (median)", "vs starter"], "rows": []}
    for name, label in (("embedding", "ours, input: embedding"), ("onehot", "ours, input: onehot"),
                        ("starter", "starter-style (one-hot, Python loop)")):
        r = small_rows[name]
        table["rows"].append([label, f"{small_b} x {small_t}", r["tokens_per_s"], r["median_s"],
                              f"{r['tokens_per_s'] / small_rows['starter']['tokens_per_s']:,.1f}x"])
    for name, label in (("embedding", "ours, input: embedding"), ("onehot", "ours, input: onehot"),
                        ("starter_extrapolated", "starter-style, extrapolated")):
        r = full_rows[name]
        table["rows"].append([label, f"{sz.batch} x {sz.block}", r["tokens_per_s"], r["median_s"],
                              f"{r['tokens_per_s'] / starter_full_tps:,.1f}x"])
    return {"title": TITLE, "results": {"small": small_rows, "full": full_rows},
            "sizes_compared": {"small": [small_b, small_t], "full": [sz.batch, sz.block]},
            "starter_adamw_s": {k: round(v, 4) if isinstance(v, float) else v for k, v in opt.items()},
            "starter_per_position_s": round(per_position, 5),
            "ratio_embedding_vs_starter": {"same_size": round(ratio_small, 2), "full": round(ratio_full, 2)},
            "embedding_small_profile": profile, "targets": targets, "notes": notes, "table": table}
