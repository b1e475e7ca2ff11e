"""The one trainer for every model: packed windows, next-token cross-entropy, AdamW, warm-up + cosine
schedule, gradient clipping, periodic validation, rolling checkpoints and exact resume.

Outputs in models/<name>/: model.pt (written only at the end), metrics.csv, summary.json; the rolling
checkpoint last.pt is not a Snakemake output, so it survives a failed or killed job and the rerun resumes.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from picollm.data.tokens import WindowSampler, eval_windows, load_tokens, read_meta
from picollm.device import resolve_device
from picollm.errors import PicoError
from picollm.io import atomic_path, write_json
from picollm.models import CompactVocab, build_model, checkpoint_dict, count_parameters, output_vocab_size

METRIC_COLUMNS = ["step", "tokens_seen", "train_loss", "val_loss", "lr", "grad_norm", "act_rms", "elapsed_s"]
WALL_CLOCK_COLUMNS = ["elapsed_s"]


def lr_at(step: int, cfg: dict) -> float:
    """Linear warm-up to cfg['lr'], then cosine decay to lr * min_lr_ratio at max_steps."""
    peak, floor = cfg["lr"], cfg["lr"] * cfg["min_lr_ratio"]
    if step < cfg["warmup_steps"]:
        return peak * (step + 1) / cfg["warmup_steps"]
    progress = (step - cfg["warmup_steps"]) / max(1, cfg["max_steps"] - cfg["warmup_steps"])
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: dict, device: torch.device,
                   fused: bool | None = None) -> torch.optim.AdamW:
    # Decay matrices and embeddings (dim >= 2), not biases and norm gains: the nanoGPT convention.
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    # fused: one kernel for the whole update; on CPU too since torch 2.4 (+4-6% of a step here, same numbers).
    # `fused=False` is for benchmarks.proposals, which measures that gain.
    if fused is None:
        fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), fused=fused)


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, stats: dict | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy in nats over the full vocabulary.

    The LM head and the loss run fused (linear_cross_entropy), so the (B, T, V) logits are never built.
    `stats`, if given, receives the RMS of the features entering the head ("rms"): one number per step that
    shows exploding or vanishing activations, for every model type alike.
    """
    if not hasattr(model, "features"):  # any other module mapping ids to logits
        logits = model(x)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
    h = model.features(x)  # (B, T, H): everything before the head
    if stats is not None:
        stats["rms"] = h.detach().float().pow(2).mean().sqrt()
    if isinstance(model, CompactVocab):  # its head is over the compact vocabulary: no full-vocabulary logits
        return model.loss_from_features(h, y)
    return linear_cross_entropy(h.reshape(-1, h.size(-1)), model.head.weight, model.head.bias, y.reshape(-1))


class _LinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(h_i W^T + b, y_i), chunk by chunk of rows, with the gradients computed in the forward pass.

    Each chunk's softmax is turned in place into the logits' gradient (softmax - one_hot(y)) / N and multiplied
    straight into grad h and (accumulating in place) grad W, so no (N, V) tensor, no log-softmax output and no
    zero-filled (N, V) gradient ever exist: on GPT-2's vocabulary that is ~25% of a CPU step and two of the
    three (N, V) fp32 tensors that set a step's peak memory (benchmarks/proposals.py measures it).
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk, with_grad):
        n = h.size(0)
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty(h.shape, dtype=weight.dtype, device=h.device) if with_grad else None
        grad_w = torch.zeros_like(weight) if with_grad else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if with_grad and bias is not None else None
        for s in range(0, n, chunk):
            hc, yc = h[s:s + chunk], targets[s:s + chunk]
            logits = F.linear(hc, weight, bias).float()  # (c, V)
            lse = torch.logsumexp(logits, dim=-1)  # (c,)
            loss += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum()
            if with_grad:
                grad = logits.sub_((lse + math.log(n))[:, None]).exp_()  # softmax / n, in place: (c, V)
                grad[torch.arange(yc.numel(), device=h.device), yc] -= 1.0 / n
                grad = grad.to(weight.dtype)
                torch.mm(grad, weight, out=grad_h[s:s + chunk])
                grad_w.addmm_(grad.t(), hc.to(weight.dtype))  # in place: no (V, H) temporary per chunk
                if grad_b is not None:
                    grad_b += grad.float().sum(0)
        if with_grad:
            ctx.save_for_backward(grad_h.to(h.dtype), grad_w, None if grad_b is None else grad_b.to(bias.dtype))
        return loss / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        return (grad_h * grad_out, grad_w * grad_out, None if grad_b is None else grad_b * grad_out,
                None, None, None)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias, targets: torch.Tensor,
                         chunk: int = 128) -> torch.Tensor:
    """F.cross_entropy(F.linear(h, weight, bias).float(), targets) for h (N, H), without the (N, V) logits.

    128 rows per chunk (26 MB of fp32 logits at V = 50257) was the fastest of 32 .. 2048 on the 2-core CPU.
    """
    with_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _LinearCrossEntropy.apply(h, weight, bias, targets, chunk, with_grad)


