"""The one trainer for every model: packed windows, next-token cross-entropy, AdamW (or Muon), warm-up + cosine
schedule, gradient clipping, periodic validation, rolling checkpoints and exact resume.

Outputs in models/<run>/seed<k>/: model.pt (written only at the end), metrics.csv, summary.json, layer_health.csv
(per Transformer block; the header only for other models) and snapshots/step<N>.pt for each of
train.snapshot_steps (model.pt's format, with the validation loss at that step). The rolling checkpoint
last.pt is not a Snakemake output, so it survives a failed or killed job and the rerun resumes; snapshots are
staged in snapshots.partial/ beside it for the same reason, and published to snapshots/ at the end. A last.pt
of another config, seed or data is not written over: it is set aside, with its staged snapshots, as
last.<fingerprint>.pt for a training of that config to resume; one that is damaged becomes last.damaged.pt
(picollm.resume_points).
train.loggers also send every metrics row, as it is written, to live trackers (picollm.tracking).
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from picollm import checkpoint, distributed, finished, tracking
from picollm.config import ModelConfig, TrainConfig, TrainJob, model_config, parse
from picollm.data.meta import TokenMeta
from picollm.data.tokens import WindowSampler, load_tokens, read_meta
from picollm.device import autocast_for, compile_model, eager, emulated_bf16_note, resolve_device
from picollm.errors import STOP_SIGNALS, Interrupted, PicoError
from picollm.finished import HEALTH, METRICS, MODEL, SNAPSHOTS, SUMMARY
from picollm.fits import allocation_is_one_line, check_fits
from picollm.flops import budget_steps, flops_per_token, output_vocab
from picollm.health import HEALTH_COLUMNS, health_rows, residual_rms, transformer_blocks
from picollm.io import atomic_path, note, write_csv, write_json
from picollm.loss import head_plan_record, validation_loss
from picollm.models import build_model, checkpoint_dict, count_parameters, output_vocab_size
from picollm.optim import Optimizers, make_optimizer
from picollm.owner import ParentWatch, folder_lock
from picollm.resume_points import LAST, SNAPSHOTS_STAGED

METRIC_COLUMNS = ["step", "tokens_seen", "train_loss", "val_loss", "lr", "grad_norm", "act_rms", "elapsed_s"]


def snapshot_path(out_dir, step: int, staged: bool = False) -> Path:
    """out_dir/snapshots/step<N>.pt, or its staging copy that lives beside last.pt until training ends."""
    return Path(out_dir) / (SNAPSHOTS_STAGED if staged else SNAPSHOTS) / f"step{step}.pt"


def is_log_step(step: int, train_cfg: TrainConfig) -> bool:
    return step % train_cfg.log_interval == 0 or step == train_cfg.max_steps


def lr_scale(step: int, train_cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """The schedule as a fraction of the peak: linear warm-up to 1, then cosine decay to min_lr_ratio at
    max_steps, or, under train.max_minutes, at the end of the time (progress is then the clock's
    elapsed_s / budget, since the number of steps the time allows is not known up front). Every param
    group's lr is its own peak (train.lr, or train.muon_lr) times this."""
    if step < train_cfg.warmup_steps:
        return (step + 1) / train_cfg.warmup_steps
    floor = train_cfg.min_lr_ratio
    progress = (step - train_cfg.warmup_steps) / max(1, train_cfg.max_steps - train_cfg.warmup_steps)
    if train_cfg.max_minutes is not None:
        progress = max(progress, elapsed_s / (60 * train_cfg.max_minutes))
    return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


