"""A study: its top-level keys (experiment, seeds, sweep, tokenizer, ...), the sections it holds
(picollm.config.sections), the runs it expands to, and the checks that span several sections.
"""
from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, model_validator

from picollm.config.sections import (FIXED_VOCAB, NAME_PATTERN, DataConfig, EvaluateConfig, FiguresConfig,
                                     ModelConfig, Name, SamplingConfig, Section, Seed, Tokenizer, TrainConfig)
from picollm.config.sweep import SweepPoint, expand
from picollm.config.validation import parse
from picollm.errors import PicoError


OUTSIDE = (".", "..")  # names that are a name's pattern but would write outside results/<experiment>/


def experiment_name(name: str) -> bool:
    """Whether `name` is one a study's `experiment` may take."""
    return bool(re.fullmatch(NAME_PATTERN, name)) and name not in OUTSIDE


def _check_experiment(name: str) -> str:
    if name in OUTSIDE:
        raise PicoError(f"config key 'experiment' is {name!r}, which would write outside results/<experiment>/; "
                        f"give the study a name, e.g. experiment: my_study")
    return name


def _parsed(values):
    """Snakemake's `--config` hands nested values over as strings ("16"); a swept value has no type of its own
    to coerce it to, so it is read as YAML, as the study file would have it (16)."""
    if not isinstance(values, list):
        return values
    return [yaml.safe_load(v) if isinstance(v, str) and v.strip() else v for v in values]


SweepValues = Annotated[list[Any], BeforeValidator(_parsed), Field(min_length=1, description=(
    "the values to try for one key of the model <model> (a name under models), a run per value: a key of that "
    "model's own table (e.g. d_model), or train.<key> for one of its train keys (e.g. train.lr)"))]
Sweep = dict[Name, Annotated[dict[str, SweepValues], Field(min_length=1)]]