@torch.no_grad()
def validation_loss(model, tokens: np.ndarray, block_size: int, batch_size: int, device, max_windows=None,
                    autocast=None) -> float:
    """Mean next-token loss over fixed, non-overlapping windows of a split (the same windows every call)."""
    was_training = model.training
    model.eval()
    starts = eval_windows(len(tokens), block_size, max_windows)
    total, count = 0.0, 0
    for i in range(0, len(starts), batch_size):
        rows = starts[i:i + batch_size, None] + np.arange(block_size + 1)
        window = torch.from_numpy(tokens[rows].astype(np.int64)).to(device)
        with autocast or torch.autocast(device.type, enabled=False):
            loss = lm_loss(model, window[:, :-1], window[:, 1:])
        total += loss.item() * window.size(0)
        count += window.size(0)
    model.train(was_training)
    return total / count


def fingerprint(*parts) -> str:
    """What a checkpoint must match to be resumed: configs, seed, data (a rerun after an edit starts over)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class StopRequested:
    """SIGTERM (SLURM time limit, Snakemake) or SIGINT (Ctrl-C): finish the step, checkpoint, then exit."""

    def __init__(self):
        self.signum = None
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, frame):
        self.signum = signum

    def restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def train(name: str, model_cfg: dict, train_cfg: dict, *, tokens_dir, out_dir, seed: int, block_size: int,
          device: str = "cpu", weights: dict | None = None, compact_vocab: bool = False,
          provenance: dict | None = None) -> dict:
    tokens_dir, out_dir = Path(tokens_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = read_meta(tokens_dir / "meta.json")
    train_tokens = load_tokens(tokens_dir / "train.bin", meta)
    val_tokens = load_tokens(tokens_dir / "val.bin", meta)
    if len(val_tokens) < block_size + 1:
        raise PicoError(f"the validation split has {len(val_tokens)} tokens, fewer than block_size + 1 = "
                        f"{block_size + 1}; add validation text or lower block_size")
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # bf16 autocast on GPUs only: on this CPU bf16 matmuls are 40-350x slower than fp32
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else None

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    compact_ids = meta["train_vocab"] if compact_vocab else None
    model = build_model(model_cfg, meta["vocab_size"], block_size, compact_ids).to(dev)
    optimizer = make_optimizer(model, train_cfg, dev)
    sources = meta["splits"]["train"]["sources"]
    sampler = WindowSampler(train_tokens, sources, weights or {n: 1.0 for n in sources}, block_size, seed)

    ckpt_path = out_dir / "last.pt"
    run_id = fingerprint(model_cfg, train_cfg, seed, block_size, meta["raw_sha256"], meta["tokenizer"], compact_vocab)
    activations = {"rms": torch.tensor(float("nan"))}  # lm_loss writes the head input's RMS here
    step, rows, elapsed_before, window_losses, grad_norm, act_rms = 0, [], 0.0, [], float("nan"), float("nan")
    if ckpt_path.exists():
        step, rows, elapsed_before, window_losses, (grad_norm, act_rms) = _resume(ckpt_path, run_id, model,
                                                                                  optimizer, sampler)

    def save_checkpoint():
        state = {"run_id": run_id, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "sampler": sampler.generator.get_state(), "rng": rng_states(), "rows": rows,
                 "window_losses": window_losses, "last_norms": (grad_norm, act_rms),
                 "elapsed_s": elapsed_before + time.perf_counter() - t0}
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    tokens_per_step = train_cfg["batch_size"] * block_size
    eval_args = dict(block_size=block_size, batch_size=train_cfg["batch_size"], device=dev,
                     max_windows=train_cfg["eval_batches"] * train_cfg["batch_size"], autocast=autocast)
    max_steps, clip = train_cfg["max_steps"], train_cfg["grad_clip"] or float("inf")
    stop = StopRequested()
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=max_steps, initial=step, desc=f"train {name}", unit="step", mininterval=5)
    try:
        while True:
            log_now = step % train_cfg["log_interval"] == 0 or step == max_steps
            eval_now = step % train_cfg["eval_interval"] == 0 or step == max_steps
            if (log_now or eval_now) and not (rows and rows[-1]["step"] == step):
                rows.append({
                    "step": step, "tokens_seen": step * tokens_per_step,
                    "train_loss": float(np.mean(window_losses)) if window_losses else float("nan"),
                    "val_loss": validation_loss(model, val_tokens, **eval_args) if eval_now else float("nan"),
                    "lr": lr_at(max(step - 1, 0), train_cfg), "grad_norm": grad_norm, "act_rms": act_rms,
                    "elapsed_s": round(elapsed_before + time.perf_counter() - t0, 3)})
                window_losses = []
            if step == max_steps:
                break
            if stop.signum is not None:
                save_checkpoint()
                raise SystemExit(128 + stop.signum)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, train_cfg)
            x, y = (t.to(dev, non_blocking=True) for t in sampler.batch(train_cfg["batch_size"]))
            with autocast or torch.autocast(dev.type, enabled=False):
                loss = lm_loss(model, x, y, stats=activations)
            if not torch.isfinite(loss):
                raise PicoError(f"training {name} hit a {loss.item()} loss at step {step + 1}; the last good "
                                f"checkpoint is kept in {ckpt_path if ckpt_path.exists() else 'no checkpoint yet'}; "
                                f"lower train.lr or set train.grad_clip")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item()
            act_rms = activations["rms"].item()
            optimizer.step()
            step += 1
            window_losses.append(loss.item())
            bar.update(1)
            tok_s = (bar.n - bar.initial) * tokens_per_step / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tok_s:.0f}", refresh=False)
            if step % train_cfg["checkpoint_interval"] == 0 and step < max_steps:
                save_checkpoint()
    finally:
        bar.close()
        stop.restore()

    wall = elapsed_before + time.perf_counter() - t0
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    with atomic_path(out_dir / "metrics.csv") as tmp:
        metrics.to_csv(tmp, index=False)
    last_val = metrics["val_loss"].dropna()
    last_train = metrics["train_loss"].dropna()
    summary = {"model": name, "type": model_cfg["type"], **count_parameters(model), "steps": step,
               "output_vocab": output_vocab_size(model),
               "tokens_seen": step * tokens_per_step, "wall_s": round(wall, 2),
               "tokens_per_s": round(step * tokens_per_step / wall, 1) if wall > 0 else None,
               "device": str(dev), "final_train_loss": float(last_train.iloc[-1]) if len(last_train) else None,
               "final_val_loss": float(last_val.iloc[-1]), "first_val_loss": float(last_val.iloc[0]),
               "provenance": provenance}
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(checkpoint_dict(model.cpu(), model_cfg, meta["vocab_size"], block_size, tokenizer=meta["tokenizer"],
                                   eot_token=meta["eot_token"], summary={k: v for k, v in summary.items() if k != "provenance"},
                                   provenance=json.dumps(provenance, default=str)), tmp)
    write_json(out_dir / "summary.json", summary)
    ckpt_path.unlink(missing_ok=True)  # finished: model.pt supersedes the rolling checkpoint
    return summary


def _resume(path, run_id, model, optimizer, sampler):
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        tqdm.write(f"ignoring unreadable checkpoint {path} ({type(exc).__name__}); starting from step 0", file=sys.stderr)
        return 0, [], 0.0, [], (float("nan"), float("nan"))
    if state.get("run_id") != run_id:
        tqdm.write(f"ignoring {path}: it is from a different config or data; starting from step 0", file=sys.stderr)
        return 0, [], 0.0, [], (float("nan"), float("nan"))
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    sampler.generator.set_state(state["sampler"])
    set_rng_states(state["rng"])
    tqdm.write(f"resuming from {path} at step {state['step']}", file=sys.stderr)
    return state["step"], state["rows"], state["elapsed_s"], state["window_losses"], state["last_norms"]
