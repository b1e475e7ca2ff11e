"""What each job of the workflow is given: exactly the config keys its stage reads, and its code identity.

Each rule passes its stage's slice (`train(cfg, run, seed)`, `sample(cfg, seed)`, ...) to its command as
`--config JSON` and puts it and the job's `code(...)` hash in the rule's `params`, so a job reruns when, and
only when, something it reads or runs changes.
`train.threads`, `train.devices` and `train.nodes` only schedule work and are left out: changing them reruns
nothing. The train rule passes them as its threads and resources (which, unlike params, trigger no rerun):
they reserve the job's CPUs, GPUs and nodes, and `picollm train --devices N --nodes M` starts torchrun.
Pure Python (no torch): it runs whenever the Snakefile is parsed.
"""
from __future__ import annotations

from pathlib import Path

from picollm import codehash
from picollm.config import bpe_vocab_size, model_spec, model_train, runs, sweep_point
from picollm.model_types import type_module

# How many cores, GPUs and machines a job gets never changes its result: train.devices and train.nodes split
# the same global batch (train.batch_size) over more processes, which tests/test_ddp.py finds equal to one
# process's run up to float rounding (metrics.csv within 1e-6 here).
SCHEDULING_TRAIN_KEYS = ("threads", "devices", "nodes")
SAMPLING_KEYS = ("prompts", "p_values", "max_new_tokens", "num_samples", "stop_at_eot")
STAGE_MODULES = {stage: f"picollm.commands.{stage}" for stage in
                 ("download", "train_tokenizer", "tokenize", "train", "sample", "evaluate", "tables", "figure",
                  "provenance_table", "snapshots", "export")}


def source(cfg: dict, name: str) -> dict:
    return next(s for s in cfg["data"]["sources"] if s["name"] == name)


def download(cfg: dict, name: str) -> dict:
    src = {k: v for k, v in source(cfg, name).items() if k != "weight"}
    job = {"data": {"sources": [src]}}
    if src["kind"] == "3seqs" or (src["kind"] == "text" and not src["val_files"]):
        job["data"]["val_fraction"] = cfg["data"]["val_fraction"]  # held-out share
    if src["kind"] == "3seqs":
        job["seed"] = cfg["data_seed"]  # generates the sequences: the same for every replicate
    return job


def trains_tokenizer(cfg: dict) -> bool:
    """Whether the study trains its own tokenizer (`tokenizer: bpe:N`): then the train_tokenizer rule exists."""
    return bpe_vocab_size(cfg["tokenizer"]) is not None


def train_tokenizer(cfg: dict) -> dict:
    """A `bpe:N` tokenizer's training reads only its name (the size); the text comes in as files."""
    return {"tokenizer": cfg["tokenizer"]}


def tokenize(cfg: dict) -> dict:
    return {"tokenizer": cfg["tokenizer"]}


def train(cfg: dict, run: str, seed: int) -> dict:
    """One run (a model or a sweep point) with one seed: initialisation and batch order."""
    train_cfg = {k: v for k, v in model_train(cfg, run).items() if k not in SCHEDULING_TRAIN_KEYS}
    return {"seed": seed, "device": cfg["device"], "block_size": cfg["block_size"],
            "compact_vocab": cfg["compact_vocab"], "models": {run: model_spec(cfg, run)}, "train": train_cfg,
            # the sampler reads each source's name and weight; entries stay whole to remain valid config
            "data": {"sources": cfg["data"]["sources"]}}


def model_threads(cfg: dict, run: str) -> int:
    """CPU threads of a run's train and evaluate jobs (Snakemake `threads`), its own override first."""
    return model_train(cfg, run)["threads"]


def train_threads(cfg: dict, run: str) -> int:
    """CPU threads a run's train job holds on each of its nodes (Snakemake `threads`, SLURM --cpus-per-task):
    train.threads for each of its train.devices processes."""
    train = model_train(cfg, run)
    return train["threads"] * train["devices"]


def train_gpus(cfg: dict, run: str) -> int:
    """GPUs a run's train job holds on each node: one per process on CUDA, none otherwise."""
    return model_train(cfg, run)["devices"] if needs_gpu(cfg["device"]) else 0


def train_nodes(cfg: dict, run: str) -> int:
    return model_train(cfg, run)["nodes"]


def train_devices(cfg: dict, run: str) -> int:
    return model_train(cfg, run)["devices"]


def needs_gpu(device: str) -> bool:
    """Whether a job on this `device` setting holds a GPU (Snakemake's `gpu` resource). `auto` counts only
    where an NVIDIA driver is loaded, so a CPU laptop trains its models side by side; on a cluster say
    `device: cuda` to request GPUs from a GPU-less login node. (No torch here: the Snakefile parses fast.)"""
    return device == "cuda" or (device == "auto" and Path("/proc/driver/nvidia/version").exists())


def sample(cfg: dict, seed: int) -> dict:
    return {"seed": seed, "sampling": {k: cfg["sampling"][k] for k in SAMPLING_KEYS}}


def evaluate(cfg: dict, run: str, seed: int) -> dict:
    sampling = {k: cfg["sampling"][k] for k in (*SAMPLING_KEYS, "sweep_p_values")}
    job = {"seed": seed, "device": cfg["device"], "sampling": sampling, "evaluate": cfg["evaluate"]}
    point = sweep_point(cfg, run)
    if point:  # recorded in eval/<run>/seed<k>.json for the sweep figure
        job["sweep"] = {point["model"]: {point["key"]: [point["value"]]}}
    return job


def study(cfg: dict) -> dict:
    """The validated config as a study file of its own (for the report), scheduling keys left out."""
    def unscheduled(train: dict) -> dict:
        return {k: v for k, v in train.items() if k not in SCHEDULING_TRAIN_KEYS}

    models = {}
    for name, entry in cfg["models"].items():
        models[name] = {k: v for k, v in entry.items() if k != "train"}
        if unscheduled(entry.get("train", {})):
            models[name]["train"] = unscheduled(entry["train"])
    return {**cfg, "train": unscheduled(cfg["train"]), "models": models}


def experiment(cfg: dict) -> dict:
    """Tables and most figures read only the experiment name (their titles)."""
    return {"experiment": cfg["experiment"]}


def loss_curves(cfg: dict) -> dict:
    figures = {k: cfg["figures"][k] for k in ("loss_zoom", "loss_logy")}
    return {"experiment": cfg["experiment"], "figures": figures}


def attention_heads(cfg: dict) -> dict:
    prompt = cfg["figures"]["attention_prompt"]
    return {"experiment": cfg["experiment"],
            "figures": {"attention_prompt": cfg["sampling"]["prompts"][0] if prompt is None else prompt}}


def snapshots(cfg: dict) -> dict:
    return {"experiment": cfg["experiment"],
            "sampling": {"prompts": cfg["sampling"]["prompts"][:1], "max_new_tokens": cfg["sampling"]["max_new_tokens"]}}


def code(stage: str, *modules: str) -> str:
    """The code identity of a job: its stage command's modules, their imports and `modules` (e.g. a figure's)."""
    return codehash.code_hash(STAGE_MODULES[stage], *modules)


def types_code(stage: str, cfg: dict) -> str:
    """A job over every run's model (e.g. the snapshots table): the stage and every model type in use."""
    return code(stage, *sorted({type_module(entry["type"]) for entry in runs(cfg).values()}))


def model_code(stage: str, cfg: dict, run: str) -> str:
    """A run's train/sample/evaluate code: the stage's modules and its own type's module, not the others'."""
    return code(stage, type_module(runs(cfg)[run]["type"]))
