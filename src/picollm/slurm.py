"""What a run through profiles/slurm checks on the login node before it submits anything: a job that no partition
it may go to can run. SLURM accepts a job wider than its partition allows and leaves it pending for good
(`PartitionNodeLimit`), or refuses it, while snakemake waits without a word; sbatch refuses GPUs on a partition
without them halfway through the run. Asked only when the study has such a job to place (training on several
nodes, or on GPUs), from `sinfo`. Nothing is checked where sinfo does not answer, where the job's partition is not
among those sinfo shows, where the SLURM plugin picks partitions itself (slurm-partition-config) or the job goes
to another cluster (slurm_cluster), or with PICOLLM_SLURM_CHECK=0 (a cluster that reroutes jobs itself).
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from picollm import jobs
from picollm.config import Study
from picollm.config.profile import option_value, profile_file, read_profile, resource_maps

PROFILE_FIX = "profiles/slurm/config.yaml"  # where a partition is named (docs/cluster.md, step 2)
OPT_OUT = "PICOLLM_SLURM_CHECK"
SKIP = f"(where the cluster reroutes jobs itself, {OPT_OUT}=0 skips this check)"
SINFO_TIMEOUT_S = 10  # seconds a SLURM client command gets to answer


@dataclass
class Partition:
    """One SLURM partition, as sinfo shows it."""
    name: str
    nodes: int  # how many it has
    max_nodes: int | None  # the most one job may span (None: no limit of its own)
    gpus: bool  # whether any of its nodes has GPUs (a `gpu` generic resource)
    default: bool  # where a job that names none goes

    def widest(self) -> int:
        return min(self.nodes, self.max_nodes or self.nodes)


def ask(command: list[str], run=subprocess.run) -> str | None:
    """What a SLURM client command prints; None where it does not answer (no SLURM here, no controller)."""
    try:
        out = run(command, capture_output=True, text=True, timeout=SINFO_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def partitions(run=subprocess.run) -> dict[str, Partition] | None:
    """The cluster's partitions; None where sinfo does not answer."""
    shown = ask(["sinfo", "--noheader", "--format", "%P|%D|%s|%G"], run)
    if shown is None:
        return None
    found: dict[str, Partition] = {}
    for line in shown.splitlines():  # a partition has one line per kind of node (their generic resources)
        name, nodes, size, gres = (line.strip().split("|") + ["", "", ""])[:4]
        key, top = name.rstrip("*"), size.rpartition("-")[2]  # %s: "1-infinite", "1-4"; "1-1K" reads as no limit
        part = found.setdefault(key, Partition(key, 0, int(top) if top.isdigit() else None, False, name.endswith("*")))
        part.nodes += int(nodes) if nodes.isdigit() else 0
        part.gpus = part.gpus or "gpu" in gres
    return found


def partitions_of(rule: str, set_resources: dict, default_resources: dict) -> list[str] | None:
    """The partitions a rule's jobs may go to (slurm_partition of its set-resources, else of default-resources;
    "a,b" names two); None for the cluster's default partition."""
    named = set_resources.get(rule, {}).get("slurm_partition") or default_resources.get("slurm_partition")
    if not named:
        return None
    return [os.path.expandvars(part.strip().strip("'\"")) for part in str(named).strip("'\"").split(",")]


def problems(study: Study, argv: list[str], sinfo=partitions) -> list[str]:
    """A line for each job of `study` that no partition it may go to can run (`argv`: Snakemake's command line)."""
    resources = checked_resources(argv)
    if resources is None:
        return []
    wide = {run: jobs.train_nodes(study, run) for run in study.runs if jobs.train_nodes(study, run) > 1}
    training = ["train_nodes"] * bool(wide) + ["train"] * (len(wide) < len(study.runs))  # the rules it trains with
    gpu_rules = [*training, "evaluate"] if jobs.needs_gpu(study.device) else []
    found = sinfo() if wide or gpu_rules else None
    if not found:
        return []
    lines = [too_wide(run, nodes, candidates("train_nodes", found, *resources)) for run, nodes in wide.items()]
    lines += [without_gpus(rule, study.device, candidates(rule, found, *resources)) for rule in gpu_rules]
    return [line for line in lines if line]


def checked_resources(argv: list[str]) -> tuple[dict, dict] | None:
    """(set-resources, default-resources) of a run this module checks: one on SLURM whose partitions the plugin
    does not pick itself, without the opt-out; None for any other."""
    profile = read_profile(profile_file(argv))
    on_slurm = profile.get("executor") == "slurm" or "slurm" in (option_value(argv, "--executor"),
                                                                   option_value(argv, "-e"))
    plugin_picks = ("slurm-partition-config" in profile or "--slurm-partition-config" in " ".join(argv)
                    or os.environ.get("SNAKEMAKE_SLURM_PARTITIONS"))
    if not on_slurm or plugin_picks or os.environ.get(OPT_OUT) == "0":
        return None
    return resource_maps(argv, profile)


def candidates(rule: str, found: dict[str, Partition], set_resources: dict,
               default_resources: dict) -> list[Partition] | None:
    """The partitions sinfo shows (`found`) that the rule's jobs may go to; None where one is not among them, or
    the job goes to another cluster."""
    if "slurm_cluster" in set_resources.get(rule, {}) or "slurm_cluster" in default_resources:
        return None
    names = partitions_of(rule, set_resources, default_resources)
    parts = [found.get(name) for name in names] if names else [_default(found)]
    return None if None in parts else parts


def too_wide(run: str, nodes: int, parts: list[Partition] | None) -> str | None:
    """The line for a training on `nodes` nodes that none of `parts` lets a job span; None where one does."""
    if not parts or any(nodes <= part.widest() for part in parts):
        return None
    part = parts[0]
    limit = (f"has {part.nodes} node(s)" if part.nodes < nodes
             else f"lets a job span at most {part.max_nodes} (its MaxNodes)")
    return (f"run {run} trains on train.nodes = {nodes} nodes, but SLURM partition {part.name} {limit}, so the job "
            f"could never start; lower train.nodes, or name a larger partition as slurm_partition under "
            f"set-resources: train_nodes: in {PROFILE_FIX} {SKIP}")


def without_gpus(rule: str, device: str, parts: list[Partition] | None) -> str | None:
    """The line for a rule whose jobs ask for GPUs where none of `parts` has any; None where one has."""
    if not parts or any(part.gpus for part in parts):
        return None
    return (f"the study runs on device {device}, but SLURM partition {parts[0].name} has no GPUs, so sbatch would "
            f"refuse every {rule} job; name a GPU partition as slurm_partition under set-resources: {rule}: in "
            f"{PROFILE_FIX} (or run on device: cpu) {SKIP}")


def _default(found: dict[str, Partition]) -> Partition | None:
    return next((part for part in found.values() if part.default), None)


def jobs_in(directory) -> list[str]:
    """The ids of this user's SLURM jobs, queued or running, whose working directory is `directory` (the SLURM
    executor submits each job from the run's own); [] where squeue does not answer."""
    here = os.path.realpath(directory)
    return [job for job, _, cwd in (line.strip().partition("|") for line in
                                    (ask(["squeue", "--me", "--noheader", "--format", "%i|%Z"]) or "").splitlines())
            if cwd and os.path.realpath(cwd) == here]
