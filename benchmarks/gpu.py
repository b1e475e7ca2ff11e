"""GPU check: config/gpu.yaml's Transformer on one CUDA GPU, in at most 8 minutes including start-up.

`python -m benchmarks --only gpu [--out results/benchmarks]` measures and checks, on synthetic tokens over the
full GPT-2 vocabulary (a Markov chain over 512 token ids, so that the model learns sharp next-token
predictions in a few hundred steps and greedy decoding has no near ties):

  train_fp32_eager, train_bf16_eager, train_bf16_compile
      3 x 50 steps of batch 64 x block 512 through the trainer (gpu.yaml's log_interval, so one step in 50 runs
      eager with layer health, as in the study): tokens/s over steps 50-100, MFU, peak memory
      (torch.cuda.max_memory_allocated) and, for compile, the compile time (its start-up overhead less eager's).
  loss_curves_fp32_vs_bf16
      the same model, seed and batches for 200 steps under each precision, every step logged.
  greedy_gpu_vs_cpu, eval_gpu_vs_cpu
      the fp32 run's model.pt decoded greedily and scored (picollm.evaluate.evaluate_model) on the GPU and on
      the CPU, strict fp32 (TF32 off) on both.
  resume_exact
      the bf16 run again, stopped by SIGTERM after step 73 (mid-way between checkpoints), then rerun: it resumes
      from last.pt and must end with the uninterrupted run's metrics.csv.
  torchrun_1_device
      the bf16 run again through torchrun (launch.launch_command, one process): NCCL process group, DDP.

Every training run is its own process (`python -m benchmarks.gpu_child`, the train rule's command watched), so each
starts cold and reports its own peak memory. What each part should cost on an H100 or H200, estimated from its FLOPs
and process starts (each check's JSON record has the measured check_wall_s): start-up, the CPU peak matmul and the
data about 10 s; the two eager throughput runs 30 s; the two curve runs, side by side, 30 s; greedy and evaluation
20 s (the CPU halves dominate); resume and torchrun, side by side, 40 s; the compile run 60-120 s (a cold inductor
cache). About 4 of the 8 minutes.
The compile run goes last: on a slower GPU it is the one that the deadline cuts.

Deadline: 8 minutes from the start of the process, less a reserve for writing the results. A check that
does not start in time, or is cut by the deadline, is recorded as skipped with the reason, never dropped.

Without a CUDA GPU (device auto) the command prints one line and measures nothing; it writes no gpu.json,
so results measured on a GPU machine and copied here are never overwritten by an empty record.
`--quick --device cpu` runs every check at tiny sizes on the CPU (byte tokens, bf16 where the CPU has it):
"GPU vs CPU" is then CPU vs CPU through the same code, and torchrun uses gloo. It tests the harness only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import REPO, Sizes, child_environ, matmul_params, train_flops_per_token

TITLE = "GPU check: config/gpu.yaml's Transformer on one CUDA GPU"
NO_GPU = ("gpu: no CUDA GPU here; nothing measured (python -m benchmarks --only gpu --quick --device cpu checks "
          "the harness)")
BUDGET_S = 8 * 60  # the whole command, interpreter start-up included
RESERVE_S = 15  # after the last check: the JSON, the Markdown, the process exit
STARTUP_S = 60  # the most of the time before this benchmark that counts as its start-up
SEED = 1337
# Two full-size training runs side by side need about twice one's memory; below this a 24 GB card runs them in turn.
OVERLAP_GIB = 40

# Pass criteria.
# fp32 vs bf16: bf16 keeps 8 bits of mantissa, so each step's logits and gradients carry ~0.4% relative error;
# with fp32 master weights the two runs follow the same trajectory up to that noise, which moves a loss of
# 2-5 nats by about 0.01. 0.05 nats is 5x that and far below what a precision bug (a loss or softmax computed
# in bf16, lost fp32 master weights) costs: such bugs move the curve by tenths of a nat.
CURVE_TOL_NATS, CURVE_LAST = 0.05, 50
CURVE_CRITERION = f"mean abs(fp32 - bf16) of the last {CURVE_LAST} logged train losses < {CURVE_TOL_NATS} nats"
# GPU vs CPU evaluation in strict fp32: only summation order differs (~1e-6 relative).
EVAL_RTOL = 1e-4
# Resume and torchrun against the uninterrupted one-process run. On the CPU every kernel is deterministic, so
# they must be bitwise equal. On CUDA the attention backward (flash / memory-efficient SDPA) accumulates with
# atomics, so two identical runs differ in the last bits; 1e-3 nats is still 10x below the batch-to-batch noise
# of a 32,768-token batch (~0.01 nats), so a wrong batch, a lost optimizer state or a skipped step fails it.
REPLAY_TOL_NATS = {"cpu": 0.0, "cuda": 1e-3}

# Dense (no sparsity) tensor-core peak, TFLOP/s, from NVIDIA's datasheets, matched in order against
# torch.cuda.get_device_name(): bf16 with fp32 accumulation where the GPU has bf16, else fp16.
PEAK_TFLOPS = [
    (r"H100.*PCIe", 756.0, "bf16", "H100 PCIe"),
    (r"H100.*NVL", 835.5, "bf16", "H100 NVL"),
    (r"H100|H800", 989.4, "bf16", "H100 SXM"),
    (r"H200.*NVL", 835.5, "bf16", "H200 NVL"),
    (r"GH200|H200", 989.4, "bf16", "H200 / GH200"),
    (r"B200", 2250.0, "bf16", "B200"),
    (r"A100|A800", 312.0, "bf16", "A100"),
    (r"L40S", 362.05, "bf16", "L40S"),
    (r"\bL40\b", 181.05, "bf16", "L40"),
    (r"\bL4\b", 121.0, "bf16", "L4"),
    (r"RTX 6000 Ada", 364.2, "bf16", "RTX 6000 Ada"),
    (r"RTX A6000", 154.8, "bf16", "RTX A6000"),
    (r"\bA40\b", 149.7, "bf16", "A40"),
    (r"\bA30\b", 165.0, "bf16", "A30"),
    (r"\bA10\b", 125.0, "bf16", "A10"),
    (r"RTX 4090", 165.2, "bf16", "RTX 4090"),
    (r"RTX 3090", 71.0, "bf16", "RTX 3090"),
    (r"V100.*PCIE", 112.0, "fp16", "V100 PCIe"),
    (r"V100", 125.0, "fp16", "V100 SXM2"),
    (r"\bT4\b", 65.0, "fp16", "T4"),
]


def peak_for(name: str) -> dict | None:
    for pattern, tflops, dtype, label in PEAK_TFLOPS:
        if re.search(pattern, name, re.IGNORECASE):
            return {"tflops": tflops, "dtype": dtype, "matched": label}
    return None


# --- what runs where ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one invocation: config/gpu.yaml's (full) or tiny ones that only exercise the harness (quick)."""
    device: str
    tokenizer: str
    vocab: int
    eot: int
    model: dict
    block: int
    batch: int
    train: dict  # gpu.yaml's optimizer settings
    states: int  # token ids the synthetic Markov chain visits
    train_tokens: int
    val_tokens: int
    interval: int  # throughput runs: log_interval; 3 x interval steps, tokens/s over the middle third
    curve_steps: int
    stop_at: int  # resume: the step after which the run is sent SIGTERM
    prompt: int
    new_tokens: int
    eval_tokens: int
    threads: int
    compile_backend: str | None  # None: torch.compile's default, inductor
    overlap: bool  # whether independent correctness runs may share the device
    overlap_throughput: bool  # and the throughput runs (--quick only: its numbers mean nothing)
    precisions: tuple  # ("fp32", "bf16"), or ("fp32",) on a CPU without native bf16
    study: dict  # gpu.yaml's run, for the extrapolated wall time

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def gpu_study():
    from picollm.config import load_study
    return load_study([REPO / "config" / "gpu.yaml"])


