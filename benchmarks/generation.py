"""3. Generation tokens/s: KV cache vs recomputing the context vs HF generate; LSTM state vs recomputing."""
from __future__ import annotations

import torch

from benchmarks.common import Sizes, interleaved, profile_breakdown
from benchmarks.models import hf_gpt2, lstm_cfg, ours, transformer_cfg
from picollm.sampling import generate

TITLE = "Generation: KV cache vs recomputing the context vs HF generate (greedy, batch 1)"
TARGET_VS_UNCACHED, TARGET_VS_HF = 5.0, 1.5
SAMPLES, SAMPLE_P = 4, 0.9  # the batched-sampling comparison: one prompt's samples at one p


@torch.no_grad()
def generate_recompute(model, prompt: torch.Tensor, max_new_tokens: int, block: int) -> torch.Tensor:
    """The loop without any carried state: each new token runs the model over the whole (last block) context."""
    idx = prompt
    for _ in range(max_new_tokens):
        logits = model(idx[:, -block:])  # (1, t, V): every position recomputed, every step
        idx = torch.cat((idx, logits[:, -1, :].argmax(dim=-1, keepdim=True)), dim=1)
    return idx


def measure(sz: Sizes, models: dict, prompt: torch.Tensor) -> tuple[dict, dict, dict]:
    """Every decoding method timed in interleaved rounds: ({method: row}, {method: its output}, {method: its
    timed call})."""
    transformer, hf, lstm = models["transformer"], models["hf"], models["lstm"]
    outputs = {}

    def keep(name, fn):
        def call():
            outputs[name] = fn()
        return call

    def variants_for(n: int) -> dict:
        hf_kwargs = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, use_cache=True, pad_token_id=hf.config.eos_token_id)
        return {
            "transformer_cached": keep("transformer_cached", lambda: generate(transformer, prompt, n)),
            "transformer_recompute": keep("transformer_recompute",
                                          lambda: generate_recompute(transformer, prompt, n, sz.gen_block)),
            "hf_generate_cached": keep("hf_generate_cached", lambda: hf.generate(prompt, **hf_kwargs)),
            "lstm_carried": keep("lstm_carried", lambda: generate(lstm, prompt, n)),
            "lstm_recompute": keep("lstm_recompute", lambda: generate_recompute(lstm, prompt, n, sz.gen_block)),
        }

    # Warm-up: one short run of each (the recompute loops take seconds per full run), then the measured runs.
    interleaved(variants_for(min(8, sz.gen_new)), warmup=1, reps=0)
    variants = variants_for(sz.gen_new)
    timing = interleaved(variants, warmup=0, reps=sz.gen_reps)
    rows = {name: {"tokens_per_s": round(sz.gen_new / t["median_s"], 1),
                   "new_tokens": outputs[name].size(1) - prompt.size(1),
                   **{k: round(v, 4) for k, v in t.items() if k != "samples_s"}, "samples_s": t["samples_s"]}
            for name, t in timing.items()}
    return rows, outputs, variants


def targets(n_new: int, vs_recompute: float, vs_hf: float) -> list[dict]:
    return [
        {"target": f"Transformer with KV cache >= {TARGET_VS_UNCACHED:g}x without it at {n_new} new tokens",
         "value": round(vs_recompute, 2), "met": vs_recompute >= TARGET_VS_UNCACHED},
        {"target": f"Transformer with KV cache >= {TARGET_VS_HF:g}x HF generate(use_cache=True)",
         "value": round(vs_hf, 2), "met": vs_hf >= TARGET_VS_HF},
    ]


def notes(sz: Sizes, same: dict, batching: dict) -> list[str]:
    """What was measured and how, in words."""
    n_new = sz.gen_new
    return [
        f"Greedy decoding of {n_new} new tokens after a {sz.gen_prompt}-token random prompt, batch 1, fp32, random-init "
        f"models. The Transformer (d_model {sz.d_model}, {sz.n_layers} layers, {sz.n_heads} heads, vocab {sz.vocab}) and "
        f"HF GPT2 use block_size = n_positions = {sz.gen_block}, so the prompt plus the new tokens "
        f"({sz.gen_prompt + n_new}) fit without sliding the window (HF cannot slide past n_positions). The LSTM has "
        f"embed {sz.lstm_embed}, hidden {sz.lstm_hidden}, 1 layer. Timing includes the prompt's prefill. Warm-up: one "
        f"{min(8, n_new)}-token run of each; then {sz.gen_reps} interleaved rounds.",
        "cached / carried: picollm.sampling.generate (forward_step carries the KV cache / (h, c)). recompute: a loop "
        "calling model(idx[:, -block:]) on the whole context each step and taking the last position's argmax. "
        "HF: model.generate(input_ids, max_new_tokens=N, min_new_tokens=N, do_sample=False, use_cache=True).",
        f"Greedy outputs identical with and without the cache: {same}. (With random weights the logits are nearly "
        f"flat, so a float-rounding tie can flip an argmax; equality is recorded, not required.)",
        f"Sampling {SAMPLES} samples of one prompt at p = {SAMPLE_P} ({batching['new_tokens']} new tokens "
        f"each, a seed per sample): one generate call per sample {batching['one_by_one']['median_s']:.3f} s, "
        f"one batched call with a seed per row (as the sample stage draws them) "
        f"{batching['batched']['median_s']:.3f} s: {batching['speedup']:.2f}x.",
    ]


