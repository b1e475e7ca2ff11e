"""What each job of the workflow is given: exactly the config keys its stage reads, and its code identity.

Each rule passes its stage's slice (`train(study, run, seed)`, `sample(study, seed)`, ...) to its command as
`--config JSON` and puts it and the job's `code(...)` hash in the rule's `params`, so a job reruns when, and
only when, something it reads or runs changes. A slice is an object of its stage's class
(picollm.config.stages), dumped to JSON; the command parses the JSON back into that class.
`train.threads`, `train.devices` and `train.nodes` only schedule work, and `train.loggers` only watches it:
they are left out, so changing them reruns nothing. The train rule passes them as its threads and resources
(which, unlike params, trigger no rerun): they reserve the job's CPUs, GPUs and nodes, `picollm train
--devices N --nodes M` starts torchrun, and `--loggers` names the live trackers (picollm.tracking).
Pure Python (no torch): it runs whenever the Snakefile is parsed.
"""
from __future__ import annotations

import os
from pathlib import Path

from picollm import codehash
from picollm.config import (DownloadJob, EvaluateJob, FigureJob, LmEvalTaskJob, ReferenceJob, SampleJob,
                            SnapshotsJob, Study, TablesJob, TokenizerJob, TrainConfig, TrainJob, bpe_vocab_size)
from picollm.model_types import model_type

STAGE_MODULES = {stage: codehash.stage_module(stage) for stage in
                 ("download", "train_tokenizer", "tokenize", "train", "sample", "evaluate", "reference", "tables",
                  "eval_tables", "figure", "provenance_table", "snapshots", "scaling", "export", "lm_eval_task",
                  "resources", "report_tables", "report")}


def _dump(job, only: dict | None = None, drop: dict | None = None) -> dict:
    """The job as JSON: of a section named in `only`, only the keys it lists; of one named in `drop`, all but
    those (pydantic's include and exclude). What a stage does not read is not in its slice, so changing it
    reruns nothing; the command fills it with its default, which the stage never reads."""
    include = {field: (only or {}).get(field, True) for field in type(job).model_fields}
    return job.model_dump(mode="json", include=include, exclude=drop)


def download(study: Study, name: str) -> dict:
    """One source's download: not its weight (the sampler's), the held-out share only where it splits the text
    itself, the seed only where it generates the text (the same for every replicate: data_seed)."""
    src = study.data.source(name)
    splits = src.kind == "3seqs" or (src.kind == "text" and not src.val_files)
    job = DownloadJob(data={"sources": [src], "val_fraction": study.data.val_fraction}, seed=study.data_seed)
    return _dump(job, only={"data": {"sources", *(["val_fraction"] if splits else [])}},
                 drop={"data": {"sources": {"__all__": {"weight"}}}, **({} if src.kind == "3seqs" else {"seed": True})})


def trains_tokenizer(study: Study) -> bool:
    """Whether the study trains its own tokenizer (`tokenizer: bpe:N`): then the train_tokenizer rule exists."""
    return bpe_vocab_size(study.tokenizer) is not None


def tokenizer(study: Study) -> dict:
    """Training a `bpe:N` tokenizer and tokenizing read only the tokenizer's name; the text comes in as files."""
    return _dump(TokenizerJob(tokenizer=study.tokenizer))


def train(study: Study, run: str, seed: int) -> dict:
    """One run (a model or a sweep point) with one seed: initialisation and batch order."""
    job = TrainJob(seed=seed, device=study.device, block_size=study.block_size, compact_vocab=study.compact_vocab,
                   models={run: study.runs[run].model_copy(update={"train": None})}, train=study.train_of(run),
                   # the sampler reads each source's name and weight; entries stay whole to remain valid config
                   data={"sources": study.data.sources})
    return _dump(job, only={"data": {"sources"}}, drop={"train": TrainConfig.SCHEDULING})


def evaluate_threads(study: Study, run: str) -> int:
    """CPU threads of a run's evaluate job (Snakemake `threads`): train.threads, its own override first."""
    return study.train_of(run).threads


def train_threads(study: Study, run: str) -> int:
    """CPU threads a run's train job holds on each of its nodes (Snakemake `threads`, SLURM --cpus-per-task):
    train.threads for each of its train.devices processes."""
    train_cfg = study.train_of(run)
    return train_cfg.threads * train_cfg.devices


def train_gpus(study: Study, run: str) -> int:
    """GPUs a run's train job holds on each node: one per process on CUDA, none otherwise."""
    return study.train_of(run).devices if needs_gpu(study.device) else 0


def slurm_gpus(study: Study, run: str) -> str:
    """sbatch's request for a several-node train job's GPUs (its train_gpus on each node), "" for none."""
    gpus = train_gpus(study, run)
    return f"--gpus-per-node={gpus}" if gpus else ""


def train_nodes(study: Study, run: str) -> int:
    return study.train_of(run).nodes


def train_devices(study: Study, run: str) -> int:
    return study.train_of(run).devices


def train_loggers(study: Study, run: str) -> str:
    """A run's train.loggers as `picollm train --loggers` takes them: comma-separated, "" for none."""
    return ",".join(study.train_of(run).loggers)


