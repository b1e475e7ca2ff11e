"""Provenance: what made an output (code commit, package versions, config, seed, input hashes).

Every stage writes one record per job under results/<experiment>/provenance/, embeds it in model.pt and
summary.json, and the figures carry it in their PNG metadata, so a figure traces back to data and code.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import subprocess
import sys
from pathlib import Path

from picollm import __version__, codehash
from picollm.errors import PicoError
from picollm.io import sha256_file, write_csv, write_json

# every library whose code shapes an output: the numbers (torch, numpy, scipy's intervals), the data and tokens,
# the export's files, the config's validation, english_word_share's word list, the figures, the workflow
PACKAGES = ["torch", "numpy", "scipy", "pandas", "tiktoken", "tokenizers", "transformers", "safetensors", "datasets",
            "pydantic", "pyspellchecker", "matplotlib", "seaborn", "snakemake"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def versions() -> dict:
    # picollm's own version from the code that ran (the checkout on PYTHONPATH), not from whichever install
    # the package metadata would name
    found = {"python": platform.python_version(), "picollm": __version__}
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
        # a new file counts: a model type of one's own is two new modules (docs/extending.md)
        dirty = bool(git("status", "--porcelain", "--untracked-files=normal", "--", "src", "workflow").stdout.strip())
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def code_state() -> dict:
    """{module: hash} of every picollm module this process has loaded: the code that made the output
    (hashes as picollm.codehash computes them for the workflow's code-aware reruns)."""
    loaded = sorted(m for m in sys.modules if m == codehash.PACKAGE or m.startswith(codehash.PACKAGE + "."))
    return {m: codehash.module_hash(m) for m in loaded if codehash.module_path(m)}


def record(stage: str, config=None, seed=None, inputs=(), outputs=(), content=None, **extra) -> dict:
    """A provenance dict for one job. Inputs are hashed (sha256); outputs are listed by name. `content`:
    {input: hash of what it holds} where the job has read it (a model's weights), beside content_hashes'."""
    return {
        "stage": stage,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "git": git_state(),
        "code": code_state(),
        "versions": versions(),
        "platform": platform.platform(),
        "host": platform.node(),
        "slurm": slurm_job(),
        "seed": seed,
        "config": config,
        "inputs": {str(p): sha256_file(p) for p in inputs if Path(p).is_file()},
        "outputs": [str(p) for p in outputs],
        "content": {**content_hashes(inputs), **{str(p): h for p, h in (content or {}).items() if h}},
        **extra,
    }


def slurm_job() -> dict | None:
    """The SLURM job this process runs in (its id, node, CPUs and memory as sbatch granted them), None outside one:
    tables/resources.csv sets what a job was given beside what it used."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    cpus, per_node, per_cpu = (int(value) if value.isdigit() else None for value in (
        env.get("SLURM_CPUS_PER_TASK", ""), env.get("SLURM_MEM_PER_NODE", ""), env.get("SLURM_MEM_PER_CPU", "")))
    mem = per_node or (per_cpu * cpus if per_cpu and cpus else None)  # --mem, else --mem-per-cpu x CPUs
    return {"job_id": env["SLURM_JOB_ID"], "node": env.get("SLURMD_NODENAME"), "cpus": cpus,
            "mem_mb": mem or granted_memory_mb(env["SLURM_JOB_ID"])}


MEMORY = re.compile(r"\bMinMemory(Node|CPU)=(\d+(?:\.\d+)?)([KMGT]?)")
TO_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "": 1}


def granted_memory_mb(job_id: str) -> int | None:
    """The memory SLURM granted a job, from `scontrol show job` (the SLURM executor's job step drops the
    SLURM_MEM_* variables): per node, or per CPU times the job's CPUs; None where scontrol does not say."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = MEMORY.search(out)
    if not match:
        return None
    mb = float(match.group(2)) * TO_MB[match.group(3)]
    cpus = re.search(r"\bNumCPUs=(\d+)", out)
    return round(mb * (int(cpus.group(1)) if match.group(1) == "CPU" and cpus else 1))


def content_hashes(inputs) -> dict:
    """{input: hash of what it holds} for a token folder's meta.json, whose bytes also hold the record of the job
    that made it (when, where): the sha256 of its token files and tokenizer, the same for the same tokens however
    and whenever they were made. A model.pt's is its weights' sha256 (`content` of record, from the job that loaded
    it). tables/provenance.csv shows them, so two studies of the same data or model show the same hash."""
    found = {}
    for path in map(Path, inputs):
        if path.name == "meta.json" and path.is_file():
            with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
                meta = json.loads(path.read_text())
                held = {name: split["sha256"] for name, split in meta["splits"].items()}
                held["tokenizer"] = meta.get("tokenizer_sha256") or meta.get("tokenizer")
                found[str(path)] = hashlib.sha256(json.dumps(held, sort_keys=True).encode()).hexdigest()
    return found


def of_checkpoint(ckpt: dict) -> dict:
    """The provenance record training saved in a model.pt ({} for a model trained without one)."""
    try:
        return json.loads(ckpt.get("provenance") or "null") or {}
    except json.JSONDecodeError:
        raise PicoError("a checkpoint's provenance record is not JSON: the file is damaged; delete it and rerun "
                        "training") from None


def _own_peak_kib() -> int | None:
    """This process's peak resident memory since it started its program (Linux's VmHWM), in KiB: ru_maxrss keeps
    the parent's peak across fork + exec, so every job would read at least Snakemake's own."""
    try:
        return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None


def _mib(ru_maxrss: int) -> float:
    """getrusage's peak memory in MiB: bytes on macOS, KiB on Linux."""
    return ru_maxrss / 2**20 if sys.platform == "darwin" else ru_maxrss / 2**10


def usage() -> dict:
    """This process's CPU seconds and peak resident memory so far, its finished child processes' included:
    counted by the kernel, where Snakemake's `benchmark:` samples a job now and then (every 0.5 s for its first
    15 s, then every 30 s) and misses what ran in between. Under torchrun this is rank 0's (the process that
    writes the record), which count_children then makes every rank's."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    own_kib = _own_peak_kib()  # None off Linux (no /proc): ru_maxrss there
    own_mib = _mib(own.ru_maxrss) if own_kib is None else own_kib / 2**10
    # a child's own peak is counted from its fork by this process, whose memory it starts with
    return {"cpu_s": round(cpu, 3), "max_rss_mib": round(max(own_mib, _mib(children.ru_maxrss)), 1)}


def count_children(path) -> None:
    """The record a child wrote (rank 0, under the torchrun this process waited for), its usage made the job's: the
    CPU seconds of every process this one waited for (torchrun and the ranks of this node), the largest peak
    among them. A restored training's record keeps its training's."""
    if not path or not Path(path).is_file():
        return
    rec = json.loads(Path(path).read_text())
    if rec.get("restored") or "usage" not in rec:
        return
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec["usage"].update(cpu_s=round(children.ru_utime + children.ru_stime, 3),
                        max_rss_mib=round(max(rec["usage"]["max_rss_mib"], _mib(children.ru_maxrss)), 1))
    write_json(path, rec)


def write(path, rec: dict) -> None:
    """Write the record, its code identity brought up to date with the modules the job went on to load, and the
    job's CPU seconds, peak memory and seconds since the record was made (usage; tables/resources.csv reads them)."""
    rec["code"] = code_state()
    started = dt.datetime.fromisoformat(rec["created_utc"])
    rec["usage"] = {**usage(), "wall_s": round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1)}
    if path:
        write_json(path, rec)


