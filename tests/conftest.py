"""Shared fixtures: paths to the project and ../shared, offline tokenizer cache, tiny configs, and a
helper that runs the real Snakemake workflow in a temporary directory."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TINYSTORIES_TRAIN = SHARED / "tinystories" / "TinyStories-train-head.txt"
TINYSTORIES_VALID = SHARED / "tinystories" / "TinyStories-valid-head.txt"
TIKTOKEN_CACHE = SHARED / "tiktoken-cache"

if TIKTOKEN_CACHE.is_dir() and "TIKTOKEN_CACHE_DIR" not in os.environ:
    os.environ["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_CACHE.resolve())
# Measurements of the machine (picollm.head_plan) go to a folder of this test session, not the user's cache.
os.environ.setdefault("PICOLLM_CACHE_DIR", tempfile.mkdtemp(prefix="picollm-test-cache-"))


# The modules whose tests take longest, longest first: pytest-xdist hands whole modules to its workers in this order
# (pyproject's addopts), so that no long module is started last while the other workers sit idle. test_slurm
# (a real SLURM cluster, with PICOLLM_SLURM_TESTS=1) mostly waits on it, beside the others.
LONGEST_FIRST = ["test_slurm", "test_faults", "test_scaling", "test_workflow", "test_dag", "test_replicates",
                 "test_ddp", "test_train", "test_extending", "test_benchmarks", "test_config", "test_plots",
                 "test_sampling", "test_hub", "test_models"]


def pytest_xdist_auto_num_workers(config):
    """-n auto: one worker per CPU this process may run on (its affinity: a container's or a CI slot's share, not
    the host's cores), at most 4, since each test's Snakemake runs jobs on two."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: a module's own order kept


def gpt2_available() -> bool:
    try:
        import tiktoken
        tiktoken.get_encoding("gpt2")
        return True
    except Exception:
        return False


needs_gpt2 = pytest.mark.skipif(not gpt2_available(),
                                reason="GPT-2 BPE files unavailable offline (no ../shared/tiktoken-cache, no network)")
needs_tinystories = pytest.mark.skipif(not (TINYSTORIES_TRAIN.is_file() and TINYSTORIES_VALID.is_file()),
                                       reason="../shared/tinystories sample files are absent")


def byte_tokens(root: Path) -> Path:
    """A token folder of 3seqs lines (1,400 train, 100 validation) in the byte tokenizer, under root/tok."""
    from picollm.data.sources import three_seqs, write_documents
    from picollm.data.tokens import tokenize
    lines = list(three_seqs(1500, 8, seed=0))
    write_documents(root / "raw" / "s" / "train.txt", lines[100:])
    write_documents(root / "raw" / "s" / "val.txt", lines[:100])
    tokenize("byte", {"s": {"train": root / "raw/s/train.txt", "val": root / "raw/s/val.txt"}}, root / "tok", 1)
    return root / "tok"


def tiny_offline_config(experiment="tiny", steps=40, **overrides) -> dict:
    """The offline study shrunk to seconds: 3seqs, byte tokenizer, all three model types."""
    cfg = {
        "experiment": experiment, "seeds": [7], "device": "cpu", "tokenizer": "byte", "block_size": 32,
        "data": {"sources": [{"kind": "3seqs", "num_sequences": 600, "max_terms": 8}]},
        "train": {"max_steps": steps, "batch_size": 8, "lr": 0.003, "warmup_steps": 5, "eval_interval": 20,
                  "eval_batches": 4, "checkpoint_interval": 10, "log_interval": 5, "threads": 1},
        "models": {
            "kgram_mlp": {"type": "kgram_mlp", "k": 3, "embed_dim": 16, "hidden_dim": 32},
            "lstm": {"type": "lstm", "embed_dim": 16, "hidden_dim": 32},
            "transformer": {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 1},
        },
        "sampling": {"prompts": ["1 2 3", ""], "p_values": [0.9, 1.0], "max_new_tokens": 12, "num_samples": 2},
    }
    cfg.update(overrides)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# The SLURM executor plugin runs `scontrol show config` whenever snakemake starts; on a machine with SLURM's
# client installed (tests/test_slurm.py installs it) but no controller running, that call waits out its 10 s
# timeout on every start. Local runs do not use SLURM, so their PATH finds a `scontrol` that fails at once,
# which the plugin treats like a machine without SLURM.
NO_SLURM_BIN = Path(__file__).resolve().parent / "no-slurm-bin"


def local_run_env() -> dict:
    """Environment for a local snakemake run: this venv's python first, and no SLURM controller queries."""
    path = os.pathsep.join([str(NO_SLURM_BIN), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path}


def snakemake_command(workdir: Path, *args) -> list[str]:
    """The project's Snakefile with `workdir` as working directory (results/ land there)."""
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(workdir),
            *map(str, args)]


def snakemake(workdir: Path, *args, timeout=900) -> subprocess.CompletedProcess:
    """Run snakemake_command(workdir, *args) to the end, capturing its output."""
    return subprocess.run(snakemake_command(workdir, *args), capture_output=True, text=True, timeout=timeout,
                          env=local_run_env())


def picollm(*args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m picollm ...` as a user would."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "picollm", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kwargs)
