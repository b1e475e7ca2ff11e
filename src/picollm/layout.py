"""Where a study's files lie: everything under results/<experiment>/, each trained model in
models/<run>/seed<k>/model.pt there. Standard library only: the Snakefile, the stage commands and the messages
that name a model's path all read it.
"""
from __future__ import annotations

import re
from pathlib import Path

RESULTS = "results"
MODEL_PATH = f"{RESULTS}/<experiment>/models/<run>/seed<k>/model.pt"  # a trained model, as messages name it
_MODEL = re.compile(rf"(?:.*/)?{RESULTS}/[^/]+/models/[^/]+/seed\d+/model\.pt")
# The folders of results/<experiment>/ (report.html lies beside them), which a misspelt target's one-line error
# names; tests/test_config.py checks them against every folder the rules and picollm.registry write.
FOLDERS = ("benchmarks", "data", "eval", "figures", "hf", "logs", "models", "provenance", "samples", "tables")


def results_dir(experiment: str) -> str:
    """results/<experiment>: every file of a study, relative to the working directory."""
    return f"{RESULTS}/{experiment}"


def model_dir(results: str, run: str, seed) -> str:
    """The folder of a run's training with one seed under results/<experiment> (`results`)."""
    return f"{results}/models/{run}/seed{seed}"


def is_model_path(path) -> bool:
    """Whether `path` is where the workflow writes a trained model (a target snakemake can build)."""
    return _MODEL.fullmatch(Path(path).as_posix()) is not None


def study_root(model_path) -> Path:
    """results/<experiment> of a model.pt in its models/<run>/seed<k>/ folder, relative as the path given is."""
    return Path(model_path).parents[3]


def experiment_of(path) -> str | None:
    """<experiment> of a path under results/<experiment>/ (None: it lies under none). The last such `results`
    counts: a checkout may itself lie under a folder of that name."""
    parts = Path(path).resolve().parts
    at = [i for i, part in enumerate(parts[:-2]) if part == RESULTS]
    return parts[at[-1] + 1] if at else None
