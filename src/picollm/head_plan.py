"""How the fused LM head + loss (picollm.fused_head) runs on this machine: the rows per chunk,
the library that multiplies each of its vocabulary-wide matmuls, and below how many rows plain autograd is
faster, chosen by timing the candidates once.

No choice here is right on every machine. Which library is faster at these shapes depends on the CPU: torch's
own BLAS, or oneDNN's fp32 inner product, which on some CPUs runs at a multiple of the BLAS's rate (the BLAS
picks a narrower code path on processors it was not tuned for); and which chunk is best depends on the caches
the (chunk, V) block meets. So the first run on a machine times every candidate on the real shapes, keeps the
fastest, and caches it under the machine's identity (picollm.device.machine_identity) with the timings, where
every later run finds it; the training summary records which plan ran and where it came from.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import time

import torch
import torch.nn.functional as F

from picollm.device import identity_key, machine_identity
from picollm.io import cache_dir
from picollm.errors import PicoError
from picollm.fused_head import (LIBRARIES, HeadPlan, block_logits, fused_cross_entropy, onednn_available,
                                times_weight)
from picollm.io import held_lock, write_json

# The largest fp32 (chunk, V) block a plan may use, and the most that plain autograd's three (N, V) tensors may
# take where it runs instead: a training step's peak memory stays that of a fused head at any vocabulary.
BLOCK_BYTES = 48 * 2 ** 20
CHUNKS = (32, 64, 128, 192, 256, 512, 1024)
PLAIN_ROWS = (16, 64, 256, 1024)  # row counts at which the fused head is timed against plain autograd
MEASURED_ROWS = 1024  # the most rows a measurement multiplies: chunks beyond it gain little and cost seconds
CACHE_FILE = "head_plans.json"
_plans: dict[tuple, dict] = {}  # this process's records: measured or read once, then a lookup per call


def chunk_candidates(vocab: int) -> list[int]:
    fits = [c for c in CHUNKS if c * vocab * 4 <= BLOCK_BYTES]
    return fits or [max(1, BLOCK_BYTES // (4 * vocab))]


def libraries(device: torch.device) -> list[str]:
    return list(LIBRARIES) if device.type == "cpu" and onednn_available() else ["torch"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest(calls: dict, device: torch.device, reps: int, min_s: float = 0.02) -> dict:
    """Seconds of each call: the fastest of at least `reps` rounds, taken in turn (A B C A B C ...) after one
    warm-up each, and of more rounds (up to 20) while a round lasts under `min_s`. On a shared machine other
    work only ever adds time, so the minimum is the call's own cost."""
    start = time.perf_counter()
    for fn in calls.values():
        fn()
    rounds = min(20, max(reps, int(min_s / max(time.perf_counter() - start, 1e-6))))
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, fn in calls.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure(vocab: int, hidden: int, device: torch.device, reps: int = 5) -> tuple[HeadPlan, dict]:
    """On random data of the real shapes: each matmul's faster library (logits and G @ W on a block of rows, and
    one row's logits); then the whole fused forward and backward over the largest chunk's rows at every chunk
    size; then, at row counts whose plain (N, V) tensors stay within BLOCK_BYTES, the fused head against plain
    autograd, which can win where the rows are few and each call's fixed cost dominates."""
    gen = torch.Generator().manual_seed(0)
    rows = min(max(chunk_candidates(vocab)), MEASURED_ROWS)
    chunks, libs = [c for c in chunk_candidates(vocab) if c <= rows], libraries(device)
    weight = (torch.randn(vocab, hidden, generator=gen) * 0.02).to(device)
    h = torch.randn(rows, hidden, generator=gen).to(device)
    targets = torch.randint(0, vocab, (rows,), generator=gen).to(device)
    c = min(rows, 128)
    block, grad_h = block_logits(h[:c], weight, None, "torch"), torch.empty(c, hidden, device=device)
    parts = fastest({**{f"logits_{lib}": functools.partial(block_logits, h[:c], weight, None, lib, block)
                        for lib in libs},
                     **{f"grad_h_{lib}": functools.partial(times_weight, block, weight, lib, grad_h) for lib in libs},
                     **{f"decode_{lib}": functools.partial(block_logits, h[:1], weight, None, lib) for lib in libs}},
                    device, reps)
    logits, grad_h_lib, decode = (min(libs, key=lambda lib: parts[f"{op}_{lib}"]) for op in ("logits", "grad_h",
                                                                                            "decode"))
    h.requires_grad_()
    weight.requires_grad_()

    def fused_call(plan, n):
        return lambda: fused_cross_entropy(h[:n], weight, None, targets[:n], plan).backward()

    def plain_call(n):
        return lambda: F.cross_entropy(F.linear(h[:n], weight), targets[:n]).backward()

    by_chunk = fastest({c: fused_call(HeadPlan(c, logits, grad_h_lib, decode), rows) for c in chunks}, device, reps)
    plan = HeadPlan(min(by_chunk, key=by_chunk.get), logits, grad_h_lib, decode)
    timings = {"block_rows": c, **{k: round(v * 1e3, 3) for k, v in parts.items()},
               "fused_rows": rows, "fused_by_chunk": {str(k): round(v * 1e3, 3) for k, v in by_chunk.items()},
               "fused_vs_plain": {}}
    plain_rows = 0
    for n in (n for n in PLAIN_ROWS if n <= rows and 3 * n * vocab * 4 <= BLOCK_BYTES):
        pair = fastest({"fused": fused_call(plan, n), "plain": plain_call(n)}, device, reps)
        timings["fused_vs_plain"][str(n)] = {k: round(v * 1e3, 3) for k, v in pair.items()}
        if pair["plain"] < pair["fused"]:
            plain_rows = n
    return dataclasses.replace(plan, plain_rows=plain_rows), timings


