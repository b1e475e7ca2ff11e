"""The study config: typed, frozen pydantic objects, built once from YAML (a study) or JSON (a job's slice).

study.py declares every key (type, default, bounds, meaning, the checks that span keys); load.py reads study
files (`base:` chains, `--config` overrides) and turns a mistake into one line; sweep.py expands a study into
its runs; stages.py names the slice each stage command is given. Nothing here imports torch, so parsing the
workflow stays cheap.
"""
from picollm.config.load import DEFAULT_STUDY, deep_merge, load_study, parse, read_study_file
from picollm.config.stages import (DownloadJob, EvaluateJob, FigureJob, LmEvalTaskJob, ReferenceJob, SampleJob,
                                   SnapshotsJob, TablesJob, TokenizerJob, TrainJob)
from picollm.config.study import (MODEL_CLASSES, DataConfig, EvaluateConfig, FiguresConfig, ModelConfig,
                                  SamplingConfig, Study, TrainConfig, bpe_vocab_size)

__all__ = ["DEFAULT_STUDY", "deep_merge", "load_study", "parse", "read_study_file", "DownloadJob", "EvaluateJob",
           "FigureJob", "LmEvalTaskJob", "ReferenceJob", "SampleJob", "SnapshotsJob", "TablesJob", "TokenizerJob",
           "TrainJob", "MODEL_CLASSES", "DataConfig", "EvaluateConfig", "FiguresConfig", "ModelConfig", "SamplingConfig",
           "Study", "TrainConfig", "bpe_vocab_size", "model_config", "schema"]


def model_config(entry) -> ModelConfig:
    """A model config from a mapping ({type: ..., hyperparameters}), or the object itself."""
    if not isinstance(entry, dict):
        return entry
    if entry.get("type") not in MODEL_CLASSES:
        from picollm.errors import PicoError
        raise PicoError(f"unknown model type {entry.get('type')!r}; use one of {sorted(MODEL_CLASSES)}")
    return parse(MODEL_CLASSES[entry["type"]], entry)


def schema() -> dict:
    """The JSON schema of a study file, generated from the classes (config/config.schema.yaml holds a copy)."""
    return Study.model_json_schema(mode="validation")