class StopRequested:
    """SIGTERM (SLURM time limit, Snakemake), SIGINT (Ctrl-C) or SIGHUP (the terminal closed), or the Snakemake
    that started the job gone (owner.ParentWatch): finish the step, checkpoint, then exit."""

    def __init__(self):
        self.signum = None
        self.parent = ParentWatch()
        self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS
                          if s != signal.SIGHUP or signal.getsignal(s) is not signal.SIG_IGN}  # nohup's stays

    def _handle(self, signum, frame):
        self.signum = signum

    def requested(self) -> bool:
        if self.signum is None and self.parent.gone():
            tqdm.write(f"the process that started this job (pid {self.parent.pid}) is gone; stopping", file=sys.stderr)
            self.signum = signal.SIGTERM
        return self.signum is not None

    def restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """What one training is: its name and device, and what its fingerprints hash (picollm.checkpoint).
    train_cfg is as given; within_budget sets the steps a FLOP budget pays for."""
    name: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    seed: int
    block_size: int
    device: str = "cpu"
    weights: dict | None = None  # {source: weight} for the sampler; None: every source alike
    compact_vocab: bool = False

    @classmethod
    def of(cls, job: TrainJob) -> TrainSpec:
        """The training a workflow's train job runs."""
        return cls(job.name, job.model, job.train, job.seed, job.block_size, job.device, job.weights,
                   job.compact_vocab)


@dataclasses.dataclass
class TrainState:
    """Everything a resumed run needs beyond the model, optimizer and sampler (all saved in last.pt)."""
    step: int = 0
    rows: list = dataclasses.field(default_factory=list)  # metrics.csv so far
    window_losses: list = dataclasses.field(default_factory=list)  # train losses since the last logged row
    elapsed_before: float = 0.0  # wall seconds of earlier, interrupted runs
    grad_norm: float = float("nan")
    act_rms: float = float("nan")
    health: list = dataclasses.field(default_factory=list)  # layer_health.csv so far
    scale: float = float("nan")  # lr_scale of the last step taken, or of step 0 (metrics.csv's lr is train.lr times it)


@dataclasses.dataclass
class Run:
    """What one training job works with: built once by `setup`, read by every step."""
    name: str
    model_cfg: ModelConfig
    model: torch.nn.Module
    optimizer: Optimizers
    sampler: WindowSampler
    val_tokens: np.ndarray
    train_cfg: TrainConfig
    device: torch.device
    autocast: object  # a torch.autocast context, or None
    block_size: int
    meta: TokenMeta
    run_id: str  # what a checkpoint must match to be resumed
    ckpt_path: Path
    flops_per_token: int = 0  # training FLOPs per token (picollm.flops)
    blocks: list = dataclasses.field(default_factory=list)  # a Transformer's blocks, for layer health
    provenance: dict | None = None
    t0: float = dataclasses.field(default_factory=time.perf_counter)
    loss: torch.nn.Module | None = None  # the model's training loss; under torchrun the DDP module (distributed.wrap)
    identity: str = ""  # what finished/ records for a rerun to restore rather than train (finished_identity)
    tracking: tracking.Tracking = dataclasses.field(default_factory=lambda: tracking.Tracking({}))  # train.loggers
    head_plan: dict | None = None  # how the fused head + loss runs on this machine (picollm.loss.head_plan_record)

    @property
    def tokens_per_step(self) -> int:
        return self.train_cfg.batch_size * self.block_size

    def elapsed(self, state: TrainState) -> float:
        return state.elapsed_before + time.perf_counter() - self.t0

    def clock(self, state: TrainState) -> float:
        """Rank 0's elapsed seconds on every rank under train.max_minutes, so that all ranks follow one
        schedule and stop at one step; 0 for a run of fixed length, whose schedule the clock never moves."""
        if self.train_cfg.max_minutes is None:
            return 0.0
        return distributed.from_main(self.elapsed(state), self.device)

    def out_of_time(self, clock: float) -> bool:
        return self.train_cfg.max_minutes is not None and clock >= 60 * self.train_cfg.max_minutes


