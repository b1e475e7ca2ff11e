"""Device choice and the CPU thread budget a job was given."""
from __future__ import annotations

import torch

from picollm.errors import PicoError


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is missing is an error, not a fallback."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PicoError("device: cuda was asked for but this machine has no usable CUDA GPU; "
                        "use device: auto or device: cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PicoError("device: mps was asked for but MPS is not available here; use device: auto or device: cpu")
    return torch.device(name)


def use_threads(threads: int) -> None:
    """Use exactly the cores Snakemake gave this job, so `--cores N` never oversubscribes the CPU."""
    torch.set_num_threads(max(1, int(threads)))