class Study(Section):
    """A study: what to train (models, sweeps, seeds) on which data, and how to sample, evaluate and draw it.
    Every output goes under results/<experiment>/."""
    base: Optional[str] = Field(None, min_length=1, exclude=True, description=(
        "another study file (path relative to this one) that this file starts from: this file names only what "
        "differs, deep-merged onto the base (a base may have a base of its own; `key: !replace VALUE` replaces "
        "an inherited mapping or list instead of merging into it). A file with a base that names no experiment "
        "is the experiment named after the file (mine.yaml: results/mine/), never its base's"))
    replace: list[str] = Field([], exclude=True, description=(
        "keys (dotted for nested ones, e.g. [train, sweep.lstm]) whose values from the base this file replaces "
        "whole instead of merging into them; a listed key the file does not give is dropped. Plain YAML, so it "
        "also works in the file given to snakemake with --configfile, where a `!replace` tag cannot be read"))
    experiment: Annotated[Name, AfterValidator(_check_experiment)] = Field(description=(
        "name of the study; every output goes under results/<experiment>/"))
    seed: Seed = Field(1337, description=(
        "the seed of a one-seed study (seeds: [seed]): initialisation, batch order, sampling, and the data "
        "unless data_seed"))
    seeds: Optional[list[Seed]] = Field(None, min_length=1, description=(
        "train, sample and evaluate every run once per seed (replicates); null: [seed]. Tables and figures give "
        "the mean over seeds with its spread and a 95% confidence interval"))
    data_seed: Optional[Seed] = Field(None, description=(
        "seeds the data (3seqs generation); null: the first seed. Replicates share the data"))
    sweep: Sweep = Field({}, description=(
        "model hyperparameters or per-model train keys varied one key at a time (keys are not combined into a "
        "grid): {model: {key: [values]}}, e.g. {transformer: {d_model: [64, 128]}, lstm: {train.lr: [0.003, "
        "0.006]}}; every value is a run of its own, the model's other keys unchanged, named <model>.<key>=<value>, "
        "trained, sampled and evaluated like a model, once per seed"))
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto picks cuda, then mps, then cpu")
    tokenizer: Tokenizer = Field("gpt2", description=(
        "a tiktoken encoding, 'byte' (UTF-8 bytes + end-of-text, fully offline) or 'bpe:N' (a byte-level BPE of "
        "N tokens, 257..65536, trained on the study's training text by the train_tokenizer job; fully offline)"))
    compact_vocab: bool = Field(False, description=(
        "the ids never seen in the training split share one embedding row and one output row, so the output "
        "layer is as wide as the ids seen plus one; losses stay full-vocabulary, training is faster, and a "
        "Transformer still exports to Hugging Face (the shared row written once per unseen id)"))
    block_size: int = Field(128, ge=2, description="context length in tokens of the training windows")
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    # '=' for the runs of a sweep (<model>.<key>=<value>), which stage commands take as models
    models: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.=-]+$")], ModelConfig] = Field(
        min_length=1, description="name -> {type: kgram_mlp | lstm | transformer, its hyperparameters, optional "
                                  "train: overrides}")
    sampling: SamplingConfig = SamplingConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    figures: FiguresConfig = FiguresConfig()

    @model_validator(mode="before")
    @classmethod
    def _resolve_seeds(cls, data):
        """`seed: N` means `seeds: [N]`; the data follow data_seed, else the first seed."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        seed = data.get("seed", cls.model_fields["seed"].default)
        if data.get("seeds") is None and isinstance(seed, int) and not isinstance(seed, bool):
            data["seeds"] = [seed]
        seeds = data.get("seeds")
        if data.get("data_seed") is None and isinstance(seeds, list) and seeds:
            data["data_seed"] = seeds[0]
        return data

    @model_validator(mode="after")
    def _check_runs(self):
        # '.' and '=' name a sweep's runs (<model>.<key>=<value>), which tables, figures and reruns read them as
        for name in self.models:
            if "." in name or "=" in name:
                plain = re.sub(r"[.=]", "_", name)
                raise PicoError(f"config key 'models.{name}': a model's name may not hold '.' or '=', which name a "
                                f"sweep's runs (<model>.<key>=<value>); rename it, e.g. {plain}")
        twice = sorted({s for s in self.seeds if self.seeds.count(s) > 1})
        if twice:
            raise PicoError(f"config key 'seeds' lists seed {twice[0]} twice; give each seed once")
        for run in self.runs:
            train = self.train_of(run)
            if train.flops is not None:
                self._check_budget(run, train)
        types = [entry.type for entry in self.runs.values()]
        if self.figures.scaling and max(map(types.count, types)) < 2:
            raise PicoError("config key 'figures.scaling' is true, but no model type has two runs to draw a scaling "
                            "curve through; sweep a size (e.g. sweep: {transformer: {d_model: [64, 128]}}) or set "
                            "figures.scaling: false")
        return self

    def _check_budget(self, run: str, train: TrainConfig) -> None:
        """Check a budget's steps (too few, or fewer than a snapshot step) now: exactly where the tokenizer fixes
        the vocabulary (FIXED_VOCAB, without compact_vocab), else against the model without its head, whose
        width is known only once the text is tokenized (the train job then checks the exact count)."""
        from picollm.flops import budget_steps, flops_per_token  # here, as picollm.flops reads model configs
        # through this package, whose face imports this module
        vocab = None if self.compact_vocab else FIXED_VOCAB.get(self.tokenizer)
        if vocab is not None:
            budget_steps(train, flops_per_token(self.runs[run], vocab, self.block_size), self.block_size, run)
            return
        without_head = flops_per_token(self.runs[run], 0, self.block_size)
        if without_head:
            budget_steps(train, without_head, self.block_size, run, lower_bound=True)

    @cached_property
    def _expanded(self) -> tuple[dict[str, ModelConfig], dict[str, SweepPoint]]:
        return expand(self)

    @property
    def runs(self) -> dict[str, ModelConfig]:
        """{run name: model}: every model, then every sweep point as <model>.<key>=<value>."""
        return self._expanded[0]

    @property
    def sweep_points(self) -> dict[str, SweepPoint]:
        """{run name: its point} of every sweep run (a model of the config is none)."""
        return self._expanded[1]

    @cached_property
    def _train_configs(self) -> dict[str, TrainConfig]:
        """{run: its train section}, built and checked once (the workflow asks for it once per job)."""
        # only the keys the study sets: a default does not count as given (train.flops with max_steps)
        given = self.train.model_dump(exclude_unset=True)
        return {run: parse(TrainConfig, {**given, **entry.overrides()}, at=("train",), run=run)
                for run, entry in self.runs.items()}

    def train_of(self, run: str) -> TrainConfig:
        """The train section with the run's own `train:` overrides (e.g. a smaller lr) applied."""
        return self._train_configs[run]

    def outline(self) -> dict:
        """What the study runs, in brief: its runs, seeds, steps and data sources. A study benchmark record
        keeps the outline of each study file it ran, so the docs can tell when a file has changed since."""
        data = [{"kind": s.kind, **({"train_stories": s.train_stories} if getattr(s, "train_stories", None) else {})}
                for s in self.data.sources]
        return {"runs": list(self.runs), "seeds": list(self.seeds), "max_steps": self.train.max_steps, "data": data}