def setup(spec: TrainSpec, tokens_dir: Path, out_dir: Path, meta: TokenMeta, step_flops: int, run_id: str,
          provenance=None) -> Run:
    """The run ready to train: its tokens, model, optimizer and sampler (spec.train_cfg as within_budget leaves
    it, run_id its resume_id)."""
    name, model_cfg, train_cfg, seed, block_size = spec.name, spec.model_cfg, spec.train_cfg, spec.seed, spec.block_size
    train_tokens = load_tokens(tokens_dir / "train.bin", meta)
    val_tokens = load_tokens(tokens_dir / "val.bin", meta)
    if len(val_tokens) < block_size + 1:
        raise PicoError(f"the validation split has {len(val_tokens)} tokens, fewer than block_size + 1 = "
                        f"{block_size + 1}; add validation text or lower block_size")
    dev = distributed.start(resolve_device(spec.device), train_cfg.batch_size)  # this rank's device under torchrun
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = autocast_for(dev, train_cfg.precision)
    if distributed.is_main() and (slow_bf16 := emulated_bf16_note(dev, train_cfg.precision)):
        note(f"{name}: {slow_bf16}")
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    compact_ids = meta.compact_ids() if spec.compact_vocab else None
    sizes = (name, model_cfg, meta.vocab_size, block_size, compact_ids, dev)
    check_fits(*sizes)  # a model too large for the device: one line before anything is allocated
    with allocation_is_one_line(*sizes):
        model = build_model(model_cfg, meta.vocab_size, block_size, compact_ids).to(dev)
    sources = meta.splits.train.sources
    sampler = WindowSampler(train_tokens, sources, spec.weights or {n: 1.0 for n in sources}, block_size, seed)
    optimizer = make_optimizer(model, train_cfg, dev, name)
    if train_cfg.compile:
        compile_model(model)
    head_plan = head_plan_record(model, dev)  # timed here on a machine's first run, before the clock starts
    checkpoint.rank_stream(seed)
    return Run(name, model_cfg, model, optimizer, sampler, val_tokens, train_cfg, dev, autocast, block_size, meta,
               run_id, out_dir / LAST, flops_per_token=step_flops, blocks=transformer_blocks(model),
               provenance=provenance, loss=distributed.wrap(model), head_plan=head_plan)


def within_budget(train_cfg: TrainConfig, step_flops: int, block_size: int, name: str) -> TrainConfig:
    """train_cfg with max_steps set to the steps train.flops pays for (unchanged without a budget), so the
    schedule, logging, snapshots and the stop all follow them. Checked here, at the start of the train job,
    since the FLOPs per token depend on the vocabulary."""
    if train_cfg.flops is None:
        return train_cfg
    return train_cfg.model_copy(update={"max_steps": budget_steps(train_cfg, step_flops, block_size, name)})


def log_row(run: Run, state: TrainState, last: bool = False) -> None:
    """Append a metrics row at logging, evaluation and snapshot steps and at the `last` step (once per step,
    also after a resume), and stage the snapshot of a snapshot step."""
    train_cfg, step = run.train_cfg, state.step
    snapshot_now = step in run.train_cfg.kept_steps
    eval_now = train_cfg.is_eval_step(step) or last or snapshot_now
    logged = state.rows[-1] if state.rows and state.rows[-1]["step"] == step else None  # before a resume
    # a step is logged once, except a time-stopped run's last row, logged without a validation loss: the resumed
    # run's last step scores it
    redo = logged is not None and last and math.isnan(logged["val_loss"])
    if not (is_log_step(step, train_cfg) or eval_now) or (logged is not None and not redo):
        return
    val_loss = float("nan")
    if eval_now:  # by rank 0 alone (the same windows on every rank would only repeat it); the others wait
        if distributed.is_main():
            val_loss = validation_loss(run.model, run.val_tokens, run.block_size, train_cfg.batch_size, run.device,
                                       max_windows=train_cfg.eval_batches * train_cfg.batch_size, autocast=run.autocast)
        val_loss = distributed.from_main(val_loss, run.device)
    if redo:
        state.rows.pop()
    state.rows.append({
        "step": step, "tokens_seen": step * run.tokens_per_step,
        "train_loss": float(np.mean(state.window_losses)) if state.window_losses else
        (logged["train_loss"] if logged else float("nan")),
        "val_loss": val_loss, "lr": train_cfg.lr * state.scale,
        "grad_norm": state.grad_norm,
        "act_rms": state.act_rms, "elapsed_s": round(run.elapsed(state), 3)})
    state.window_losses = []
    run.tracking.row(state.rows[-1], list(itertools.takewhile(lambda h: h["step"] == step, reversed(state.health))))
    if snapshot_now and distributed.is_main():
        save_snapshot(run, state.rows[-1])