def plan_for(sz: Sizes, device: str) -> Plan:
    study = gpu_study()
    model = study.models["transformer"].model_dump(exclude_none=True)  # the keys a train job accepts
    train = study.train
    keep = {k: getattr(train, k) for k in ("lr", "min_lr_ratio", "weight_decay", "beta1", "beta2", "grad_clip")}
    extrapolate = {"max_steps": train.max_steps, "batch_size": train.batch_size, "block_size": study.block_size,
                   "eval_interval": train.eval_interval, "eval_batches": train.eval_batches}
    precisions = ("fp32", "bf16") if device == "cuda" or native_bf16() else ("fp32",)
    common = dict(device=device, model=model, train=keep, precisions=precisions, study=extrapolate)
    if sz.quick:  # one thread per child: on a shared CPU, spinning OpenMP threads slow tiny models many-fold
        model.update(d_model=32, n_heads=2, n_layers=2)
        return Plan(tokenizer="byte", vocab=257, eot=256, block=32, batch=8, states=256, train_tokens=20_000,
                    val_tokens=4096, interval=5, curve_steps=60, stop_at=23, prompt=8, new_tokens=24,
                    eval_tokens=1024, threads=1, compile_backend="eager", overlap=True,
                    overlap_throughput=True, **common)
    return Plan(tokenizer="gpt2", vocab=50257, eot=50256, block=study.block_size, batch=train.batch_size,
                states=512, train_tokens=4_000_000, val_tokens=65_536, interval=train.log_interval,
                curve_steps=200, stop_at=73, prompt=16, new_tokens=256, eval_tokens=16_384, threads=train.threads,
                compile_backend=None, overlap=device == "cpu" or gpu_memory_gib() >= OVERLAP_GIB,
                overlap_throughput=False, **common)


def gpu_memory_gib() -> float:
    return torch.cuda.get_device_properties(0).total_memory / 2 ** 30


def native_bf16() -> bool:
    from picollm.device import native_bf16_cpu
    return native_bf16_cpu()


def unavailable(sz: Sizes) -> tuple[str, bool] | None:
    """(the one line to print, whether that is a failure) when this benchmark cannot run as asked, else None."""
    if sz.device == "cpu" and not sz.quick:
        return "gpu: --device cpu runs only with --quick (config/gpu.yaml's sizes take hours on a CPU)", True
    if sz.device != "cpu" and not torch.cuda.is_available():
        return NO_GPU, sz.device == "cuda"  # auto: nothing to measure here, which is no failure
    return None