def plan_record(vocab: int, hidden: int, device: torch.device) -> dict:
    """The plan for a (vocab, hidden) head on this machine, with where it came from: this process's memory, the
    cache file, or a measurement now (then written to the cache). {"plan", "source", "machine", "timings_ms",
    "measured_utc", "cache"}."""
    device = torch.device(device)
    here = (vocab, hidden, str(device), torch.get_num_threads())  # what can change within one process
    if here in _plans:
        return _plans[here]
    machine = machine_identity(device)
    key = identity_key({**machine, "vocab": vocab, "hidden": hidden})
    path = cache_dir() / CACHE_FILE
    with contextlib.ExitStack() as held:
        # jobs that start together on a new machine: one measures, the others wait and read its plan, so that
        # they train with the same one (a cache folder that cannot be written: each measures alone)
        with contextlib.suppress(OSError):
            held.enter_context(held_lock(path.with_suffix(".lock")))
        record = _cached_or_measured(path, key, machine, vocab, hidden, device)
    record["cache"] = str(path)
    _plans[here] = record
    return record


def _cached_or_measured(path, key: str, machine: dict, vocab: int, hidden: int, device: torch.device) -> dict:
    cached = _read(path).get(key)
    if cached is not None and cached.get("machine") == machine:
        return {**cached, "source": "cache"}
    if device.type not in ("cpu", "cuda"):  # no timer to trust: torch's matmuls, today's chunk
        return {"plan": dataclasses.asdict(HeadPlan(128)), "source": "default", "machine": machine}
    # the first call may come from inside no_grad (validation) or autocast: measure as training runs; and on
    # forked random states, so that a seeded run draws the same dropout masks whether or not it measured
    with torch.enable_grad(), torch.autocast(device.type, enabled=False), \
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        plan, timings = measure(vocab, hidden, device)
    record = {"plan": dataclasses.asdict(plan), "source": "measured", "machine": machine, "vocab": vocab,
              "hidden": hidden, "timings_ms": timings,
              "measured_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    _write(path, key, record)
    return record


def plan_for(vocab: int, hidden: int, device) -> HeadPlan:
    """plan_record's plan: on every call after the first, one dictionary lookup."""
    record = plan_record(vocab, hidden, device)
    if "_plan" not in record:
        record["_plan"] = HeadPlan(**record["plan"])
    return record["_plan"]


def _read(path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        return {}


def _write(path, key: str, record: dict) -> None:
    """Add one record to the cache file; a cache that cannot be written only costs a measurement next time."""
    try:
        write_json(path, {**_read(path), key: {k: v for k, v in record.items() if k not in ("source", "_plan")}})
    except (OSError, PicoError):
        pass

