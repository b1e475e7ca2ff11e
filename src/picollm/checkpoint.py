"""A training's resume point: the fingerprints a checkpoint and a kept finished training must match, the rolling
checkpoint last.pt (written every train.checkpoint_interval steps and on a stop, loaded on a rerun), a finished
training restored rather than trained again, and the random streams a checkpoint carries so that a resumed run
draws exactly what an uninterrupted one would. Where those files lie and how they are moved:
picollm.resume_points (last.pt and the set-aside ones of other configs) and picollm.finished (finished/).
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from picollm import distributed, finished, resume_points
from picollm.config import TrainConfig
from picollm.data.meta import TokenMeta
from picollm.data.tokens import WindowSampler
from picollm.io import atomic_path, tell
from picollm.models import compact, tensors_sha256
from picollm.resume_points import LAST, SNAPSHOTS_STAGED

if TYPE_CHECKING:  # the trainer's own types: it imports this module
    from picollm.train import Run, TrainSpec, TrainState


def fingerprint(*parts) -> str:
    """A short hash of JSON-able parts: what a checkpoint or a finished training must match to be used again."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resume_id(spec: TrainSpec, meta: TokenMeta) -> str:
    """The fingerprint a checkpoint must match to be resumed, of spec.train_cfg as within_budget leaves it: the
    configs, seed, data, the sources' weights and the training code, so that a checkpoint is never finished under
    another mixture or another trainer (it is set aside instead, and that config resumes it). Who watches the run
    and how often it checkpoints are left out: they change no number."""
    train = spec.train_cfg.model_dump(exclude=TrainConfig.WATCH_AND_SAVE)
    return fingerprint(spec.model_cfg.model_dump(), train, spec.seed, spec.block_size, meta.raw_sha256,
                       meta.tokenizer, spec.compact_vocab and compact.FORM, WindowSampler.DRAWS, spec.weights,
                       finished.code(spec.model_cfg.type))


def finished_identity(spec: TrainSpec, meta: TokenMeta) -> str:
    """What a kept finished training (picollm.finished) must match to be restored rather than trained again: the
    resume fingerprint and the tokens' checksums."""
    tokens = {name: split.sha256 for name, split in meta.splits.by_name().items()}
    return fingerprint(resume_id(spec, meta), tokens)


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


RANK_STREAM = 1_000_003  # rank r > 0 draws dropout masks from seed + r * RANK_STREAM, not rank 0's stream


def rank_stream(seed: int) -> None:
    """After the model is built alike on every rank: a random stream per rank, so that ranks, which hold
    different rows of the batch, do not draw the same dropout masks. One process keeps the seed's stream."""
    if distributed.rank():
        torch.manual_seed(seed + RANK_STREAM * distributed.rank())


def save(run: Run, state: TrainState) -> None:
    """last.pt: the model, optimizer, sampler, every rank's random streams and the metrics so far."""
    rng = distributed.gather(rng_states())  # each rank's own random streams (its dropout masks)
    if not distributed.is_main():  # every rank holds the same model, optimizer and sampler: rank 0 writes
        return
    ckpt = {"run_id": run.run_id, "step": state.step, "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(), "sampler": run.sampler.generator.get_state(),
            "rng": rng, "rows": state.rows, "window_losses": state.window_losses, "health": state.health,
            "last_norms": (state.grad_norm, state.act_rms, state.scale), "elapsed_s": run.elapsed(state)}
    ckpt["sha256"] = tensors_sha256(ckpt)
    with atomic_path(run.ckpt_path) as tmp:
        torch.save(ckpt, tmp)


def restore(out_dir: Path, identity: str, run_id: str) -> dict | None:
    """The summary of a finished training kept in out_dir/finished/ that matches `identity`, its outputs put
    back ({} on ranks but 0, which write nothing); None when there is none. What is kept stays until a new
    training ends (finished.keep replaces it): one that fails first leaves it to be restored."""
    main = distributed.is_main()
    done = finished.restore(out_dir, identity, link=main)
    if done is None:
        return None
    path = out_dir / LAST
    # this run's last.pt is what an interruption between keeping the outputs and cleaning up left behind;
    # another run's (trained here since, and stopped) is its progress, set aside for it
    if main and path.exists() and resume_points.claim(path, run_id, "restoring the finished training") is not None:
        path.unlink()
    if main:
        shutil.rmtree(out_dir / SNAPSHOTS_STAGED, ignore_errors=True)
    return {**done, "restored": True} if main else {}


def own_checkpoint(run: Run) -> tuple[dict | None, str]:
    """Rank 0: this run's checkpoint, now in last.pt, or None; and a note for the resuming line. A last.pt that
    is not this run's is moved away (resume_points.claim) first, and this run's own checkpoint, if another config's
    training set it aside, brought back, with whatever of its own waits beside it."""
    path, own = run.ckpt_path, resume_points.aside_paths(run.ckpt_path, run.run_id)[0]
    then = f"resuming {own} instead" if own.exists() else "starting from step 0"
    ckpt = resume_points.claim(path, run.run_id, then) if path.exists() else None
    note = ""
    if ckpt is None and own.exists():
        resume_points.bring_back(path, run.run_id)
        ckpt = resume_points.claim(path, run.run_id, "starting from step 0")
        note = f" (set aside as {own.name} by a run of another config)"
    elif ckpt is not None:  # what a kill between two moves of set_aside or bring_back left under its name
        resume_points.gather(path, run.run_id)
    return ckpt, note


def resume(run: Run) -> dict | None:
    """This run's checkpoint loaded into its model, optimizer, sampler and random streams (the caller takes the
    metrics so far from it), or None to start from step 0. Rank 0 alone moves files (own_checkpoint); every
    rank then loads the same last.pt."""
    ckpt, note = own_checkpoint(run) if distributed.is_main() else (None, "")
    # rank 0's word, once it has put the right last.pt in place: every rank resumes from it, or none does
    if distributed.from_main(float(ckpt is not None), run.device) and ckpt is None:
        ckpt = torch.load(run.ckpt_path, map_location="cpu", weights_only=False)
    if ckpt is None:
        return None
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.sampler.generator.set_state(ckpt["sampler"])
    states = ckpt["rng"]  # one per rank that saved it
    set_rng_states(states[min(distributed.rank(), len(states) - 1)])
    if distributed.rank() >= len(states):  # resumed on more ranks than it was saved from: a stream of its own
        rank_stream(torch.initial_seed())
    tell(f"resuming from {run.ckpt_path} at step {ckpt['step']}{note}")
    return ckpt