def table(rows: dict, ratios: dict) -> dict:
    tps = {name: r["tokens_per_s"] for name, r in rows.items()}
    return {"columns": ["model / method", "tokens/s", "s per run (median)", "speed-up"], "rows": [
        ["Transformer, KV cache (generate)", tps["transformer_cached"], rows["transformer_cached"]["median_s"],
         f"{ratios['cached_vs_recompute']:.1f}x recompute, {ratios['cached_vs_hf']:.2f}x HF"],
        ["Transformer, recompute context", tps["transformer_recompute"], rows["transformer_recompute"]["median_s"], "1.0x"],
        ["HF GPT2 generate(use_cache=True)", tps["hf_generate_cached"], rows["hf_generate_cached"]["median_s"],
         f"{tps['hf_generate_cached'] / tps['transformer_recompute']:.1f}x recompute"],
        ["LSTM, carried (h, c) (generate)", tps["lstm_carried"], rows["lstm_carried"]["median_s"],
         f"{ratios['lstm_carried_vs_recompute']:.1f}x recompute"],
        ["LSTM, recompute context", tps["lstm_recompute"], rows["lstm_recompute"]["median_s"], "1.0x"],
    ]}


def run(sz: Sizes, peak: dict) -> dict:
    prompt = torch.randint(0, sz.vocab, (1, sz.gen_prompt), generator=torch.Generator().manual_seed(0))
    models = {"transformer": ours(transformer_cfg(sz), sz, sz.gen_block).eval(),
              "hf": hf_gpt2(sz, sz.gen_block).eval(), "lstm": ours(lstm_cfg(sz), sz, sz.gen_block).eval()}
    rows, outputs, variants = measure(sz, models, prompt)
    tps = {name: r["tokens_per_s"] for name, r in rows.items()}
    ratios = {"cached_vs_recompute": tps["transformer_cached"] / tps["transformer_recompute"],
              "cached_vs_hf": tps["transformer_cached"] / tps["hf_generate_cached"],
              "lstm_carried_vs_recompute": tps["lstm_carried"] / tps["lstm_recompute"]}
    goals = targets(sz.gen_new, ratios["cached_vs_recompute"], ratios["cached_vs_hf"])
    batching = sample_batching(models["transformer"], prompt, min(64, sz.gen_new), sz)
    same = {"transformer cached == recompute": torch.equal(outputs["transformer_cached"], outputs["transformer_recompute"]),
            "lstm carried == recompute": torch.equal(outputs["lstm_carried"], outputs["lstm_recompute"])}
    profile = None
    if not all(t["met"] for t in goals):
        profile = profile_breakdown(variants["transformer_cached"], sz.vocab)
    return {"title": TITLE, "results": rows, "ratios": {name: round(r, 2) for name, r in ratios.items()},
            "identical_outputs": same, "sample_batching": batching, "cached_profile": profile, "targets": goals,
            "notes": notes(sz, same, batching), "table": table(rows, ratios),
            "headline": f"generation: ours {ratios['cached_vs_hf']:.2f}x HF generate (greedy, batch 1, KV cache, "
                        f"fp32); {SAMPLES} nucleus samples batched {batching['speedup']:.2f}x one by one"}


def sample_batching(model, prompt: torch.Tensor, n_new: int, sz: Sizes) -> dict:
    """One prompt's SAMPLES nucleus samples: a generate call per sample against one call with a seed per row."""
    seeds = list(range(SAMPLES))
    timing = interleaved({
        "one_by_one": lambda: [generate(model, prompt[0], n_new, p=SAMPLE_P, seed=s) for s in seeds],
        "batched": lambda: generate(model, prompt.expand(SAMPLES, -1), n_new, p=SAMPLE_P, seed=seeds),
    }, warmup=1, reps=sz.gen_reps)
    return {"samples": SAMPLES, "p": SAMPLE_P, "new_tokens": n_new,
            **{name: {k: round(v, 4) for k, v in t.items() if k != "samples_s"} for name, t in timing.items()},
            "speedup": round(timing["one_by_one"]["median_s"] / timing["batched"]["median_s"], 3)}