def gpu_info() -> dict:
    props = torch.cuda.get_device_properties(0)
    name = torch.cuda.get_device_name(0)
    return {"name": name, "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2 ** 30, 1),
            "count": torch.cuda.device_count(), "cuda": torch.version.cuda, "nccl": nccl_version(),
            "peak": peak_for(name)}


def nccl_version():
    try:
        version = torch.cuda.nccl.version()  # a tuple; an int in older torch
    except Exception:  # a build without NCCL: the torchrun check then fails and says so
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


# --- the clock ---------------------------------------------------------------------------------------

class Deadline:
    """BUDGET_S from the start of this process (start-up included), less RESERVE_S. Of the time before this benchmark
    began, at most STARTUP_S counts: after other benchmarks in the same command, the check still gets its budget."""

    def __init__(self):
        now = time.time()
        try:
            import psutil
            started = max(psutil.Process().create_time(), now - STARTUP_S)
        except Exception:
            started = now
        self.end = started + BUDGET_S - RESERVE_S

    def left(self) -> float:
        return self.end - time.time()


class OutOfTime(Exception):
    """The deadline came before or during a check: it is recorded as skipped."""


# --- synthetic tokens --------------------------------------------------------------------------------

def markov_tokens(n: int, plan: Plan, seed: int) -> np.ndarray:
    """n tokens of a chain over plan.states ids: with probability 0.9 the successor of the last id on a fixed
    random cycle, else a uniformly drawn id (end-of-text is never drawn). Vectorized: each restart begins a run
    that walks the cycle, so token t is cycle[(start position of its run + offset in the run) mod states]."""
    rng = np.random.default_rng(seed)
    cycle = np.random.default_rng(0).choice(plan.vocab - 1, plan.states, replace=False)  # the same ids in every split
    restart = rng.random(n) < 0.1
    restart[0] = True
    run_start = np.maximum.accumulate(np.where(restart, np.arange(n), 0))
    first = np.where(restart, rng.integers(0, plan.states, n), 0)[run_start]
    return cycle[(first + np.arange(n) - run_start) % plan.states].astype(np.uint16)


def synthetic_tokens(folder: Path, plan: Plan) -> Path:
    """A token folder as the tokenize stage writes it (train.bin, val.bin, meta.json), one source."""
    folder.mkdir(parents=True, exist_ok=True)
    splits, digests = {}, {}
    for split, n, seed in (("train", plan.train_tokens, 1), ("val", plan.val_tokens, 2)):
        tokens = markov_tokens(n, plan, seed)
        tokens.tofile(folder / f"{split}.bin")
        splits[split] = {"tokens": n, "sources": {"synthetic": {"start": 0, "end": n, "documents": 1}}}
        digests[f"synthetic/{split}"] = hashlib.sha256(tokens.tobytes()).hexdigest()
    meta = {"tokenizer": plan.tokenizer, "vocab_size": plan.vocab, "eot_token": plan.eot, "dtype": "uint16",
            "splits": splits, "raw_sha256": digests, "raw_bytes": {},
            "train_vocab": np.unique(np.fromfile(folder / "train.bin", np.uint16)).tolist(), "provenance": None}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


# --- training runs in child processes ----------------------------------------------------------------

def job_config(plan: Plan, **train) -> dict:
    """A train job's --config (TrainJob): gpu.yaml's model and optimizer, these train keys on top."""
    return {"seed": SEED, "device": plan.device, "block_size": plan.block, "compact_vocab": False,
            "models": {"transformer": plan.model},
            "train": {**plan.train, "batch_size": plan.batch, "threads": plan.threads, "snapshot_steps": [], **train}}


def throughput_key(precision: str, compile_: bool) -> str:
    return f"train_{precision}_{'compile' if compile_ else 'eager'}"


def throughput_config(plan: Plan, precision: str, compile_: bool) -> dict:
    # Validation only at step 0 and at the end, one batch: the steps in between are training alone.
    return job_config(plan, max_steps=3 * plan.interval, log_interval=plan.interval, eval_interval=10 ** 9,
                      eval_batches=1, checkpoint_interval=10 ** 9, warmup_steps=plan.interval,
                      precision=precision, compile=compile_)


def curve_config(plan: Plan, precision: str) -> dict:
    # Every step logged; validation and a rolling checkpoint every quarter of the run.
    quarter = plan.curve_steps // 4
    return job_config(plan, max_steps=plan.curve_steps, log_interval=1, eval_interval=quarter, eval_batches=1,
                      checkpoint_interval=quarter, warmup_steps=plan.curve_steps // 10, precision=precision,
                      compile=False)


def train_argv(config: dict, tokens: Path, out: Path, threads: int) -> list[str]:
    return ["train", "--config", json.dumps(config), "--tokens-dir", str(tokens), "--out-dir", str(out),
            "--threads", str(threads)]


def child_env(extra: dict | None = None) -> dict:
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # torchrun's python
    return child_environ(PATH=path, **(extra or {}))