def train_checkpoint_interval(study: Study, run: str) -> str:
    """A run's train.checkpoint_interval for `picollm train --checkpoint-interval`: a resource, not a param, so that
    changing it reruns nothing; as text, since a number among a job's resources is a quantity Snakemake may cap
    and sum over the jobs it runs at once, which an interval is not."""
    return str(study.train_of(run).checkpoint_interval)


# device: auto's answer as the snakemake that plans the jobs found it ("1": a GPU, "0": none); a SLURM job parses
# the workflow again on its compute node, which must ask for the GPUs its sbatch asked for (sbatch --export=ALL)
AUTO_GPU = "PICOLLM_AUTO_GPU"


def needs_gpu(device: str) -> bool:
    """Whether a job on this `device` setting holds a GPU (Snakemake's `gpu` resource). `auto` counts only
    where an NVIDIA driver is loaded, so a CPU laptop trains its models side by side; on a cluster say
    `device: cuda` to request GPUs from a GPU-less login node. (No torch here: the Snakefile parses fast.)"""
    if device != "auto":
        return device == "cuda"
    decided = os.environ.get(AUTO_GPU)
    return decided == "1" if decided in ("0", "1") else Path("/proc/driver/nvidia/version").exists()


def sample(study: Study, seed: int) -> dict:
    # sweep_p_values: only the evaluate stage reads them
    return _dump(SampleJob(seed=seed, sampling=study.sampling), drop={"sampling": {"sweep_p_values"}})


def evaluate(study: Study, run: str, seed: int) -> dict:
    # a sweep run records its point in eval/<run>/seed<k>.json, for the sweep figure
    point = study.sweep_points.get(run)
    job = EvaluateJob(seed=seed, device=study.device, sampling=study.sampling, evaluate=study.evaluate,
                      point=point, data={"sources": study.data.sources})
    # the sources say whether the text is English (english_word_share)
    return _dump(job, only={"data": {"sources"}}, drop=None if point else {"point": True})


def reference(study: Study, seed: int) -> dict:
    """Real validation stories to read the samples' measures against: as many and as long as a nucleus
    decoding's samples (sampling.prompts x num_samples, max_new_tokens), drawn with `seed`; the sources say
    whether the text is English. The p values are not read: changing them reruns no reference."""
    job = ReferenceJob(seed=seed, sampling=study.sampling, data={"sources": study.data.sources})
    return _dump(job, only={"sampling": {"prompts", "num_samples", "max_new_tokens"}, "data": {"sources"}})


def lm_eval_task(study: Study) -> dict:
    """The harness task's name comes from the experiment; the runs' models say whether any exports."""
    models = {run: entry.model_copy(update={"train": None}) for run, entry in study.runs.items()}
    return _dump(LmEvalTaskJob(experiment=study.experiment, models=models))


def study_file(study: Study) -> dict:
    """The validated config as a study file of its own (for the report), scheduling keys left out."""
    out = study.model_dump(mode="json")
    del out["seed"]  # shorthand for seeds: [seed]; seeds holds the seeds that run (a file giving both is refused)
    out["train"] = {k: v for k, v in out["train"].items() if k not in TrainConfig.SCHEDULING}
    for entry in out["models"].values():
        overrides = {k: v for k, v in entry.pop("train", {}).items() if k not in TrainConfig.SCHEDULING}
        if overrides:
            entry["train"] = overrides
    return out


def experiment(study: Study) -> dict:
    """Tables and most figures read only the experiment name (their titles)."""
    return _dump(TablesJob(experiment=study.experiment))


def loss_curves(study: Study) -> dict:
    job = FigureJob(experiment=study.experiment, figures=study.figures)
    return _dump(job, only={"figures": {"loss_zoom", "loss_logy"}})


def attention_heads(study: Study) -> dict:
    """The prompt whose attention the figure draws: figures.attention_prompt, else the first sampling prompt."""
    prompt = study.figures.attention_prompt
    figures = study.figures.model_copy(update={"attention_prompt": study.sampling.prompts[0] if prompt is None
                                               else prompt})
    return _dump(FigureJob(experiment=study.experiment, figures=figures), only={"figures": {"attention_prompt"}})


def snapshots(study: Study) -> dict:
    """Each snapshot continues the first sampling prompt greedily."""
    sampling = study.sampling.model_copy(update={"prompts": study.sampling.prompts[:1]})
    job = SnapshotsJob(experiment=study.experiment, sampling=sampling)
    return _dump(job, only={"sampling": {"prompts", "max_new_tokens"}})


def code(stage: str, *modules: str) -> str:
    """The code identity of a job: its stage command's modules, their imports and `modules` (e.g. a figure's)."""
    return codehash.code_hash(STAGE_MODULES[stage], *modules)


def types_code(stage: str, study: Study) -> str:
    """A job over every run's model (e.g. the snapshots table): the stage and every model type in use."""
    return code(stage, *sorted({m for entry in study.runs.values() for m in model_type(entry.type).modules}))


def model_code(stage: str, study: Study, run: str) -> str:
    """A run's train/sample/evaluate/export code: the stage's modules and its own type's two modules, not the
    others' (codehash.type_code, which a finished training records too)."""
    return codehash.type_code(stage, model_type(study.runs[run].type))
