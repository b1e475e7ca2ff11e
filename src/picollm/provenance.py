"""Provenance: what made an output (code commit, package versions, config, seed, input hashes).

Every stage writes one record per job under results/<experiment>/provenance/, embeds it in model.pt and
summary.json, and the figures carry it in their PNG metadata, so a figure traces back to data and code.
"""
from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

from picollm.io import sha256_file, write_json

PACKAGES = ["torch", "numpy", "tiktoken", "datasets", "pandas", "matplotlib", "seaborn", "snakemake", "picollm"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


@functools.cache
def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "src", "workflow").stdout.strip())
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def record(stage: str, config=None, seed=None, inputs=(), outputs=(), **extra) -> dict:
    """A provenance dict for one job. Inputs are hashed (sha256); outputs are listed by name."""
    return {
        "stage": stage,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "git": git_state(),
        "versions": versions(),
        "platform": platform.platform(),
        "seed": seed,
        "config": config,
        "inputs": {str(p): sha256_file(p) for p in inputs if Path(p).is_file()},
        "outputs": [str(p) for p in outputs],
        **extra,
    }


def write(path, rec: dict) -> None:
    if path:
        write_json(path, rec)
