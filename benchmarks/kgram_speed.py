"""2. k-gram MLP training tokens/s: `input: embedding` vs `input: onehot` vs the starter-style implementation."""
from __future__ import annotations

from benchmarks.common import Sizes, interleaved, profile_breakdown
from benchmarks.models import LOSSES, RandomTokens, kgram_cfg, ours, starter, train_step

TITLE = "k-gram MLP training: embedding vs one-hot input vs the starter-style loop"
TARGET = 10.0
REPS_SMALL = 5  # the starter takes seconds per step: the fewest rounds a median is taken of


def _rows(timing: dict, tokens_per_step: int) -> dict:
    return {name: {"tokens_per_s": round(tokens_per_step / t["median_s"], 2),
                   **{k: round(v, 4) for k, v in t.items() if k != "samples_s"}, "samples_s": t["samples_s"]}
            for name, t in timing.items()}


def measure_small(sz: Sizes, data: RandomTokens) -> tuple[dict, dict]:
    """Like for like: ours (both inputs) and the starter at the starter's small batch x seq, interleaved in one
    process: ({variant: its step}, {variant: row})."""
    b, t = sz.starter_batch, sz.starter_seq
    steps = {"embedding": train_step(ours(kgram_cfg(sz, "embedding"), sz, t), LOSSES["ours"],
                                     data.sampler(t, seed=1), b),
             "onehot": train_step(ours(kgram_cfg(sz, "onehot"), sz, t), LOSSES["ours"],
                                  data.sampler(t, seed=1), b),
             "starter": train_step(starter(sz), LOSSES["starter"], data.sampler(t, seed=1), b)}
    # The starter is slow (seconds per step): one warm-up round and the minimum number of measured rounds.
    return steps, _rows(interleaved(steps, warmup=1, reps=REPS_SMALL), b * t)


def starter_at_full_size(sz: Sizes, starter_step, starter_s: float) -> dict:
    """The starter's step at the training benchmark's batch x block, extrapolated from its measured cost (a
    measured step there would take many minutes): its AdamW step (timed alone; its gradients are still there
    from the last step) does not grow with the number of positions, the rest is a loop over positions."""
    opt = interleaved({"starter_adamw": starter_step.optimizer.step}, warmup=1, reps=5)["starter_adamw"]
    per_position = max(starter_s - opt["median_s"], 0.0) / (sz.starter_batch * sz.starter_seq)
    full_s = per_position * sz.batch * sz.block + opt["median_s"]
    return {"adamw": opt, "per_position_s": per_position, "step_s": full_s, "tokens_per_s": sz.batch * sz.block / full_s}


def measure_full(sz: Sizes, data: RandomTokens, starter_full: dict) -> dict:
    """Ours at the training benchmark's batch x block, beside the starter's extrapolated row."""
    steps = {"embedding": train_step(ours(kgram_cfg(sz, "embedding"), sz, sz.block), LOSSES["ours"],
                                     data.sampler(sz.block, seed=1), sz.batch),
             "onehot": train_step(ours(kgram_cfg(sz, "onehot"), sz, sz.block), LOSSES["ours"],
                                  data.sampler(sz.block, seed=1), sz.batch)}
    rows = _rows(interleaved(steps, sz.warmup, sz.reps), sz.batch * sz.block)
    rows["starter_extrapolated"] = {"tokens_per_s": round(starter_full["tokens_per_s"], 2),
                                    "median_s": round(starter_full["step_s"], 1), "extrapolated": True}
    return rows


