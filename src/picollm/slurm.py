"""What a run through profiles/slurm checks on the login node before it submits anything: a job that no node of
its partition can run. SLURM accepts such a job and leaves it pending for good (`PartitionNodeLimit`), while
snakemake waits for it without a word; or sbatch refuses it halfway through the run. Asked only when the study
has such a job to place (training on several nodes, or on GPUs), from `sinfo`: where sinfo does not answer (no
SLURM here), nothing is checked.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

import yaml

from picollm import jobs
from picollm.config import Study
from picollm.config.command_line import option_words, profile_file

PROFILE_FIX = "profiles/slurm/config.yaml"  # where a partition is named (docs/cluster.md, step 2)


@dataclass
class Partition:
    """One SLURM partition, as sinfo shows it."""
    name: str
    nodes: int  # how many it has
    max_nodes: int | None  # the most one job may span (None: no limit of its own)
    gpus: bool  # whether any of its nodes has GPUs (a `gpu` generic resource)
    default: bool  # where a job that names none goes


def partitions(run=subprocess.run) -> dict[str, Partition] | None:
    """The cluster's partitions; None where sinfo does not answer."""
    try:
        out = run(["sinfo", "--noheader", "--format", "%P|%D|%s|%G"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    found: dict[str, Partition] = {}
    for line in out.stdout.splitlines():  # a partition has one line per state its nodes are in
        name, nodes, size, gres = (line.split("|") + ["", "", ""])[:4]
        key = name.rstrip("*")
        top = size.rpartition("-")[2]
        part = found.setdefault(key, Partition(key, 0, int(top) if top.isdigit() else None, False, name.endswith("*")))
        part.nodes += int(nodes) if nodes.isdigit() else 0
        part.gpus = part.gpus or "gpu" in gres
    return found


def partition_of(rule: str, argv: list[str], profile: dict) -> str | None:
    """The partition a rule's jobs are submitted to: its slurm_partition from set-resources, else from
    default-resources, the command line's map replacing the profile's whole; None for the cluster's default."""
    for option, key, prefix in (("--set-resources", "set-resources", f"{rule}:"),
                                ("--default-resources", "default-resources", "")):
        if any(word.partition("=")[0] == option for word in argv):
            named = {word[len(prefix):].partition("=")[0]: word.partition("=")[2]
                     for word in option_words(argv, (option,)) if word.startswith(prefix)}
        else:
            named = (profile.get(key) or {}).get(rule, {}) if prefix else profile.get(key) or {}
        if (named or {}).get("slurm_partition"):
            return str(named["slurm_partition"])
    return None


def problems(study: Study, argv: list[str], sinfo=partitions) -> list[str]:
    """A line for each job of `study` that no node of its partition can run (`argv`: Snakemake's command line)."""
    profile_path = profile_file(argv)
    profile = yaml.safe_load(profile_path.read_text(encoding="utf-8")) if profile_path else {}
    if (profile or {}).get("executor") != "slurm" and "slurm" not in option_words(argv, ("--executor", "-e")):
        return []
    wide = {run: jobs.train_nodes(study, run) for run in study.runs if jobs.train_nodes(study, run) > 1}
    training = ["train_nodes"] * bool(wide) + ["train"] * (len(wide) < len(study.runs))  # the rules it trains with
    gpu_rules = [*training, "evaluate"] if jobs.needs_gpu(study.device) else []
    found = sinfo() if wide or gpu_rules else None
    if not found:
        return []
    lines = []
    for run, nodes in wide.items():
        part = _partition(found, partition_of("train_nodes", argv, profile))
        if part and nodes > min(part.nodes, part.max_nodes or part.nodes):
            most = min(part.nodes, part.max_nodes or part.nodes)
            lines.append(f"run {run} trains on train.nodes = {nodes} nodes, but a job on SLURM partition {part.name} "
                         f"spans at most {most}: it would wait in the queue for good (PartitionNodeLimit); lower "
                         f"train.nodes, or name a larger partition as slurm_partition under set-resources: "
                         f"train_nodes: in {PROFILE_FIX}")
    for rule in gpu_rules:
        part = _partition(found, partition_of(rule, argv, profile))
        if part and not part.gpus:
            lines.append(f"the study runs on device {study.device}, but SLURM partition {part.name} has no GPUs, so sbatch "
                         f"would refuse every {rule} job; name a GPU partition as slurm_partition under "
                         f"set-resources: {rule}: in {PROFILE_FIX} (or run on device: cpu)")
    return lines


def _partition(found: dict[str, Partition], name: str | None) -> Partition | None:
    """The named partition, or the default one; None where sinfo does not show it (sbatch then says why)."""
    if name is not None:
        return found.get(name)
    return next((part for part in found.values() if part.default), None)