class Child:
    """A training process, started now and waited for later, so that independent runs overlap their start-up
    (imports, CUDA context). Its output goes to files beside its run folder: two children never block each other
    on a full pipe."""

    def __init__(self, command: list[str], out: Path, clock: Deadline, env: dict | None = None, expect_rc: int = 0):
        if clock.left() <= 0:
            raise OutOfTime("the deadline passed before it started")
        self.out, self.clock, self.expect_rc = out, clock, expect_rc
        self.logs = [out.parent / f"{out.name}.{stream}" for stream in ("stdout", "stderr")]
        out.parent.mkdir(parents=True, exist_ok=True)
        self.t = time.perf_counter()
        with open(self.logs[0], "w") as stdout, open(self.logs[1], "w") as stderr:
            self.proc = subprocess.Popen(command, cwd=REPO, env=child_env(env), stdout=stdout, stderr=stderr,
                                         start_new_session=True)  # its own group: torchrun's workers end with it

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def wait(self) -> dict:
        """The finished run: exit status, gpu_child's report, stderr, wall time, summary.json and metrics.csv."""
        try:
            rc = self.proc.wait(timeout=max(0.0, self.clock.left()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise OutOfTime(f"the deadline came {time.perf_counter() - self.t:.0f} s into the run") from None
        wall = time.perf_counter() - self.t
        stdout, stderr = (path.read_text(errors="replace") for path in self.logs)
        if rc != self.expect_rc:  # the first line names the cause, the tail follows
            raise RuntimeError(f"training exited {rc} (expected {self.expect_rc}): {cause(stderr)}\n"
                               f"{stderr.strip()[-1500:]}")
        lines = stdout.strip().splitlines()
        try:
            report = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            report = {}
        summary, metrics = self.out / "summary.json", self.out / "metrics.csv"
        return {"returncode": rc, "report": report, "stderr": stderr, "wall_s": wall, "out": self.out,
                "summary": json.loads(summary.read_text()) if summary.exists() else None,
                "metrics": pd.read_csv(metrics) if metrics.exists() else None}


def cause(stderr: str) -> str:
    """The line of a failed run's stderr that names why: the last exception line of a traceback (torchrun
    prefixes each worker line with `[rank0]: ` and ends with its own summary), else the last line."""
    lines = [re.sub(r"^\[rank\d+\]:\s*", "", line) for line in stderr.strip().splitlines()]
    exceptions = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Interrupt|Exit)\b.*", line)]
    return (exceptions or lines or ["no output on stderr"])[-1]


def start_train(plan: Plan, config: dict, tokens: Path, out: Path, clock: Deadline, env: dict | None = None,
                expect_rc: int = 0) -> Child:
    """One training run as `python -m benchmarks.gpu_child train ...` (the train rule's command, watched)."""
    if plan.compile_backend:
        env = {**(env or {}), "PICOLLM_BENCH_COMPILE_BACKEND": plan.compile_backend}
    command = [sys.executable, "-m", "benchmarks.gpu_child", *train_argv(config, tokens, out, plan.threads)]
    return Child(command, out, clock, env, expect_rc)


def start_torchrun(plan: Plan, config: dict, tokens: Path, out: Path, clock: Deadline) -> Child:
    """The same run through torchrun with one process, as launch.launch_command builds it (its
    `-m picollm` replaced by the watched gpu_child)."""
    from picollm.launch import launch_command
    command = launch_command(train_argv(config, tokens, out, plan.threads), 1, 1, plan.threads, plan.device == "cuda")
    command[command.index("picollm")] = "benchmarks.gpu_child"
    return Child(command, out, clock, {"OMP_NUM_THREADS": str(plan.threads)})


# --- measurements ------------------------------------------------------------------------------------

def flops_per_token(plan: Plan) -> int:
    """nanoGPT's estimate_mfu: 6 N + 12 L H Q T (N: every parameter but position embeddings, the tied head
    once; picollm's rope model has none)."""
    from picollm.models import build_model
    model = build_model(plan.model, plan.vocab, plan.block)
    n = matmul_params(model, plan.model["d_model"], plan.vocab)
    return train_flops_per_token(n, plan.model["n_layers"], plan.model["d_model"], plan.block)


def throughput(run: dict, plan: Plan, flops: int, peak: dict | None) -> dict:
    """tokens/s over the steady middle third (rows at interval and 2 x interval); the start-up overhead is
    the time to reach step `interval` beyond that pace (validation at step 0, warm-up, compilation)."""
    rows = run["metrics"].set_index("step")["elapsed_s"]
    k = plan.interval
    step_s = (rows[2 * k] - rows[k]) / k
    tokens_per_s = plan.batch * plan.block / step_s
    mfu = tokens_per_s * flops / (peak["tflops"] * 1e12) if peak else None
    return {"tokens_per_s": round(tokens_per_s, 1), "step_ms": round(step_s * 1e3, 2),
            "mfu": round(mfu, 4) if mfu is not None else None, "achieved_tflops": round(tokens_per_s * flops / 1e12, 2),
            "startup_overhead_s": round(rows[k] - k * step_s, 2), "peak_mib": run["report"].get("peak_mib"),
            "peak_source": run["report"].get("peak_source"), "final_train_loss": run["summary"]["final_train_loss"],
            "process_wall_s": round(run["wall_s"], 1)}


def compare_metrics(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Max absolute difference per column of two metrics.csv (elapsed time aside), and whether all are bitwise."""
    cols = ["train_loss", "val_loss", "lr", "grad_norm", "act_rms"]
    if list(a["step"]) != list(b["step"]):
        return {"same_steps": False, "max_abs_diff": {}, "bitwise": False}
    diffs = {}
    for col in cols:
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        both_nan = np.isnan(x) & np.isnan(y)
        d = np.where(both_nan, 0.0, np.abs(x - y))
        diffs[col] = float(np.nan_to_num(d, nan=np.inf).max()) if len(d) else 0.0
    return {"same_steps": True, "max_abs_diff": diffs, "bitwise": all(v == 0 for v in diffs.values())}


def replay_criterion(device: str) -> str:
    tol = REPLAY_TOL_NATS[device]
    return "bitwise equal" if tol == 0 else f"losses within {tol:g} nats"


def replay_display(cmp: dict) -> str:
    if cmp["bitwise"]:
        return "bitwise equal"
    return f"max abs(d loss) {cmp['max_abs_diff'].get('train_loss', float('nan')):.1e}"


def replay_ok(cmp: dict, device: str) -> bool:
    tol = REPLAY_TOL_NATS[device]
    d = cmp["max_abs_diff"]
    return cmp["same_steps"] and d["lr"] == 0 and d["train_loss"] <= tol and d["val_loss"] <= tol


@contextlib.contextmanager
def strict_fp32():
    """TF32 off for the GPU-vs-CPU comparisons: TF32 matmuls round inputs to 10 mantissa bits, which the CPU never
    does (training turns TF32 on for its own process; this process never trained)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def timed_greedy(model_path: Path, device: str, prompt: list, n: int) -> tuple[list, float]:
    from picollm.models import load_model
    from picollm.sampling import generate
    model = load_model(model_path, device)
    generate(model, prompt, 4)  # warm-up: kernels, allocator, caches
    t = time.perf_counter()
    ids = generate(model, prompt, n)  # each step moves its logits to the CPU: the timing includes the sync
    return ids[len(prompt):].tolist(), n / (time.perf_counter() - t)


def greedy_margin(model_path: Path, ids: list) -> float:
    """The smallest gap between the top two logits along the CPU's greedy path (teacher-forced): how far
    the comparison was from a near tie that rounding alone could flip."""
    from picollm.models import load_model
    model = load_model(model_path, "cpu").eval()
    with torch.no_grad():
        logits = model(torch.tensor(ids[:-1])[None])[0].float()
    top2 = logits.topk(2, dim=-1).values
    return float((top2[:, 0] - top2[:, 1]).min())


# --- the checks --------------------------------------------------------------------------------------

def check(name: str, criterion: str, passed, display: str, **values) -> dict:
    return {"name": name, "criterion": criterion, "pass": passed, "display": display, **values}


def skipped(name: str, criterion: str, why: str) -> dict:
    return check(name, criterion, None, "-", skipped=why)


def check_throughput(name: str, run: dict, plan: Plan, flops: int, peak, compile_base: dict | None = None) -> dict:
    t = throughput(run, plan, flops, peak)
    ok = run["summary"]["steps"] == 3 * plan.interval and math.isfinite(t["final_train_loss"])
    if compile_base is not None:
        t["compile_s"] = round(t["startup_overhead_s"] - compile_base["startup_overhead_s"], 1)
    mfu = f", MFU {t['mfu']:.1%}" if t["mfu"] is not None else ""
    memory = f", peak {t['peak_mib']:,.0f} MiB" if t["peak_mib"] is not None else ""
    extra = f", compile {t['compile_s']:.0f} s" if "compile_s" in t else ""
    return check(name, "all steps run, finite loss", ok, f"{t['tokens_per_s']:,.0f} tok/s{mfu}{memory}{extra}", **t)


def check_curves(runs: dict) -> dict:
    a, b = (runs[p]["metrics"].set_index("step")["train_loss"].dropna() for p in ("fp32", "bf16"))
    last = a.index[-CURVE_LAST:]
    diff = (a[last] - b[last]).abs()
    return check("loss_curves_fp32_vs_bf16", CURVE_CRITERION, bool(diff.mean() < CURVE_TOL_NATS),
                 f"mean {diff.mean():.4f}, max {diff.max():.4f} nats",
                 mean_abs_diff=round(float(diff.mean()), 5), max_abs_diff=round(float(diff.max()), 5),
                 final_loss={"fp32": float(a.iloc[-1]), "bf16": float(b.iloc[-1])}, steps=int(a.index[-1]))


def check_greedy(model_path: Path, plan: Plan, val: np.ndarray) -> dict:
    prompt = val[:plan.prompt].astype(int).tolist()
    with strict_fp32():
        here, here_tps = timed_greedy(model_path, plan.device, prompt, plan.new_tokens)
        cpu, cpu_tps = timed_greedy(model_path, "cpu", prompt, plan.new_tokens)
    first = next((i for i, (x, y) in enumerate(zip(here, cpu)) if x != y), None)
    margin = greedy_margin(model_path, prompt + cpu) if len(prompt) + len(cpu) <= plan.block + 1 else None
    return check(f"greedy_{plan.device}_vs_cpu", "the same new token ids (fp32)", here == cpu,
                 f"{len(here)} tokens {'identical' if here == cpu else f'differ from token {first}'}; "
                 f"{here_tps:,.0f} vs {cpu_tps:,.0f} tok/s", identical=here == cpu, first_difference=first,
                 new_tokens=len(here), tokens_per_s={plan.device: round(here_tps, 1), "cpu": round(cpu_tps, 1)},
                 min_top2_logit_gap=None if margin is None else round(margin, 4))


def check_eval(model_path: Path, tokens: Path, plan: Plan) -> dict:
    from picollm.evaluate import evaluate_model
    with strict_fp32(), contextlib.redirect_stderr(io.StringIO()):  # its progress bars: one line per check
        bpb = {d: evaluate_model("transformer", model_path, tokens, device=d, max_tokens=plan.eval_tokens)[0]["bpb"]
               for d in (plan.device, "cpu")}
    rel = abs(bpb[plan.device] - bpb["cpu"]) / bpb["cpu"]
    return check(f"eval_{plan.device}_vs_cpu", f"bits per byte within {EVAL_RTOL:g} relative (fp32)",
                 bool(rel < EVAL_RTOL), f"bpb {bpb[plan.device]:.6f} vs {bpb['cpu']:.6f} (rel {rel:.1e})",
                 bpb=bpb, relative_diff=rel, tokens_scored=plan.eval_tokens)


def check_resume(plan: Plan, config: dict, tokens: Path, out: Path, reference: dict, clock: Deadline) -> dict:
    stop = {"PICOLLM_BENCH_STOP_AT": str(plan.stop_at)}
    start_train(plan, config, tokens, out, clock, env=stop, expect_rc=128 + signal.SIGTERM).wait()
    stopped_with_checkpoint = (out / "last.pt").exists()
    resumed = start_train(plan, config, tokens, out, clock).wait()
    found = re.search(r"resuming from .* at step (\d+)", resumed["stderr"])
    step = int(found.group(1)) if found else None
    cmp = compare_metrics(resumed["metrics"], reference["metrics"])
    ok = stopped_with_checkpoint and step == plan.stop_at and replay_ok(cmp, plan.device)
    return check("resume_exact", f"SIGTERM after step {plan.stop_at}, the rerun resumes there; metrics.csv as the "
                 f"uninterrupted run's ({replay_criterion(plan.device)})", ok,
                 f"resumed at step {step}; {replay_display(cmp)}", resumed_at=step, **cmp)


def check_torchrun(plan: Plan, child: Child, reference: dict) -> dict:
    run = child.wait()
    report = run["report"]
    backend = "nccl" if plan.device == "cuda" else "gloo"
    cmp = compare_metrics(run["metrics"], reference["metrics"])
    ok = (report.get("backend") == backend and report.get("loss_module") == "DistributedDataParallel"
          and replay_ok(cmp, plan.device))
    return check("torchrun_1_device", f"torchrun --nproc-per-node 1 trains with a {backend} group and DDP; metrics "
                 f"as one process's ({replay_criterion(plan.device)})", ok,
                 f"backend {report.get('backend')}, {report.get('loss_module')}, {replay_display(cmp)}",
                 backend=report.get("backend"), loss_module=report.get("loss_module"),
                 world_size=report.get("world_size"), **cmp)


class Checks:
    """Runs the checks in order against the deadline; each ends as pass, fail (with its error) or skipped."""

    def __init__(self, plan: Plan, tokens: Path, tmp: Path, clock: Deadline, flops: int, peak: dict | None):
        self.plan, self.tokens, self.tmp, self.clock, self.flops, self.peak = plan, tokens, tmp, clock, flops, peak
        self.runs: dict = {}  # name -> finished training run
        self.results: dict = {}
        self.children: list[Child] = []  # every process started, killed if still running at the end

    def attempt(self, name: str, criterion: str, fn, needs: tuple = ()) -> None:
        missing = [n for n in needs if n not in self.runs]
        t = time.perf_counter()
        try:
            if missing:
                result = skipped(name, criterion, f"needs the {', '.join(missing)} run, which did not finish")
            else:
                result = fn()
        except OutOfTime as exc:
            result = skipped(name, criterion, f"out of time: {exc}")
        except Exception as exc:  # a failed check is recorded and the others still run
            result = check(name, criterion, False, "error", error=f"{type(exc).__name__}: {exc}"[-2000:])
        result["check_wall_s"] = round(time.perf_counter() - t, 1)  # what the check cost, runs it waited for included
        self.results[name] = result
        shown = result["display"] if result["pass"] is not None else result["skipped"]
        error = " " + result["error"].splitlines()[0][:300] if "error" in result else ""
        print(f"  {name:<26} {verdict(result):<7} {shown}{error} [{result['check_wall_s']:.0f} s]", flush=True)

    def start(self, key: str, config: dict) -> Child:
        child = start_train(self.plan, config, self.tokens, self.tmp / key, self.clock)
        self.children.append(child)
        return child

    def finish(self, key: str, child: Child) -> dict:
        self.runs[key] = child.wait()
        return self.runs[key]

    def start_throughput(self, variant: tuple) -> Child:
        return self.start(throughput_key(*variant), throughput_config(self.plan, *variant))

    def throughput(self, variant: tuple, child: Child | None = None) -> None:
        precision, compile_ = variant
        key = throughput_key(*variant)
        base = self.results.get(f"train_{precision}_eager") if compile_ else None
        if base is not None and not base.get("tokens_per_s"):
            base = None  # no eager baseline: the compile time is then not separable from the start-up
        self.attempt(key, "all steps run, finite loss", lambda: check_throughput(
            key, self.finish(key, child or self.start_throughput(variant)), self.plan, self.flops, self.peak, base))

    def curves(self) -> dict:
        started = {}
        for precision in self.plan.precisions:  # side by side where they fit: their start-ups overlap
            key = f"curve_{precision}"
            started[key] = self.start(key, curve_config(self.plan, precision))
            if not self.plan.overlap:
                self.finish(key, started.pop(key))
        for key, child in started.items():
            self.finish(key, child)
        if "bf16" not in self.plan.precisions:
            return skipped("loss_curves_fp32_vs_bf16", CURVE_CRITERION, "this CPU has no native bf16: fp32 only")
        return check_curves({p: self.runs[f"curve_{p}"] for p in ("fp32", "bf16")})

    def start_torchrun(self, config: dict):
        """The torchrun child, started beside the resume runs where they fit; or the error that kept it from starting."""
        try:
            child = start_torchrun(self.plan, config, self.tokens, self.tmp / "torchrun", self.clock)
        except Exception as exc:
            return exc
        self.children.append(child)
        return child

    def torchrun(self, pending, reference: dict) -> dict:
        if isinstance(pending, Exception):
            raise pending
        return check_torchrun(self.plan, pending, reference)

    def run_all(self) -> dict:
        try:
            self.sequence()
        finally:
            for child in self.children:
                child.kill()
        return self.results

    def sequence(self) -> None:
        plan, ref = self.plan, f"curve_{self.plan.precisions[-1]}"
        variants = [(p, False) for p in plan.precisions] + [(plan.precisions[-1], True)]
        # --quick: all at once (its numbers mean nothing); else one at a time, alone on the device
        started = {v: self.start_throughput(v) for v in variants} if plan.overlap_throughput else {}
        for variant in variants[:-1]:
            self.throughput(variant, started.get(variant))
        self.attempt("loss_curves_fp32_vs_bf16", CURVE_CRITERION, self.curves)
        model = self.tmp / "curve_fp32" / "model.pt"
        val = np.fromfile(self.tokens / "val.bin", np.uint16)
        self.attempt(f"greedy_{plan.device}_vs_cpu", "the same new token ids (fp32)",
                     lambda: check_greedy(model, plan, val), needs=("curve_fp32",))
        self.attempt(f"eval_{plan.device}_vs_cpu", f"bits per byte within {EVAL_RTOL:g} relative (fp32)",
                     lambda: check_eval(model, self.tokens, plan), needs=("curve_fp32",))
        config = curve_config(plan, plan.precisions[-1])
        pending = self.start_torchrun(config) if plan.overlap and ref in self.runs else None
        self.attempt("resume_exact", "SIGTERM mid-run, the rerun resumes to the uninterrupted run's metrics",
                     lambda: check_resume(plan, config, self.tokens, self.tmp / "resume", self.runs[ref], self.clock),
                     needs=(ref,))
        self.attempt("torchrun_1_device", "torchrun with one process: NCCL (gloo on CPU) and DDP, one process's metrics",
                     lambda: self.torchrun(pending or self.start_torchrun(config), self.runs[ref]), needs=(ref,))
        self.throughput(variants[-1], started.get(variants[-1]))  # last: on a slow GPU, what the deadline cuts


def verdict(result: dict) -> str:
    return {True: "pass", False: "FAIL", None: "skipped"}[result["pass"]]


# --- the estimate ------------------------------------------------------------------------------------

def extrapolate(results: dict, plan: Plan) -> dict | None:
    """config/gpu.yaml's training time from the fastest measured bf16 (else fp32) run: its steps at that pace,
    its validation passes at a third of it (forward only), and that run's start-up overhead (compilation)."""
    precision = plan.precisions[-1]
    measured = [results.get(f"train_{precision}_{mode}") for mode in ("eager", "compile")]
    measured = [r for r in measured if r and r["pass"] and r.get("tokens_per_s")]
    if not measured:
        return None
    best = max(measured, key=lambda r: r["tokens_per_s"])
    s = plan.study
    tokens = s["max_steps"] * s["batch_size"] * s["block_size"]
    evals = s["max_steps"] // s["eval_interval"] + 1
    eval_tokens = evals * s["eval_batches"] * s["batch_size"] * s["block_size"]
    train_s = tokens / best["tokens_per_s"]
    eval_s = eval_tokens / (3 * best["tokens_per_s"])
    total = train_s + eval_s + max(0.0, best["startup_overhead_s"])
    return {"from": best["name"], "tokens_per_s": best["tokens_per_s"], "train_tokens": tokens,
            "train_s": round(train_s), "eval_s": round(eval_s), "startup_s": best["startup_overhead_s"],
            "total_s": round(total), "total_h": round(total / 3600, 2),
            "not_counted": "checkpoints (every 1,000 steps), snapshots, model.pt, data loading before the first step"}


# --- the benchmark -----------------------------------------------------------------------------------

def run(sz: Sizes, peak: dict) -> dict:
    clock = Deadline()
    device = "cpu" if sz.device == "cpu" else "cuda"
    plan = plan_for(sz, device)
    gpu = gpu_info() if device == "cuda" else None
    peak_gpu = gpu["peak"] if gpu else None
    flops = flops_per_token(plan)
    print(f"  gpu: {gpu['name'] if gpu else 'CPU (harness check)'}, {clock.left():.0f} s left", flush=True)
    with tempfile.TemporaryDirectory(prefix="picollm-gpu-") as tmp:
        tokens = synthetic_tokens(Path(tmp) / "tokens", plan)
        results = Checks(plan, tokens, Path(tmp), clock, flops, peak_gpu).run_all()
    estimate = extrapolate(results, plan)
    if estimate:
        print(f"  gpu.yaml wall time (estimate) {estimate['total_h']:.2f} h: {estimate['train_tokens']:,} tokens at "
              f"{estimate['tokens_per_s']:,.0f} tok/s ({estimate['from']}) + validation {estimate['eval_s']} s + "
              f"start-up {estimate['startup_s']:.0f} s", flush=True)
    failed = [f"{n}: {r.get('error') or r['display']}" for n, r in results.items() if r["pass"] is False]
    command = "python -m benchmarks --only gpu" + " --quick" * sz.quick + " --device cpu" * (device == "cpu")
    where = (f"On one {gpu['name']} ({gpu['memory_gib']} GiB), CUDA {gpu['cuda']}, torch {torch.__version__}." if gpu
             else "On the CPU (--device cpu): a test of the harness, not a GPU measurement.")
    return {"title": TITLE, "measured": True, "device": device, "gpu": gpu, "plan": plan.as_dict(),
            "command": command, "description": where,
            "flops_per_token": flops, "results": results, "extrapolation": estimate, "errors": failed,
            "skipped": [n for n, r in results.items() if r["pass"] is None], "targets": [],
            "notes": notes(plan, gpu, flops, results, estimate), "table": table(results)}


def table(results: dict) -> dict:
    return {"columns": ["check", "result", "value", "criterion"],
            "rows": [[n, verdict(r), r["display"] if r["pass"] is not None else r["skipped"], r["criterion"]]
                     for n, r in results.items()]}


def notes(plan: Plan, gpu: dict | None, flops: int, results: dict, estimate: dict | None) -> list[str]:
    out = []
    if gpu:
        peak = gpu["peak"]
        out.append(f"GPU: {gpu['name']} (compute capability {gpu['capability']}, {gpu['memory_gib']} GiB, "
                   f"{gpu['count']} visible), CUDA {gpu['cuda']}, NCCL {gpu['nccl']}, torch {torch.__version__}.")
        out.append(f"MFU against the dense {peak['dtype']} peak of the {peak['matched']}, {peak['tflops']:g} TFLOP/s "
                   f"(NVIDIA's datasheet), for every row, fp32 (TF32) included, as nanoGPT does." if peak else
                   f"MFU: null. {gpu['name']!r} is not in benchmarks/gpu.py's PEAK_TFLOPS table; add its dense "
                   f"bf16 TFLOP/s there.")
    else:
        out.append("Measured on the CPU with --quick --device cpu: a test of the harness; the numbers mean nothing "
                   "and MFU is null (no GPU peak).")
    shrunk = " shrunk by --quick" if plan.tokenizer == "byte" else ""
    out.append(f"Model: config/gpu.yaml's Transformer{shrunk}, {plan.model}, at vocab {plan.vocab}, block {plan.block}, "
               f"batch {plan.batch}; {flops:,} training FLOPs per token (nanoGPT's estimate_mfu: 6 N + 12 L H Q T).")
    out.append(f"Data: synthetic tokens ({plan.tokenizer} ids), a Markov chain over {plan.states} ids (next id on a "
               f"fixed random cycle with probability 0.9, else uniform): learnable in a few hundred steps, so greedy "
               f"decoding has clear winners.")
    alone = " (with --quick all at once: their numbers mean nothing)" if plan.overlap_throughput else ""
    backend = (f" (--quick compiles with dynamo's {plan.compile_backend} backend, not inductor)"
               if plan.compile_backend else "")
    out.append(f"Throughput rows: {3 * plan.interval} steps with log_interval {plan.interval} (in a full run gpu.yaml's), "
               f"each in a fresh process alone on the device{alone}; tokens/s over steps {plan.interval}-"
               f"{2 * plan.interval}; the compile time is the compile run's start-up overhead less the eager run's"
               f"{backend}. The GPU-vs-CPU checks run in strict fp32 (TF32 off); training's fp32 rows use TF32 matmuls, "
               f"as the trainer does on CUDA.")
    out.append(f"Tolerances: fp32 vs bf16 {CURVE_TOL_NATS} nats (bf16 rounding moves a 2-5 nat loss by ~0.01; precision "
               f"bugs by tenths); resume and torchrun bitwise on the CPU, within 1e-3 nats on CUDA (atomics in the "
               f"attention backward; batch-to-batch noise is ~0.01 nats).")
    if estimate:
        out.append(f"config/gpu.yaml's training (estimate, not measured): {estimate['total_s']:,} s = "
                   f"{estimate['total_h']:.2f} h: {estimate['train_tokens']:,} tokens at {estimate['tokens_per_s']:,.0f} "
                   f"tok/s ({estimate['from']}), {estimate['eval_s']:,} s of validation, {estimate['startup_s']:.0f} s "
                   f"start-up; not counted: {estimate['not_counted']}.")
    for name, r in results.items():
        if r["pass"] is None:
            out.append(f"Skipped: {name}: {r['skipped']}.")
    return out
