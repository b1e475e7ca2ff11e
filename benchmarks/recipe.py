"""The default Transformer recipe against a plain nanoGPT-style GPT at a fixed number of steps, with the
differences between the two taken one at a time, each over several seeds.

Every row trains d_model 128, 4 layers, 4 heads, block 128, batch 16, peak lr 2e-3 for 650 steps on the local
TinyStories train head with GPT-2 BPE, then scores the whole validation head. "pico defaults" is the schema's
Transformer and train defaults; "nanoGPT-style" is the same trainer with GPT-2's network (LayerNorm with
biases, biased Linear layers, tanh GELU, learned positions, tied head: transformers' GPT2LMHeadModel exactly,
tests/test_models.py) and nanoGPT's AdamW betas (0.9, 0.95); "GPT-2 network" is that network with pico's
betas. The other rows change one thing each on top of pico's defaults ("+ silu": the SiLU MLP that was the
default before GELU). Rows are paired by seed with "pico defaults" (the same seed draws the same batches), so
the table gives each change's paired difference and its 95% Student-t interval.

The runs use the compact output layer (compact_vocab: the head scores the ids seen in training plus one
row shared by the unseen ids; losses stay full-vocabulary nats) so that a seed costs minutes: every row has the same head,
so the network and optimizer differences compare as they would at the full vocabulary.
`--full-vocab` scores and trains over all 50,257 ids instead.

Each finished (recipe, seed) is kept in <out>/recipe-runs/ under a name that holds its configs' hash, so a
rerun (more seeds, another row, after an interruption) trains only what is not there yet.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.budget import SHARED, prepare_gpt2, token_folder
from benchmarks.common import Sizes, run_child, skipped

TITLE = "Fixed steps: the default Transformer recipe against a nanoGPT-style GPT, one difference at a time"
MODEL = {"type": "transformer", "d_model": 128, "n_heads": 4, "n_layers": 4}
# fp32 everywhere: losses at a fixed number of steps then compare across machines, bf16-capable or not.
TRAIN = {"max_steps": 650, "batch_size": 16, "lr": 2e-3, "precision": "fp32"}
GPT2_NETWORK = {"norm": "layernorm", "bias": True, "mlp": "gelu"}
NANOGPT_BETAS = {"beta2": 0.95}
BASELINE = "pico defaults"
# name -> (model changes, train changes) on top of MODEL / TRAIN and the schema defaults
RECIPES = {
    BASELINE: ({}, {}),
    "nanoGPT-style": (GPT2_NETWORK, NANOGPT_BETAS),
    "GPT-2 network": (GPT2_NETWORK, {}),
    "+ beta2 0.95": ({}, NANOGPT_BETAS),
    "+ layernorm": ({"norm": "layernorm"}, {}),
    "+ bias": ({"bias": True}, {}),
    "+ silu": ({"mlp": "silu"}, {}),
    "+ rope": ({"pos_encoding": "rope"}, {}),
    "+ muon": ({}, {"optimizer": "muon"}),
}


def recipe_configs(name: str, quick: bool) -> tuple[dict, dict]:
    model_change, train_change = RECIPES[name]
    train = {**TRAIN, "eval_interval": 10 ** 9, "eval_batches": 1, "checkpoint_interval": 10 ** 9,
             "log_interval": 10 ** 9, **train_change}
    if quick:
        train |= {"max_steps": 20, "warmup_steps": 5}
    return {**MODEL, **model_change}, train


def loss_by_target(model_path: Path, tokens_dir: Path) -> dict:
    """The validation loss split by whether the target token occurs in the training split: a full-vocabulary
    model's loss on the ids it never saw in training says how it spends its mass on them, the rest how well it
    models the text it learnt from. Non-overlapping windows of block_size over the whole validation split."""
    import numpy as np
    import torch

    from picollm.data.tokens import load_tokens, read_meta
    from picollm.evaluate import HEAD_CHUNK, token_losses
    from picollm.models import load_model
    meta = read_meta(tokens_dir / "meta.json")
    val = np.asarray(load_tokens(tokens_dir / "val.bin", meta), dtype=np.int64)
    model = load_model(model_path)
    seen = np.zeros(meta.vocab_size, bool)
    seen[meta.train_vocab] = True
    n = (len(val) - 1) // model.block_size
    x = torch.from_numpy(val[:n * model.block_size]).view(n, -1)
    y = torch.from_numpy(val[1:n * model.block_size + 1]).view(n, -1)
    with torch.no_grad():
        losses = torch.cat([token_losses(model, x[i:i + 32], y[i:i + 32], HEAD_CHUNK["cpu"]).flatten()
                            for i in range(0, n, 32)]).numpy()
    unseen = ~seen[y.flatten().numpy()]
    return {"seen_loss": float(losses[~unseen].mean()), "unseen_loss": float(losses[unseen].mean()),
            "unseen_share": float(unseen.mean())}


def one_run(spec: dict) -> dict:
    """Train and score one (recipe, seed) in this process (the child side of `child`)."""
    import torch

    from picollm.evaluate import evaluate_model
    from picollm.train import train
    torch.set_num_threads(spec["threads"])
    model_cfg, train_cfg = recipe_configs(spec["recipe"], spec["quick"])
    out, data = Path(spec["out"]), Path(spec["data"])
    summary = train("m", model_cfg, train_cfg, tokens_dir=data, out_dir=out, seed=spec["seed"],
                    block_size=128, device="cpu", compact_vocab=not spec["full_vocab"])
    result, _ = evaluate_model("m", out / "model.pt", data)
    return {"val_loss": result["val_loss"], "bpb": result["bpb"], "params": result["params"],
            "train_wall_s": summary["wall_s"], "output_vocab": summary["output_vocab"],
            **loss_by_target(out / "model.pt", data)}


def run_key(spec: dict) -> str:
    """File name of one (recipe, seed)'s result: what it trains and scores, and the code that does it, hashed
    (an edit to the trainer, the model, the evaluation or a schema default makes the earlier results stale)."""
    from picollm.codehash import code_hash
    from picollm.config import TrainConfig, model_config
    from picollm.model_types import model_type
    model_cfg, train_cfg = recipe_configs(spec["recipe"], spec["quick"])
    # with the defaults filled in: a changed default makes "pico defaults" stale too
    configs = [model_config(model_cfg).model_dump(), TrainConfig(**train_cfg).model_dump()]
    code = code_hash("picollm.train", "picollm.evaluate", *model_type("transformer").modules)
    digest = hashlib.sha256(json.dumps([configs, spec["seed"], spec["full_vocab"], code], sort_keys=True).encode())
    return f"{spec['recipe'].replace(' ', '_').replace('+_', '')}-seed{spec['seed']}-{digest.hexdigest()[:10]}.json"


def cached_child(spec: dict, cache: Path) -> dict:
    path = cache / run_key(spec)
    if path.exists():
        return json.loads(path.read_text())
    result = child(spec)
    path.write_text(json.dumps(result))
    return result


def child(spec: dict) -> dict:
    return run_child("benchmarks.recipe", spec, f"{spec['recipe']} seed {spec['seed']}")


def run(sz: Sizes, peak: dict) -> dict:
    if not (SHARED / "TinyStories-train-head.txt").is_file():
        return skipped(TITLE, f"no {SHARED}")
    names = sz.recipes or list(RECIPES)
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        raise ValueError(f"unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}")
    seeds = [sz.first_seed + i for i in range(1 if sz.quick else sz.recipe_seeds)]
    runs: dict[str, dict[int, dict]] = {name: {} for name in names}
    cache = Path(sz.out) / "recipe-runs"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        prepare_gpt2(data, sz.quick, sz.threads)
        # One thread per run, sz.threads runs at a time: a model this small gains little from a second thread.
        specs = [{"recipe": n, "seed": s, "data": str(data / token_folder("gpt2")), "quick": sz.quick,
                  "out": str(Path(tmp) / f"{n.replace(' ', '_')}-{s}"), "threads": 1, "full_vocab": sz.full_vocab}
                 for s in seeds for n in names]
        with ThreadPoolExecutor(max_workers=sz.threads) as pool:
            for spec, result in zip(specs, pool.map(lambda spec: cached_child(spec, cache), specs)):
                runs[spec["recipe"]][spec["seed"]] = result
                print(f"  recipe: {spec['recipe']} seed {spec['seed']}: val loss {result['val_loss']:.4f}", flush=True)
    return report(runs, seeds, sz)


def mean_ci(t: dict) -> str:
    return f"{t['mean']:.4f}" if t["n"] < 2 else f"{t['mean']:.4f} ± {t['ci_high'] - t['mean']:.4f}"


def paired_text(d: dict | None) -> str:
    return "" if d is None else f"{d['mean_diff']:+.4f} ({d['ci_low']:+.4f}..{d['ci_high']:+.4f})"


def report(runs: dict, seeds: list[int], sz: Sizes) -> dict:
    from picollm.stats import paired_difference, t_interval
    rows, results = [], {}
    base = runs.get(BASELINE)

    def versus_base(name, by_seed, key):
        if base is None or name == BASELINE:
            return None
        return paired_difference({s: r[key] for s, r in by_seed.items()}, {s: r[key] for s, r in base.items()})

    for name, by_seed in runs.items():
        stats = {key: t_interval(r[key] for r in by_seed.values()) for key in ("val_loss", "bpb", "seen_loss")}
        diff, seen_diff = versus_base(name, by_seed, "val_loss"), versus_base(name, by_seed, "seen_loss")
        results[name] = {"seeds": by_seed, **stats, "vs_baseline": diff, "seen_vs_baseline": seen_diff}
        verdict = "" if diff is None else diff["verdict"].replace("a better", "better").replace("b better", "worse")
        rows.append([name, stats["val_loss"]["n"], mean_ci(stats["val_loss"]), f"{stats['bpb']['mean']:.4f}",
                     paired_text(diff), verdict, mean_ci(stats["seen_loss"]), paired_text(seen_diff)])
    some = next(iter(next(iter(runs.values())).values()))
    notes = [f"d_model {MODEL['d_model']}, {MODEL['n_layers']} layers, {MODEL['n_heads']} heads, block 128, batch "
             f"{TRAIN['batch_size']}, peak lr {TRAIN['lr']}, {TRAIN['max_steps'] if not sz.quick else 20} steps, "
             f"seeds {seeds}, {sz.threads} runs at a time on 1 thread each.",
             "val loss: nats per GPT-2 token on the whole validation head, mean ± the half-width of the 95% "
             "Student-t interval over seeds; vs pico defaults: the paired-by-seed difference (negative: lower loss) "
             "and its 95% interval.",
             f"seen-target loss: the validation loss on the tokens whose id occurs in the training split; the other "
             f"{some['unseen_share']:.2%} of the validation tokens are ids training never showed.",
             f"Output layer: {'the full 50,257-token vocabulary' if sz.full_vocab else 'compact (ids seen in training + other)'}."]
    targets = []
    if base is not None and "nanoGPT-style" in runs:
        d = results["nanoGPT-style"]["vs_baseline"]
        targets.append({"target": "pico defaults do not lose to nanoGPT-style (the paired interval of nanoGPT-style - "
                                  "pico does not lie wholly below 0)", "value": d["mean_diff"],
                        "met": not d["ci_high"] < 0, "display": paired_text(d)})
    return {"title": TITLE, "results": results, "targets": targets, "notes": notes,
            "table": {"columns": ["recipe", "seeds", "val loss (nats/token)", "bpb", "vs pico defaults", "verdict",
                                  "seen-target loss", "seen: vs pico defaults"], "rows": rows}}


if __name__ == "__main__":
    print(json.dumps(one_run(json.loads(sys.argv[1])), default=str))
