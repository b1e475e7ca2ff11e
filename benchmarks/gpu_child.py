"""Child process of the gpu benchmark: `picollm <args>` (the train rule's command) in this process, watched.

python -m benchmarks.gpu_child [--] train --config JSON --tokens-dir DIR --out-dir DIR [--threads N]
Runs picollm.cli.main on the arguments unchanged, then prints one JSON line on rank 0: the exit status, the
process group's backend and the loss module's class as the trainer built them (DDP under torchrun), and the
peak memory (torch.cuda.max_memory_allocated on CUDA, VmHWM on the CPU). Watching changes nothing the
trainer computes: the wrappers below call the originals and only record.

With PICOLLM_BENCH_STOP_AT=K in the environment the process sends itself SIGTERM (what a SLURM time limit
sends) right after step K, so the stop-and-resume path runs at a known step instead of racing a timer.
With PICOLLM_BENCH_COMPILE_BACKEND=NAME, torch.compile (train.compile) uses that backend: --quick takes
dynamo's `eager`, which traces the model as inductor would but skips its C++ code generation (tens of seconds
on a CPU, and of no use to a harness test).
"""
from __future__ import annotations

import json
import os
import signal
import sys

import torch
import torch.distributed as dist

SEEN: dict = {"backend": None, "loss_module": None, "world_size": None, "device": None}


def watch() -> None:
    from picollm import distributed, train

    wrap, train_step = distributed.wrap, train.train_step

    def watched_wrap(model):
        loss = wrap(model)
        SEEN.update(backend=dist.get_backend() if dist.is_initialized() else None, loss_module=type(loss).__name__,
                    world_size=dist.get_world_size() if dist.is_initialized() else 1,
                    device=str(next(model.parameters()).device))
        return loss

    stop_at = int(os.environ.get("PICOLLM_BENCH_STOP_AT", 0))

    def watched_step(run, state, clock=0.0):
        loss = train_step(run, state, clock)
        if state.step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler finishes this step and checkpoints
        return loss

    distributed.wrap, train.train_step = watched_wrap, watched_step  # looked up at call time by picollm.train

    backend = os.environ.get("PICOLLM_BENCH_COMPILE_BACKEND")
    if backend:
        compile_ = torch.compile
        torch.compile = lambda model, **kw: compile_(model, backend=backend, **kw)  # picollm.device.compile_model's


def peak_memory() -> dict:
    if SEEN["device"] and SEEN["device"].startswith("cuda"):
        return {"peak_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1),
                "peak_source": "torch.cuda.max_memory_allocated"}
    from benchmarks.memory_step import peak_rss_mib
    peak, source = peak_rss_mib()
    return {"peak_mib": round(peak, 1), "peak_source": source}


def main(argv: list[str]) -> int:
    from picollm import cli
    argv = argv[1:] if argv[:1] == ["--"] else argv  # torchrun passes launch_command's "--" through
    watch()
    rank = int(os.environ.get("RANK", 0))
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # SIGTERM: the trainer checkpointed and exits 128 + signal
        rc = exc.code if isinstance(exc.code, int) else 1
    if rank == 0:
        print(json.dumps({"rc": rc, **SEEN, **peak_memory()}), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
