"""Device choice, numeric precision, torch.compile and the CPU thread budget a job was given."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import time
from pathlib import Path

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
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise PicoError(f"device {name!r} is none of auto, cpu, cuda (or cuda:N) and mps")
    kind, _, index = name.partition(":")
    if kind == "cuda":
        check_cuda_build(name)
    if kind == "cuda" and not torch.cuda.is_available():
        raise PicoError(f"device: {name} was asked for but this machine has no usable CUDA GPU; "
                        "use device: auto or device: cpu")
    if index and int(index) >= (count := torch.cuda.device_count()):
        raise PicoError(f"device: {name} was asked for but this machine's CUDA GPUs are cuda:0 to cuda:{count - 1}; "
                        "use one of them, or device: cuda")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PicoError("device: mps was asked for but MPS is not available here; use device: auto or device: cpu")
    return torch.device(name)


def check_cuda_build(name: str = "cuda") -> None:
    """A CPU build of torch cannot use a GPU on any machine: the study's start says so (picollm.start), as does
    the job."""
    if torch.version.cuda is None:
        raise PicoError(f"device: {name} was asked for but this torch ({torch.__version__}) is a CPU build; install "
                        f"its CUDA build (conda: CONDA_OVERRIDE_CUDA, docs/cluster.md), or use device: cpu")


def use_threads(threads: int) -> None:
    """Use exactly the cores Snakemake gave this job, so `--cores N` never oversubscribes the CPU."""
    torch.set_num_threads(max(1, int(threads)))



@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# /proc/cpuinfo flags that decide a CPU run's speed and precision (precision: auto is bf16 with native bf16)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """Which of CPU_FLAGS the CPU has (empty where /proc/cpuinfo cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return tuple(flag for flag in CPU_FLAGS if flag in have)
    except OSError:
        pass
    return ()


def cpu_caches() -> dict:
    """The first CPU's data caches by level, as the kernel reports them: {"L1d": "48K", "L2": "1024K", ...}."""
    return dict(_cpu_caches())


@functools.cache
def _cpu_caches() -> tuple:
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / name).read_text().strip() for name in ("level", "type", "size"))
        except OSError:
            continue
        if kind != "Instruction":
            caches.append((f"L{level}{'d' if kind == 'Data' else ''}", size))
    return tuple(caches)


def machine_identity(device: torch.device) -> dict:
    """What a speed measurement holds for: the processor (model, flags, caches), torch, the threads, the device.

    A measurement cached under this identity is reused only where all of it is the same."""
    identity = {"cpu_model": cpu_model(), "cpu_flags": list(cpu_flags()), "cpu_caches": cpu_caches(),
                "torch": str(torch.__version__), "threads": torch.get_num_threads(), "device": device.type}
    if device.type == "cuda":
        identity["device"] = f"cuda: {torch.cuda.get_device_name(device)}"
    return identity


def identity_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles), as torch's CPU dispatch sees it."""
    return any(getattr(torch.cpu, probe, lambda: False)()
               for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def autocast_for(device: torch.device, precision: str):
    """The autocast context of train.precision on `device`, or None for fp32.

    auto means bf16 on CUDA GPUs and on CPUs with native bf16 (AVX512-BF16, AMX), fp32 elsewhere: where the CPU
    has to emulate bf16 it is slower than fp32. The CPU half of that rests on `python -m benchmarks --only
    budget` (docs/benchmarks.md), which measures it on your machine too.
    """
    native = device.type == "cuda" or (device.type == "cpu" and native_bf16_cpu())
    use_bf16 = precision == "bf16" or (precision == "auto" and native)
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else None


def median_seconds(call, reps: int) -> float:
    """The median wall time of `reps` calls of `call`, after one untimed call (the first pays one-off costs)."""
    call()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bf16_slowdown(n: int = 256, reps: int = 3) -> float:
    """How many times longer an n x n bf16 matmul takes than an fp32 one on this CPU (medians of `reps`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    return median_seconds(lambda: a16 @ b16, reps) / median_seconds(lambda: a @ b, reps)


def emulated_bf16_note(device: torch.device, precision: str) -> str | None:
    """What train.precision: bf16 costs on a CPU that emulates it (auto would take fp32 there), measured here;
    None where bf16 is native or not asked for."""
    if precision != "bf16" or device.type != "cpu" or native_bf16_cpu():
        return None
    flags = ", ".join(cpu_flags()) or "no AVX flags"
    return (f"train.precision: bf16 on a CPU without native bf16 ({cpu_model()}: {flags}): torch emulates it, and "
            f"a bf16 matmul ran {bf16_slowdown():.0f} times slower than fp32 here; set train.precision: auto "
            f"(fp32 on this CPU) unless you want bf16's rounding")


def compile_model(model: torch.nn.Module) -> None:
    """torch.compile what training runs: the model's `features` (everything before the head, which
    picollm.loss.lm_loss fuses with the loss), replaced on the instance so the state dict keeps its keys.
    On CPU the compiler backend writes C++: without a compiler it would fail in the first step, so say it now."""
    compiler = os.environ.get("CXX", "g++")
    if next(model.parameters()).device.type == "cpu" and not (shutil.which(compiler) or shutil.which("c++")):
        raise PicoError(f"train.compile: true needs a C++ compiler on CPU and {compiler!r} is not on PATH; "
                        f"install one (e.g. apt-get install g++, conda install gxx) or set train.compile: false")
    model.eager_features = model.features
    model.features = torch.compile(model.eager_features)


@contextlib.contextmanager
def eager(model: torch.nn.Module, when: bool = True):
    """Run a compiled model's features eagerly inside the block: forward hooks (layer health) do not fire
    inside compiled code."""
    if not (when and hasattr(model, "eager_features")):
        yield
        return
    compiled, model.features = model.features, model.eager_features
    try:
        yield
    finally:
        model.features = compiled