def save_snapshot(run: Run, row: dict) -> None:
    """The model as it is at row['step'], in model.pt's format (load_model reads it), staged until the end."""
    meta = run.meta
    train_loss = row["train_loss"] if math.isfinite(row["train_loss"]) else None  # step 0 has none
    summary = {"model": run.name, "type": run.model_cfg.type, "step": row["step"],
               "tokens_seen": row["tokens_seen"], "val_loss": row["val_loss"], "train_loss": train_loss}
    ckpt = checkpoint_dict(run.model, run.model_cfg.model_dump(), meta.vocab_size, run.block_size,
                           tokenizer=meta.tokenizer, tokenizer_json=meta.tokenizer_json, eot_token=meta.eot_token,
                           summary=summary, provenance=json.dumps(run.provenance, default=str))
    ckpt["state_dict"] = {k: v.detach().cpu() for k, v in ckpt["state_dict"].items()}
    with atomic_path(snapshot_path(run.ckpt_path.parent, row["step"], staged=True)) as tmp:
        torch.save(ckpt, tmp)


def publish_snapshots(run: Run) -> None:
    """Staged snapshots -> out_dir/snapshots/. Linked (or copied), not moved: until last.pt is gone a rerun
    would resume from it and could not write the earlier snapshots again."""
    out_dir = run.ckpt_path.parent
    (out_dir / SNAPSHOTS).mkdir(exist_ok=True)  # a workflow output, also when no step is kept
    for step in run.train_cfg.kept_steps:
        staged = snapshot_path(out_dir, step, staged=True)
        if not staged.exists():
            raise PicoError(f"the snapshot of step {step} is missing from {staged.parent}; delete {run.ckpt_path} "
                            f"and rerun training")
        with atomic_path(snapshot_path(out_dir, step)) as tmp:
            try:
                os.link(staged, tmp)
            except OSError:  # a file system without hard links
                shutil.copyfile(staged, tmp)


def train_step(run: Run, state: TrainState, clock: float = 0.0) -> float:
    """One optimizer step on a fresh batch (`clock`: Run.clock, for a time-budgeted schedule); returns its loss."""
    scale = state.scale = lr_scale(state.step, run.train_cfg, clock)
    for group in run.optimizer.param_groups:
        group["lr"] = group["peak_lr"] * scale
    rows = distributed.my_rows(run.train_cfg.batch_size)  # every rank draws the global batch, keeps its share
    x, y = (t[rows].to(run.device, non_blocking=True) for t in run.sampler.batch(run.train_cfg.batch_size))
    activations = {"rms": torch.tensor(float("nan"))}  # lm_loss records the RMS entering the head here
    blocks = run.blocks if is_log_step(state.step + 1, run.train_cfg) else []  # layer health on logged steps only
    with (eager(run.model, when=bool(blocks)), residual_rms(blocks) as resid,
          run.autocast or torch.autocast(run.device.type, enabled=False)):
        rank_loss = run.loss(x, y, stats=activations)  # the mean over this rank's rows
    loss = distributed.average(rank_loss)  # the global batch's mean: logged and checked alike on every rank
    check_loss(run, state.step + 1, loss.item())  # on every rank at once, since all see the same number
    run.optimizer.zero_grad(set_to_none=True)
    rank_loss.backward()  # under DDP, also averages the gradients over the ranks
    if blocks:  # before clipping, which scales the gradients in place
        resid[:] = distributed.rms(torch.stack(resid)).unbind() if resid else resid  # over the global batch
        state.health += health_rows(state.step + 1, (state.step + 1) * run.tokens_per_step, blocks, resid)
    clip = run.train_cfg.grad_clip or float("inf")
    state.grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip).item()
    check_gradient(run, state.step + 1, loss.item(), state.grad_norm)
    state.act_rms = distributed.rms(activations["rms"]).item()
    run.optimizer.step()
    state.step += 1
    state.window_losses.append(loss.item())
    return loss.item()


