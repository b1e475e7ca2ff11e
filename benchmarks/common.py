"""Shared pieces: the machine record, the peak-matmul measurement, interleaved timing, sizes, FLOPs, profiles."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # the checkout's own picollm, as the Snakemake rules use
    sys.path.insert(0, str(REPO / "src"))

from picollm.device import cpu_caches, cpu_flags, cpu_model  # noqa: E402  (after the path is set)


@dataclass(frozen=True)
class Sizes:
    """Every size a benchmark uses; FULL is what the targets are stated for, QUICK only checks the harness."""
    quick: bool
    threads: int
    warmup: int  # untimed calls of each variant before the measured rounds
    reps: int  # measured, interleaved rounds (the median is reported)
    vocab: int  # GPT-2's 50257
    # 1. training: our Transformer vs GPT2LMHeadModel
    block: int
    batch: int
    d_model: int
    n_layers: int
    n_heads: int
    # 2. k-gram (hyperparameters of config/config.yaml's kgram_mlp)
    kgram_k: int
    kgram_embed: int
    kgram_hidden: int
    kgram_inner: int
    starter_batch: int  # the starter-style k-gram is benchmarked at this smaller batch x seq
    starter_seq: int
    # 3. generation
    gen_block: int  # block_size / n_positions of the generation models: prompt + new tokens fit
    gen_prompt: int
    gen_new: int
    gen_reps: int
    lstm_embed: int
    lstm_hidden: int
    # 4. peak matmul size(s)
    peak_sizes: tuple
    # 5. study: measured steps of the default study per model before extrapolating
    study_steps: int
    # 6. budget: minutes of training per recipe (python -m benchmarks --minutes)
    budget_minutes: float = 10.0
    # 7. recipe: seeds per recipe (first_seed, first_seed + 1, ...), which recipes (empty: all), and the full
    # vocabulary instead of the compact one
    recipe_seeds: int = 3
    first_seed: int = 1337
    recipes: tuple = ()
    full_vocab: bool = False
    out: str = "results/benchmarks"  # where a benchmark may keep finished runs between invocations
    device: str = "auto"  # the gpu benchmark's device: auto (CUDA if present), cuda, or cpu (with --quick only)
    # 8. lm_eval: the Llama docs/lm-eval.md scores both ways (training steps, windows per step, block_size) and the
    # lines of the local TinyStories heads it reads (train: None, the whole head)
    lmeval_steps: int = 400
    lmeval_batch: int = 16
    lmeval_block: int = 128
    lmeval_train_lines: int | None = None
    lmeval_val_lines: int = 1000

    def as_dict(self) -> dict:
        return asdict(self)


def sizes(quick: bool, threads: int) -> Sizes:
    if quick:
        return Sizes(quick=True, threads=threads, warmup=1, reps=5, vocab=256, block=32, batch=2, d_model=32,
                     n_layers=1, n_heads=2, kgram_k=3, kgram_embed=8, kgram_hidden=32, kgram_inner=1,
                     starter_batch=1, starter_seq=8, gen_block=64, gen_prompt=4, gen_new=16, gen_reps=5,
                     lstm_embed=16, lstm_hidden=32, peak_sizes=(256,), study_steps=0, budget_minutes=0.05,
                     lmeval_steps=4, lmeval_batch=4, lmeval_block=32, lmeval_train_lines=200, lmeval_val_lines=40)
    return Sizes(quick=False, threads=threads, warmup=2, reps=7, vocab=50257, block=256, batch=8, d_model=256,
                 n_layers=4, n_heads=4, kgram_k=3, kgram_embed=64, kgram_hidden=256, kgram_inner=1,
                 starter_batch=1, starter_seq=8, gen_block=512, gen_prompt=16, gen_new=256, gen_reps=5,
                 lstm_embed=128, lstm_hidden=256, peak_sizes=(2048, 4096), study_steps=30)


# --- the machine ---------------------------------------------------------------------------------------

def _version(name: str):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(threads: int) -> dict:
    try:
        import psutil
        memory_gib = round(psutil.virtual_memory().total / 2 ** 30, 1)
    except ImportError:
        memory_gib = None
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": list(cpu_flags()),
        "cpu_caches": cpu_caches(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "device": "cpu",
        "memory_gib": memory_gib,
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "numpy": _version("numpy"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# the size of an emulated bf16 matmul's timing: about 30 MFLOP, tens of milliseconds at an emulated GFLOP/s
EMULATED_BF16_N = 256


def peak_matmul(sizes_: tuple, reps: int = 5) -> dict:
    """Matmul GFLOP/s on square matrices, median of `reps` after one warm-up: fp32 through torch.mm (the BLAS) per
    size, and at the largest size fp32 through oneDNN (where torch has it) and bf16 through torch.mm. The peak is
    the best fp32 rate, whichever library reached it: both are within plain PyTorch's reach. A CPU without native
    bf16 emulates it at about a GFLOP/s, where six bf16 products of the largest size would take many minutes: there
    bf16 is timed at n = EMULATED_BF16_N."""
    from picollm.device import median_seconds, native_bf16_cpu
    from picollm.fused_head import block_logits, onednn_available

    def rate(fn, n):
        return round(2 * n ** 3 / median_seconds(fn, reps) / 1e9, 1)

    per_size = {}
    for n in sizes_:
        a, b = torch.randn(n, n), torch.randn(n, n)
        per_size[str(n)] = rate(lambda: torch.mm(a, b), n)
    n = max(sizes_)
    a, b = torch.randn(n, n), torch.randn(n, n)
    onednn = rate(lambda: block_logits(a, b, None, "onednn"), n) if onednn_available() else None
    n16 = n if native_bf16_cpu() else min(n, EMULATED_BF16_N)
    a16, b16 = a[:n16, :n16].bfloat16(), b[:n16, :n16].bfloat16()
    bf16 = rate(lambda: torch.mm(a16, b16), n16)
    bf16_where = "" if n16 == n else f" (bf16 at n = {n16}: this CPU has no native bf16)"
    return {"gflops_by_size": per_size, "onednn_fp32_gflops": onednn, "bf16_gflops": bf16, "bf16_n": n16,
            "peak_gflops": max([*per_size.values(), onednn or 0.0]),
            "method": f"fp32 torch.mm of n x n matrices, n in {list(sizes_)}, and at n = {n} fp32 through oneDNN "
                      f"(torch.ops.mkldnn._linear_pointwise) and bf16 torch.mm{bf16_where}; median of {reps} after a "
                      f"warm-up; the peak is the best fp32 rate"}


def machine_line(machine: dict, peak: dict) -> str:
    """The machine in one line: CPU, flags, caches, threads, torch, and its matmul rates."""
    caches = ", ".join(f"{k} {v}" for k, v in (machine.get("cpu_caches") or {}).items()) or "caches unknown"
    onednn = f", oneDNN {peak['onednn_fp32_gflops']:.0f}" if peak.get("onednn_fp32_gflops") else ""
    return (f"{machine['cpu_model']} ({', '.join(machine.get('cpu_flags') or []) or 'no AVX-512'}; {caches}), "
            f"{machine['torch_threads']} threads, torch {machine['torch']}; matmul GFLOP/s: fp32 "
            f"{max(peak['gflops_by_size'].values()):.0f}{onednn}, bf16 {peak['bf16_gflops']:.0f}")


# --- timing --------------------------------------------------------------------------------------------

class CpuMeter:
    """CPU time the rest of the machine used while a sample ran (from /proc/stat, minus this process's own).

    On a shared machine another job's burst can slow one sample several-fold; a sample during which other
    processes (or the hypervisor: steal time) used more than `tolerance` of a core on average, beyond a
    small slack for clock ticks, counts as contaminated and is taken again. Where /proc/stat is missing
    (not Linux), nothing is filtered.
    """

    def __init__(self, tolerance: float = 0.10, slack_s: float = 0.05):
        self.tolerance, self.slack_s = tolerance, slack_s
        self.enabled = Path("/proc/stat").exists()
        self.hz = os.sysconf("SC_CLK_TCK") if self.enabled else 100

    def snapshot(self) -> tuple[float, float]:
        own = os.times()
        if not self.enabled:
            return 0.0, own.user + own.system
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        busy = sum(vals) - vals[3] - vals[4]
        return busy / self.hz, own.user + own.system + own.children_user + own.children_system

    def others(self, before, after) -> float:
        """CPU seconds used by everything but this process (and its children) between two snapshots."""
        return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) if self.enabled else 0.0

    def clean(self, others_s: float, wall_s: float) -> bool:
        return others_s <= self.slack_s + self.tolerance * wall_s


METER = CpuMeter()
CLEAN_RULE = (f"a sample counts only if the rest of the machine used <= {METER.tolerance:.0%} of one core "
              f"(+{METER.slack_s * 1e3:.0f} ms) while it ran (/proc/stat busy time minus this process's); a "
              f"contaminated sample is retaken, up to 3 tries, after which the least contaminated try is kept")


def interleaved(variants: dict, warmup: int, reps: int, setup=None, max_tries: int = 3) -> dict:
    """Time each callable `reps` times, round-robin (A B C A B C ...), after `warmup` untimed calls of each.

    Interleaving spreads any drift of the machine (thermal state, slow load changes) over every variant alike;
    CpuMeter retakes a sample that another process's burst of work overlapped. `setup(name)`, if given, runs
    untimed before each call. Returns {name: {median_s, min_s, max_s, samples_s, retaken, contaminated_kept}}.
    """
    for _ in range(warmup):
        for name, fn in variants.items():
            if setup:
                setup(name)
            fn()
    samples = {name: [] for name in variants}
    retaken = {name: 0 for name in variants}
    kept_dirty = {name: 0 for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            tries = []
            for attempt in range(max_tries):
                if setup:
                    setup(name)
                before = METER.snapshot()
                t = time.perf_counter()
                fn()
                wall = time.perf_counter() - t
                others = METER.others(before, METER.snapshot())
                tries.append((others / max(wall, 1e-9), wall, METER.clean(others, wall)))
                if tries[-1][2]:
                    break
                retaken[name] += 1
            best = min(tries, key=lambda tr: (not tr[2], tr[0]))
            kept_dirty[name] += not best[2]
            samples[name].append(best[1])
    return {name: {"median_s": statistics.median(s), "min_s": min(s), "max_s": max(s),
                   "samples_s": [round(x, 5) for x in s], "retaken": retaken[name],
                   "contaminated_kept": kept_dirty[name]} for name, s in samples.items() if s}


# --- FLOPs ---------------------------------------------------------------------------------------------

FLOPS_FORMULA = ("training FLOPs/token = 6 * (N_matmul) + 12 * n_layers * d_model * block, where N_matmul = "
                 "parameters outside the embedding tables + the LM head's d_model * vocab (counted once, whether "
                 "or not it is tied to the token embedding); the second term is causal self-attention's QK^T and "
                 "AV (forward + backward, full T x T as in nanoGPT/PaLM). MFU = tokens/s * FLOPs/token / peak.")


def matmul_params(model: torch.nn.Module, d_model: int, vocab: int) -> int:
    """Parameters outside the embedding tables, plus the LM head's d_model * vocab (once, tied or not)."""
    total = sum(p.numel() for p in model.parameters())  # a tied weight is one Parameter, counted once
    embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    head_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    head = _head_weight(model)
    untied_head = head is not None and id(head) not in head_params
    # an untied head is already in total - embedding; a tied one must be added back
    return total - embedding + (0 if untied_head else d_model * vocab)


def _head_weight(model):
    for name in ("head", "lm_head"):
        mod = getattr(model, name, None)
        if isinstance(mod, torch.nn.Linear):
            return mod.weight
    return None


def train_flops_per_token(n_matmul: int, n_layers: int, d_model: int, block: int) -> int:
    return 6 * n_matmul + 12 * n_layers * d_model * block


# --- profiles ------------------------------------------------------------------------------------------

def profile_breakdown(fn, vocab: int, top: int = 10) -> dict:
    """Run fn once under torch.profiler; share of self CPU time by category, and the top ops with shapes.

    Categories: lm_head_matmul (a matmul with a vocab-sized dimension), cross_entropy (log-softmax, NLL and
    their backward, and filling (N, vocab) tensors), other_matmul, attention (SDPA), optimizer (anything inside
    Optimizer.step / zero_grad), grad_clip (inside the record_function 'grad_clip'), other.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    events = [e for e in prof.events() if e.self_cpu_time_total > 0]
    totals: dict[str, float] = {}
    by_op: dict[tuple, float] = {}
    for e in events:
        cat = _category(e, vocab)
        totals[cat] = totals.get(cat, 0.0) + e.self_cpu_time_total
        key = (e.name, str(e.input_shapes)[:120])
        by_op[key] = by_op.get(key, 0.0) + e.self_cpu_time_total
    total = sum(totals.values()) or 1.0
    top_ops = sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
    return {
        "self_cpu_ms": round(total / 1e3, 1),
        "share": {k: round(v / total, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
        "self_ms": {k: round(v / 1e3, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
        "top_ops": [{"op": name, "shapes": shapes, "self_cpu_ms": round(t / 1e3, 1), "share": round(t / total, 3)}
                    for (name, shapes), t in top_ops],
    }


MATMULS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
           "mkldnn::_linear_pointwise")
CE_OPS = ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss", "aten::nll_loss_forward",
          "aten::nll_loss_backward", "aten::nll_loss2d_forward", "aten::logsumexp", "aten::_softmax",
          "aten::exp", "aten::exp_", "aten::sub_", "aten::softmax")
FILLS = ("aten::fill_", "aten::zero_", "aten::scatter_", "aten::gather", "aten::index_put_")


def _category(event, vocab: int) -> str:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer."):
            return "optimizer"
        if parent.name == "grad_clip":
            return "grad_clip"
        parent = parent.cpu_parent
    shapes = [s for s in (event.input_shapes or []) if isinstance(s, (list, tuple))]
    if event.name in MATMULS:
        return "lm_head_matmul" if any(vocab in s for s in shapes) else "other_matmul"
    if "scaled_dot_product" in event.name:
        return "attention"
    vocab_rows = any(s and s[-1] == vocab for s in shapes)  # a (..., vocab) logits-shaped tensor
    if "nll_loss" in event.name or (vocab_rows and (event.name in CE_OPS or event.name in FILLS)):
        return "cross_entropy"
    return "other"


def fmt(x, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.{digits}f}" if abs(x) >= 10 else f"{x:.3g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


# --- runs in fresh processes ---------------------------------------------------------------------------

def child_environ(**extra: str) -> dict:
    """This process's environment for a child `python -m benchmarks...`: the checkout (benchmarks and its src/) first
    on PYTHONPATH, and the caller's PYTHONPATH kept after it (packages installed with --target on an offline node)."""
    path = [str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path)), **extra}


def run_child(module: str, spec: dict, what: str, env: dict | None = None) -> dict:
    """`python -m <module> <spec as JSON>` with this checkout on the path; its last stdout line, as JSON."""
    env = child_environ(**(env or {}))
    proc = subprocess.run([sys.executable, "-m", module, json.dumps(spec)], env=env, capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def skipped(title: str, why: str) -> dict:
    """The result of a benchmark that could not run here (its input is missing)."""
    return {"title": title, "results": {}, "targets": [], "notes": [f"skipped: {why}"],
            "table": {"columns": [], "rows": []}}
