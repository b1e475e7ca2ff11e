"""The study config: typed, frozen pydantic objects, built once from YAML (a study) or JSON (a job's slice).

sections.py declares every key of a study's sections (type, default, bounds, meaning; a model type's own keys
come from picollm.model_types) and study.py the study's own keys, its runs and the checks that span sections; validation.py turns plain data into those objects, or a
mistake into one line; load.py reads study files (`base:` chains, `--config` overrides); sweep.py expands a
study into its runs; stages.py names the slice each stage command is given. Nothing here imports torch, so
parsing the workflow stays cheap.
"""
from picollm.config.load import DEFAULT_STUDY, deep_merge, load_study, read_study_file
from picollm.config.sections import (MODEL_CLASSES, DataConfig, EvaluateConfig, FiguresConfig, ModelConfig,
                                     SamplingConfig, TrainConfig, bpe_vocab_size)
from picollm.config.stages import (DownloadJob, EvaluateJob, FigureJob, LmEvalTaskJob, ReferenceJob, SampleJob,
                                   SnapshotsJob, TablesJob, TokenizerJob, TrainJob)
from picollm.config.study import Study
from picollm.config.validation import model_config, parse

__all__ = ["DEFAULT_STUDY", "deep_merge", "load_study", "parse", "read_study_file", "DownloadJob", "EvaluateJob",
           "FigureJob", "LmEvalTaskJob", "ReferenceJob", "SampleJob", "SnapshotsJob", "TablesJob", "TokenizerJob",
           "TrainJob", "MODEL_CLASSES", "DataConfig", "EvaluateConfig", "FiguresConfig", "ModelConfig", "SamplingConfig",
           "Study", "TrainConfig", "bpe_vocab_size", "model_config", "schema"]


def schema() -> dict:
    """The JSON schema of a study file, generated from the classes (config/config.schema.yaml holds a copy)."""
    return Study.model_json_schema(mode="validation")