# A loss this many times ln(vocab), what a uniform guess scores, is no longer learning: it has diverged.
DIVERGED = 10


def check_loss(run: Run, step: int, loss: float) -> None:
    """Stop, in one line, on a loss that is not finite or has exploded past DIVERGED x ln(vocab)."""
    uniform = math.log(run.meta.vocab_size)
    if not math.isfinite(loss):
        raise PicoError(f"training {run.name} hit a {loss} loss at step {step}; {_kept(run)}; {_fix(run.train_cfg)}")
    if loss > DIVERGED * uniform:
        raise PicoError(f"training {run.name} diverged: a loss at step {step} of {loss:.4g}, over {DIVERGED} x "
                        f"ln(vocab) = {DIVERGED * uniform:.1f}; {_kept(run)}; {_fix(run.train_cfg)}")


def check_gradient(run: Run, step: int, loss: float, grad_norm: float) -> None:
    """Stop on a collapse: no gradient at all with the loss at the uniform level, a flat model that learns no more."""
    uniform = math.log(run.meta.vocab_size)
    if grad_norm == 0.0 and abs(loss - uniform) < 1e-3:
        raise PicoError(f"training {run.name} collapsed to a flat model: a zero gradient and a loss at step {step} "
                        f"of {loss:.4f} = ln(vocab); {_kept(run)}; {_fix(run.train_cfg)}")


def _kept(run: Run) -> str:
    """What a rerun resumes from, in words."""
    try:
        step = torch.load(run.ckpt_path, map_location="cpu", mmap=True, weights_only=False)["step"]
    except Exception:  # none (or unreadable): a rerun starts over either way
        return "no checkpoint was written yet"
    return f"the checkpoint of step {step} is kept in {run.ckpt_path}"


def _fix(train_cfg: TrainConfig) -> str:
    clip = " or set train.grad_clip (now 0: off)" if not train_cfg.grad_clip else ""
    return f"lower train.lr (now {train_cfg.lr:g}){clip}"


def train_loop(run: Run, state: TrainState) -> None:
    """Steps until max_steps (or train.max_minutes); on SIGTERM/SIGINT, checkpoint and exit (the rerun resumes)."""
    max_steps = run.train_cfg.max_steps
    stop = StopRequested()
    run.model.train()
    bar = tqdm(total=max_steps, initial=state.step, desc=f"train {run.name}", unit="step", mininterval=5,
               disable=not distributed.is_main())
    first = state.step
    try:
        while True:
            clock = run.clock(state)  # one reading per step: the stop and the schedule agree, one broadcast
            last = state.step == max_steps or run.out_of_time(clock)
            log_row(run, state, last)
            if last:
                return
            if distributed.any_rank(stop.requested(), run.device):  # all ranks stop at the same step
                checkpoint.save(run, state)
                distributed.barrier()  # the other ranks exit once rank 0 has written the checkpoint
                tqdm.write(f"stopped at step {state.step}; {run.ckpt_path} holds it", file=sys.stderr)
                raise Interrupted(stop.signum or signal.SIGTERM)
            loss = train_step(run, state, clock)
            bar.update(1)
            tok_s = (state.step - first) * run.tokens_per_step / max(time.perf_counter() - run.t0, 1e-9)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:.0f}", refresh=False)
            if state.step % run.train_cfg.checkpoint_interval == 0 and state.step < max_steps:
                checkpoint.save(run, state)
    finally:
        bar.close()
        stop.restore()


def stopped_by(run: Run, state: TrainState) -> str:
    if state.step < run.train_cfg.max_steps:
        return "max_minutes"
    return "max_steps" if run.train_cfg.flops is None else "flops"


