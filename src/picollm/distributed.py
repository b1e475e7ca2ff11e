"""Data-parallel training: the process group, the rank helpers and the DDP wrapper.

A job with train.devices x train.nodes > 1 runs one process per device: `picollm train --devices N --nodes M`
checks the launch and runs torchrun with the same command N times (on M nodes, srun starts one torchrun per
node: picollm.launch), which sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE. Every rank draws the
whole global batch (train.batch_size windows) from the same seeded sampler and keeps its own contiguous slice
of rows, so N ranks take exactly the optimizer steps one process would take (up to float rounding; with
dropout, each rank draws its masks from a stream of its own: the same training in law, not in numbers).
Without torchrun's variables nothing here starts a process group and every helper is the identity: one process trains
on its own.
"""
from __future__ import annotations

import datetime
import inspect
import os

import torch
import torch.distributed as dist

from picollm.errors import PicoError
from picollm.loss import lm_loss

# Rank 0 writes checkpoints, snapshots and model.pt while the others wait in their next collective:
# longer than torch's 10-minute NCCL default, for a large model on a slow shared file system.
TIMEOUT = datetime.timedelta(minutes=30)


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ


def threads_per_rank(threads: int) -> int:
    """A job's CPU threads on a node (`--threads`, Snakemake's threads) split over the node's ranks."""
    return max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def is_main() -> bool:
    """Rank 0: the one process that writes outputs and prints."""
    return rank() == 0


def check_world(world: int, local_world: int, batch_size: int, device: torch.device, gpus: int) -> None:
    """What a data-parallel run needs, each failure one line naming the fix."""
    if batch_size % world:
        raise PicoError(f"train.batch_size ({batch_size}) does not split evenly over {world} ranks "
                        f"(train.devices x train.nodes); make it a multiple of {world}")
    if device.type == "cuda" and local_world > gpus:
        raise PicoError(f"train.devices is {local_world} but this node has {gpus} CUDA GPU(s) visible; set "
                        f"train.devices to {gpus} or fewer (or ask the cluster for more GPUs per node)")
    if device.type not in ("cuda", "cpu"):
        raise PicoError(f"train.devices x train.nodes = {world} needs device: cuda or cpu, not {device.type}; "
                        f"set train.devices: 1 and train.nodes: 1 on {device.type}")


def peer_lost(exc: BaseException) -> bool:
    """Whether a rank's error is a collective that lost another rank (killed, crashed): torch's DistError
    family, or gloo's and NCCL's errors, which reach Python as RuntimeErrors naming the library."""
    named = isinstance(exc, RuntimeError) and any(library in str(exc) for library in ("gloo", "NCCL"))
    return world_size() > 1 and (isinstance(exc, dist.DistError) or named)


def start(device: torch.device, batch_size: int) -> torch.device:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU); returns this rank's device.
    One process (no torchrun): nothing to join, `device` as it is. Under torchrun one rank joins too, so
    `--nproc-per-node 1` runs the code of several devices on one (benchmarks/gpu.py checks NCCL that way)."""
    if not under_torchrun():
        return device
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    check_world(world_size(), int(os.environ.get("LOCAL_WORLD_SIZE", world_size())), batch_size, device, gpus)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def my_rows(batch_size: int) -> slice:
    """This rank's rows of a global batch: equal contiguous slices (check_world made them equal)."""
    per_rank = batch_size // world_size()
    return slice(rank() * per_rank, (rank() + 1) * per_rank)


def average(value: torch.Tensor) -> torch.Tensor:
    """The mean over ranks (each rank's mean over equally many rows: the global batch's mean)."""
    if world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)  # SUM then divide: gloo has no AVG
    return total / world_size()


def rms(value: torch.Tensor) -> torch.Tensor:
    """An RMS over the global batch from each rank's RMS over its equal share of rows."""
    return value if world_size() == 1 else average(value.float().pow(2)).sqrt()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on one: all ranks stop at the same step (a SIGTERM may reach
    the ranks a step apart, and a rank that stopped alone would leave the others waiting)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_main(value: float, device: torch.device) -> float:
    """Rank 0's value on every rank; the others wait here while rank 0 computes it (validation)."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.item()


def gather(obj) -> list:
    """Every rank's obj in rank order, on every rank (a collective: every rank calls it); [obj] alone."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class Loss(torch.nn.Module):
    """lm_loss as a module's forward: DDP all-reduces the gradients of the work done inside its wrapped
    module's forward only, and lm_loss runs the model through `features` and the fused head, not `forward`.
    `stats` is filled in place (DDP is given no device_ids, so it passes the arguments through untouched)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, y, stats: dict | None = None) -> torch.Tensor:
        return lm_loss(self.model, x, y, stats=stats)


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The training loss of `model`; under torchrun a DDP module that all-reduces (averages) gradients.

    Each rank's loss is the mean over its own rows, and every rank holds equally many, so DDP's average of
    the ranks' gradients is the gradient of the mean over the global batch: one process's gradient.
    The model is wrapped after the optimizer was built on its parameters (DDP shares them), and after
    torch.compile (train.compile compiles the model in place, which keeps the state dict's keys for
    checkpoints; DDP's gradient hooks sit on the parameters, so they fire for the compiled model too).
    """
    loss = Loss(model)
    if not dist.is_initialized():  # one process without torchrun (start joined no group)
        return loss
    # Buffers are not synced before every forward: no model here changes a buffer in training (no batch norm),
    # every rank builds the same ones, and resumed ranks all load the same checkpoint. torch 2.13 names this
    # forward_sync_buffers; an older torch (a cluster's or a GPU image's own) only has broadcast_buffers.
    ddp = torch.nn.parallel.DistributedDataParallel
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else "broadcast_buffers")
    return ddp(loss, **{no_sync: False})