def notes(sz: Sizes, starter_full: dict, ratios: dict, n_weights: int, share: dict) -> list[str]:
    """What was measured and how, in words."""
    cfg = kgram_cfg(sz, "embedding")
    small_b, small_t, full_tokens = sz.starter_batch, sz.starter_seq, sz.batch * sz.block
    opt_s, per_position = starter_full["adamw"]["median_s"], starter_full["per_position_s"]
    return [
        f"Hyperparameters (config/config.yaml's kgram_mlp): k={cfg['k']}, embed_dim={cfg['embed_dim']}, "
        f"hidden_dim={cfg['hidden_dim']}, num_inner_layers={cfg['num_inner_layers']}, vocab {sz.vocab}; the starter "
        f"model has the same MLP (Linear(k*vocab, {sz.kgram_hidden}) -> SiLU -> inner -> Linear(., vocab)). Every "
        f"variant takes full trainer steps (AdamW from picollm.train.make_optimizer, clip, same cross-entropy).",
        f"The starter-style model (benchmarks/starter_kgram.py: a one-hot k x vocab row built per position and per "
        f"batch row in a Python loop) is measured at batch {small_b} x seq {small_t} = {small_b * small_t} tokens per "
        f"step ({REPS_SMALL} steps after one warm-up), interleaved with ours at the same size. Its AdamW step alone "
        f"takes {opt_s:.2f} s (median of 5); the rest, {per_position:.3f} s per position, is the per-position loop, "
        f"so a {sz.batch} x {sz.block} step is extrapolated as {full_tokens} x {per_position:.3f} + {opt_s:.2f} "
        f"= {starter_full['step_s']:,.0f} s. Ours is measured at {sz.batch} x {sz.block}.",
        f"At the same tiny size ({small_b} x {small_t}) ours is only {ratios['same_size']:.1f}x the starter: a step of "
        f"{small_b * small_t} tokens is mostly AdamW over the ~{n_weights / 1e6:.0f}M "
        f"weights (optimizer {share.get('optimizer', 0):.0%} of ours' profiled step, LM head + loss "
        f"{share.get('lm_head_matmul', 0) + share.get('cross_entropy', 0):.0%}), which a real batch amortises. "
        f"At {sz.batch} x {sz.block}: {ratios['full']:,.0f}x.",
        "One-hot (ours) gathers the k weight columns instead of multiplying a one-hot matrix, so its forward pass is "
        "as cheap as the embedding's, but its first layer has k * vocab * hidden weights for AdamW to update.",
    ]


def table(sz: Sizes, small_rows: dict, full_rows: dict, starter_full_tps: float) -> dict:
    rows = []
    for name, label in (("embedding", "ours, input: embedding"), ("onehot", "ours, input: onehot"),
                        ("starter", "starter-style (one-hot, Python loop)")):
        r = small_rows[name]
        rows.append([label, f"{sz.starter_batch} x {sz.starter_seq}", r["tokens_per_s"], r["median_s"],
                     f"{r['tokens_per_s'] / small_rows['starter']['tokens_per_s']:,.1f}x"])
    for name, label in (("embedding", "ours, input: embedding"), ("onehot", "ours, input: onehot"),
                        ("starter_extrapolated", "starter-style, extrapolated")):
        r = full_rows[name]
        rows.append([label, f"{sz.batch} x {sz.block}", r["tokens_per_s"], r["median_s"],
                     f"{r['tokens_per_s'] / starter_full_tps:,.1f}x"])
    return {"columns": ["implementation", "batch x seq", "tokens/s", "step s (median)", "vs starter"], "rows": rows}


def run(sz: Sizes, peak: dict) -> dict:
    data = RandomTokens(sz.vocab)
    small, small_rows = measure_small(sz, data)
    starter_full = starter_at_full_size(sz, small["starter"], small_rows["starter"]["median_s"])
    full_rows = measure_full(sz, data, starter_full)
    ratios = {"same_size": small_rows["embedding"]["tokens_per_s"] / small_rows["starter"]["tokens_per_s"],
              "full": full_rows["embedding"]["tokens_per_s"] / starter_full["tokens_per_s"]}
    profile = profile_breakdown(small["embedding"], sz.vocab, top=8)  # where ours spends a tiny step
    n_weights = sum(p.numel() for p in small["embedding"].optimizer.param_groups[0]["params"])
    targets = [{"target": f"embedding >= {TARGET:g}x the starter-style implementation at batch {sz.batch} x {sz.block} "
                          f"(starter extrapolated from its measured per-position cost)",
                "value": round(ratios["full"], 1), "met": ratios["full"] >= TARGET}]
    opt = starter_full["adamw"]
    return {"title": TITLE, "results": {"small": small_rows, "full": full_rows},
            "sizes_compared": {"small": [sz.starter_batch, sz.starter_seq], "full": [sz.batch, sz.block]},
            "starter_adamw_s": {k: round(v, 4) if isinstance(v, float) else v for k, v in opt.items()},
            "starter_per_position_s": round(starter_full["per_position_s"], 5),
            "ratio_embedding_vs_starter": {k: round(v, 2) for k, v in ratios.items()},
            "embedding_small_profile": profile, "targets": targets,
            "notes": notes(sz, starter_full, ratios, n_weights, profile["share"]),
            "table": table(sz, small_rows, full_rows, starter_full["tokens_per_s"])}