def finish(run: Run, state: TrainState) -> dict:
    """metrics.csv, layer_health.csv, snapshots/, summary.json and model.pt beside last.pt; the rolling checkpoint
    and the staged snapshots are then removed."""
    out_dir, provenance = run.ckpt_path.parent, run.provenance
    wall = run.elapsed(state)
    metrics = pd.DataFrame(state.rows, columns=METRIC_COLUMNS)
    write_csv(out_dir / METRICS, metrics)
    write_csv(out_dir / HEALTH, pd.DataFrame(state.health, columns=HEALTH_COLUMNS))
    publish_snapshots(run)
    val, train_loss = metrics["val_loss"].dropna(), metrics["train_loss"].dropna()
    tokens = state.step * run.tokens_per_step
    summary = {"model": run.name, "type": run.model_cfg.type, **count_parameters(run.model), "steps": state.step,
               "stopped_by": stopped_by(run, state), "flops_budget": run.train_cfg.flops,
               "output_vocab": output_vocab_size(run.model), "tokens_seen": tokens,
               "flops_per_token": run.flops_per_token, "train_flops": run.flops_per_token * tokens,
               "wall_s": round(wall, 2),
               "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None, "device": str(run.device),
               "precision": "bf16" if run.autocast is not None else "fp32", "head_loss": run.head_plan,
               "final_train_loss": float(train_loss.iloc[-1]) if len(train_loss) else None,
               "final_val_loss": float(val.iloc[-1]), "first_val_loss": float(val.iloc[0]),
               "provenance": provenance}
    meta = run.meta
    ckpt = checkpoint_dict(run.model.cpu(), run.model_cfg.model_dump(), meta.vocab_size, run.block_size,
                           tokenizer=meta.tokenizer, tokenizer_json=meta.tokenizer_json,
                           eot_token=meta.eot_token,
                           summary={k: v for k, v in summary.items() if k not in ("provenance", "head_loss")},
                           provenance=json.dumps(provenance, default=str))
    with atomic_path(out_dir / MODEL) as tmp:
        torch.save(ckpt, tmp)
    write_json(out_dir / SUMMARY, summary)
    run.tracking.summary(state.step, summary)
    finished.keep(out_dir, run.identity)  # before the checkpoint goes: one of the two is always there
    run.ckpt_path.unlink(missing_ok=True)  # finished: model.pt supersedes the rolling checkpoint
    shutil.rmtree(out_dir / SNAPSHOTS_STAGED, ignore_errors=True)
    return summary


def train(name: str, model_cfg: ModelConfig | dict, train_cfg: TrainConfig | dict, *, tokens_dir, out_dir, seed: int,
          block_size: int, device: str = "cpu", weights: dict | None = None, compact_vocab: bool = False,
          provenance: dict | None = None, tracking_dir=None) -> dict:
    """Train one model (run_training) given key by key, as callers outside the workflow do: the configs are objects
    of picollm.config, or mappings of their keys."""
    model_cfg = model_config(model_cfg)
    train_cfg = train_cfg if isinstance(train_cfg, TrainConfig) else parse(TrainConfig, train_cfg, at=("train",))
    spec = TrainSpec(name, model_cfg, train_cfg, seed, block_size, device, weights, compact_vocab)
    return run_training(spec, tokens_dir=tokens_dir, out_dir=out_dir, provenance=provenance, tracking_dir=tracking_dir)


