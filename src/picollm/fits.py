"""Whether a model fits in memory, asked before it is built: a model too large for the machine stops in one
line naming the run, the size keys to lower and the bytes it needs, instead of an allocator's error after
minutes of initialisation.

The model is first built on torch's meta device (shapes, no storage) to count its parameters. Training holds
at least BYTES_PER_PARAM bytes per parameter, its fp32 weights and their gradients (the optimizer's state and
the activations come on top, and depend on the optimizer and the batch): a model whose weights and gradients
alone exceed the free memory cannot train. An allocation that fails anyway while the model is built is turned
into the same kind of line.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil
import torch

from picollm.config import ModelConfig
from picollm.errors import PicoError
from picollm.flops import compact_width
from picollm.io import size
from picollm.models import build_model

BYTES_PER_PARAM = 8


def shape_model(model_cfg: ModelConfig, vocab_size: int, block_size: int, compact_ids=None) -> torch.nn.Module:
    """The model with shapes and no storage (a compact vocabulary's wrapper has no parameters of its own)."""
    vocab = compact_width(compact_ids) if compact_ids is not None else vocab_size
    with torch.device("meta"):
        return build_model(model_cfg, vocab, block_size)


def size_keys(name: str, model_cfg: ModelConfig, model: torch.nn.Module) -> str:
    """The model keys that size its largest tensor (those to lower), as `models.<name>.<key> (value)`."""
    sizes = {k: v for k, v in model_cfg.hyperparameters().items() if isinstance(v, int) and not isinstance(v, bool)}
    dims = set(max(model.parameters(), key=lambda p: p.numel()).shape)
    keys = [k for k, v in sizes.items() if v in dims] or list(sizes)
    return ", ".join(f"models.{name}.{k} ({sizes[k]})" for k in keys)


def free_memory(device: torch.device) -> int | None:
    """Bytes this process may still allocate on `device`: a GPU's free memory; on the CPU the smaller of the
    machine's available memory and the job's cgroup limit (SLURM's --mem); None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    free = [psutil.virtual_memory().available, _cgroup_room()]
    free = [f for f in free if f is not None]
    return min(free) if free else None


def _cgroup_room() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), or None without a limit."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        group = next(x for x in Path("/proc/self/cgroup").read_text().splitlines() if x.startswith("0::"))
        folder = Path("/sys/fs/cgroup") / group[3:].lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit != "max":
            return int(limit) - int((folder / "memory.current").read_text())
    return None


def check_fits(name: str, model_cfg: ModelConfig, vocab_size: int, block_size: int, compact_ids,
               device: torch.device) -> None:
    """One line, before anything is allocated, when training the model would not fit on `device`."""
    model = shape_model(model_cfg, vocab_size, block_size, compact_ids)
    params = sum(p.numel() for p in model.parameters())
    # each data-parallel process on a node holds its own copy
    need = params * BYTES_PER_PARAM * (int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if device.type == "cpu" else 1)
    free = free_memory(device)
    if free is not None and need > free:
        raise PicoError(f"model {name} needs {size(need)} for its weights and gradients alone ({params:,} parameters "
                        f"x {BYTES_PER_PARAM} bytes; the optimizer needs more), more than the {size(free)} free on "
                        f"{device}; lower {size_keys(name, model_cfg, model)}")


@contextlib.contextmanager
def allocation_is_one_line(name: str, model_cfg: ModelConfig, vocab_size: int, block_size: int, compact_ids, device):
    """An allocation that fails inside the block (the estimate left activations out) as check_fits's line."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError) and "allocate" not in str(exc):
            raise
        model = shape_model(model_cfg, vocab_size, block_size, compact_ids)
        params = sum(p.numel() for p in model.parameters())
        need = size(params * BYTES_PER_PARAM)
        raise PicoError(f"model {name} ran out of memory on {device} while being built ({params:,} parameters, "
                        f"{need} for weights and gradients); lower {size_keys(name, model_cfg, model)}") from None