def table(record_paths, out):
    """One CSV row per job record (stage, the file, commit, code hash, seed, config, input hashes, outputs,
    versions) to `out`; returns the rows."""
    import pandas as pd

    rows = []
    for path in record_paths:
        rec = json.loads(Path(path).read_text())
        git = rec.get("git") or {}
        code = rec.get("code") or {}
        libs = rec.get("versions") or {}
        rows.append({"record": str(path), "stage": rec.get("stage"), "created_utc": rec.get("created_utc"),
                     "git_commit": (git.get("commit") or "")[:12], "uncommitted_changes": git.get("dirty"),
                     "code_hash": codehash.identity_hash(code) if code else None, "seed": rec.get("seed"),
                     "config": json.dumps(rec.get("config"), sort_keys=True),
                     "inputs_sha256": "; ".join(f"{Path(k).name}={v[:12]}" for k, v in rec.get("inputs", {}).items()),
                     "outputs": "; ".join(rec.get("outputs") or []),
                     "inputs_content": "; ".join(f"{Path(k).name}={v[:12]}" for k, v in (rec.get("content") or {}).items()),
                     "picollm": libs.get("picollm"), "python": libs.get("python"),
                     "torch": libs.get("torch"), "platform": rec.get("platform")})
    frame = pd.DataFrame(rows).astype({"seed": "Int64"})
    write_csv(out, frame)
    return frame


def _stage_counts(stages) -> str:
    """"train 3, sample 3, figure 8": how many jobs of each stage, in the order they ran."""
    return ", ".join(f"{stage} {count}" for stage, count in stages.value_counts(sort=False).items())


# what tells one build of the code from another, as code_summary groups the jobs: {column: its header}
CODE_COLUMNS = {"git_commit": "commit", "uncommitted_changes": "uncommitted changes", "picollm": "picollm",
                "python": "Python", "torch": "torch", "platform": "platform"}


def code_summary(frame) -> str:
    """The code that made a study, for its report: one row per commit, uncommitted changes, versions and
    platform, with how many jobs (of which stages) ran it. More than one row means the study's outputs were made
    by different code (a job reran after an edit, or on another machine); each job's own row is in
    tables/provenance.csv."""
    columns = list(CODE_COLUMNS)
    shown = frame[columns].astype(str).replace({"": "(no git)", "True": "yes", "False": "no", "None": "?",
                                                     "<NA>": "?", "nan": "?"})
    shown["stages"] = frame["stage"].str.split().str[0]  # "figure loss_curves": a figure
    groups = (shown.groupby(columns, sort=False)
              .agg(jobs=("stages", "size"), stages=("stages", _stage_counts))
              .reset_index())
    states = len(groups)
    lines = ["# The code that made this study", ""]
    if states == 1:
        first = groups.iloc[0]
        lines.append(f"All {first['jobs']} jobs ran commit `{first['git_commit']}`"
                     f"{' with uncommitted changes' if first['uncommitted_changes'] == 'yes' else ''}.")
    else:
        lines.append(f"The {len(frame)} jobs ran {states} builds of the code: the study's outputs were made by "
                     "different code (a job reran after an edit, or ran on another machine). Each job's row in "
                     "`tables/provenance.csv` says which.")
    headers = [*CODE_COLUMNS.values(), "jobs", "stages"]
    lines += ["", "| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for row in groups.itertuples(index=False):
        cells = [f"`{row.git_commit}`", *(getattr(row, c) for c in columns[1:]), str(row.jobs), row.stages]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