def run_training(spec: TrainSpec, *, tokens_dir, out_dir, provenance: dict | None = None, tracking_dir=None) -> dict:
    """Train one model to train_cfg.max_steps (or the steps train_cfg.flops pays for), resuming from
    out_dir/last.pt when it matches. model.pt and the resume fingerprint spell out every hyperparameter, defaults
    included: a default that changes later then neither rebuilds this checkpoint as another network nor resumes
    it as one. train_cfg.loggers log under `tracking_dir` (results/<experiment>, whose name names the MLflow
    experiment and W&B project; default: out_dir)."""
    tokens_dir, out_dir = Path(tokens_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    main = distributed.is_main()  # under torchrun every rank trains, rank 0 alone writes and logs
    with contextlib.ExitStack() as owned:
        try:
            if main:  # one job per folder: rank 0 holds the lock for its ranks
                owned.enter_context(folder_lock(out_dir))
            meta = read_meta(tokens_dir / "meta.json")
            identity = checkpoint.finished_identity(spec, meta)
            step_flops = flops_per_token(spec.model_cfg, meta.vocab_size, spec.block_size,
                                         output_vocab(meta, spec.compact_vocab))
            budgeted = dataclasses.replace(spec, train_cfg=within_budget(spec.train_cfg, step_flops, spec.block_size,
                                                                         spec.name))
            run_id = checkpoint.resume_id(budgeted, meta)
            if (done := checkpoint.restore(out_dir, identity, run_id)) is not None:
                return done  # a restore logs nothing: it needs no tracker
            if main:
                tracking.check(spec.train_cfg.loggers)  # a missing library or an unreachable server: one line, now
                warn_short_warmup(spec.name, spec.train_cfg)
            run = setup(budgeted, tokens_dir, out_dir, meta, step_flops, run_id, provenance)
            run.identity = identity
            state = resumed_state(run)
            if state.step == 0 and main:  # starting over: earlier staged snapshots must not be published
                shutil.rmtree(out_dir / SNAPSHOTS_STAGED, ignore_errors=True)
            if main:  # closed as training ends, with how it ended (finished, interrupted or failed)
                root = Path(tracking_dir or out_dir)
                run.tracking = owned.enter_context(start_tracking(run, state, spec, root))
            run.t0 = time.perf_counter()
            train_loop(run, state)
            checkpoint.save(run, state)  # the state finish writes out: a rerun after an interruption resumes here
            summary = finish(run, state) if main else {}
            # the ranks tear the process group down together: a rank that closes gloo while rank 0 still writes
            # the outputs can abort at exit ("terminate called without an active exception")
            distributed.barrier()
            return summary
        finally:
            distributed.stop()


def warn_short_warmup(name: str, train_cfg: TrainConfig) -> None:
    """A run of fixed length that ends within its warm-up is legal (a smoke test) but its learning rate never
    reaches train.lr nor decays: its curves are no guide to the recipe, so say so. (A FLOP budget this short
    is refused: picollm.flops.budget_steps.)"""
    if train_cfg.flops is None and train_cfg.max_minutes is None and train_cfg.max_steps <= train_cfg.warmup_steps:
        note(f"{name}: train.max_steps ({train_cfg.max_steps}) ends within train.warmup_steps "
             f"({train_cfg.warmup_steps}), so its learning rate never reaches train.lr nor decays; lower "
             f"warmup_steps (e.g. {max(1, train_cfg.max_steps // 10)}) for curves that show the recipe")


def start_tracking(run: Run, state: TrainState, spec: TrainSpec, root: Path) -> tracking.Tracking:
    """The run's train.loggers, from the step it trains from, with its config and seed as parameters."""
    params = {"run": run.name, "seed": spec.seed, "block_size": run.block_size, "compact_vocab": spec.compact_vocab,
              "device": str(run.device), "model": run.model_cfg.model_dump(),
              "train": run.train_cfg.model_dump(exclude=TrainConfig.WATCH_AND_SAVE)}
    target = tracking.Target(root, root.resolve().name, run.name, spec.seed, run.ckpt_path.parent, run.run_id)
    return tracking.start(run.train_cfg.loggers, target, params, run.run_id, state.step,
                          state.rows[-1] if state.rows else None)


def resumed_state(run: Run) -> TrainState:
    """The state of this run's checkpoint (picollm.checkpoint.resume), or step 0's."""
    ckpt = checkpoint.resume(run)
    if ckpt is None:
        return TrainState(scale=lr_scale(0, run.train_cfg))
    grad_norm, act_rms, scale = ckpt["last_norms"]
    return TrainState(ckpt["step"], ckpt["rows"], ckpt["window_losses"], ckpt["elapsed_s"], grad_norm, act_rms,
                      ckpt.get("health", []), scale)
