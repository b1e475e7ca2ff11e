"""Every section of a study file (train, models, data, sampling, evaluate, figures) as a typed, frozen pydantic
class: each key's type, default, bounds and meaning.

pydantic fills the defaults, coerces `--config` strings ("1e-3" -> 0.001), rejects unknown keys and checks
each value; a rule that involves several keys is a validator of the class that holds them, and nowhere
else. picollm.config.study holds the sections in a Study, with the study's own top-level keys. The JSON schema
(config/config.schema.yaml) and the docs' key reference are generated from these classes.
"""
from __future__ import annotations

import functools
import types
from typing import Annotated, ClassVar, Literal, Optional, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_serializer, model_validator
from pydantic import StringConstraints

from picollm.errors import PicoError
from picollm.model_types import model_types

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
TIKTOKEN_ENCODINGS = ("gpt2", "r50k_base", "p50k_base", "p50k_edit", "cl100k_base", "o200k_base", "o200k_harmony")
BPE_PREFIX = "bpe:"
# 256 byte tokens + end-of-text at least; token ids stored as uint16 at most
BPE_MIN_VOCAB, BPE_MAX_VOCAB = 257, 65536


class Section(BaseModel):
    """A config section: unknown keys are errors, and a built object never changes. A number is finite, and no
    yes/no: pydantic would read `max_steps: yes` as 1 and `lr: .inf` as a rate."""
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_yes_no_for_a_number(cls, data):
        for key, value in data.items() if isinstance(data, dict) else ():
            field = cls.model_fields.get(key)
            if isinstance(value, bool) and field is not None and _is_number(field.annotation):
                raise ValueError(f"{key}: {str(value).lower()} is a yes/no; give a number")
        return data


def _is_number(annotation) -> bool:
    """Whether a field takes a number (int or float, maybe optional) and no bool."""
    kinds = set(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else {annotation}
    return bool(kinds & {int, float}) and bool not in kinds


# Vocabularies whose size is fixed by the tokenizer's name (GPT-2 BPE's 50,256 merges and tokens + end-of-text;
# bytes + end-of-text), known before any text is tokenized; a trained bpe:N may come out smaller than N.
FIXED_VOCAB = {"gpt2": 50257, "r50k_base": 50257, "byte": 257}


def bpe_vocab_size(name: str) -> int | None:
    """N of a `bpe:N` tokenizer name; None for every other tokenizer."""
    digits = name.removeprefix(BPE_PREFIX)
    return int(digits) if name.startswith(BPE_PREFIX) and digits.isdigit() else None


def tokenizer_choices() -> str:
    return (f"byte, bpe:N (a BPE of N tokens trained on the study's text, {BPE_MIN_VOCAB}..{BPE_MAX_VOCAB}, "
            f"e.g. bpe:4096) or a tiktoken encoding ({', '.join(TIKTOKEN_ENCODINGS)})")


def _check_tokenizer(name: str) -> str:
    n = bpe_vocab_size(name)
    if name not in (*TIKTOKEN_ENCODINGS, "byte") and n is None:
        raise PicoError(f"config key 'tokenizer' is {name!r}; use {tokenizer_choices()}")
    if n is not None and n < BPE_MIN_VOCAB:
        raise PicoError(f"config key 'tokenizer' is {name!r}: a byte-level BPE needs at least {BPE_MIN_VOCAB} tokens "
                        f"(256 bytes + end-of-text); use bpe:{BPE_MIN_VOCAB} or more, e.g. bpe:4096")
    if n is not None and n > BPE_MAX_VOCAB:
        raise PicoError(f"config key 'tokenizer' is {name!r}: at most {BPE_MAX_VOCAB} tokens (ids are stored as "
                        f"uint16); use bpe:{BPE_MAX_VOCAB} or less, e.g. bpe:4096")
    return name


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's and torch's seed range
Tokenizer = Annotated[str, AfterValidator(_check_tokenizer), Field(json_schema_extra={
    "anyOf": [{"enum": [*TIKTOKEN_ENCODINGS, "byte"]}, {"pattern": "^bpe:[0-9]+$"}]})]
Probability = Annotated[float, Field(gt=0, le=1)]


class TrainConfig(Section):
    """The `train` section: optimisation, schedule, logging and the processes a run uses."""
    max_steps: int = Field(1000, ge=1, description="optimizer steps")
    max_minutes: Optional[float] = Field(None, gt=0, description=(
        "a wall-clock budget: stop training when this many minutes of the training loop are spent (or at "
        "max_steps, if sooner), with the cosine decay run over the time instead of the steps. How many steps that "
        "is depends on the machine, so such a run is not reproducible step for step; summary.json records the "
        "steps reached. null: train exactly max_steps"))
    flops: Optional[float] = Field(None, gt=0, description=(
        "a compute budget instead of max_steps: train the most steps whose training FLOPs (picollm.flops: "
        "matmuls, forward + backward, per model type) stay within it, floor(flops / (FLOPs per token x "
        "batch_size x block_size)). The count is known before training starts (once the vocabulary is), so the "
        "run is reproducible step for step, and the schedule and snapshot_steps follow it; summary.json "
        "records the steps. Leave max_steps and max_minutes unset with it. null: train max_steps"))
    batch_size: int = Field(16, ge=1, description=(
        "windows per optimizer step, the global batch: split evenly over the devices x nodes ranks of a "
        "data-parallel run (each takes batch_size / ranks), so it must be a multiple of devices x nodes"))
    lr: float = Field(0.001, gt=0, description="peak learning rate (AdamW)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a fraction of lr (cosine decay)")
    warmup_steps: int = Field(50, ge=0, description="linear warm-up steps")
    weight_decay: float = Field(0.1, ge=0, description=(
        "AdamW weight decay on weight matrices and embeddings (not on norms and biases)"))
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.99, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="global gradient-norm clip (0 disables)")
    eval_interval: int = Field(100, ge=1, description="steps between validation-loss measurements")
    eval_batches: int = Field(20, ge=1, description="validation batches per measurement (fixed windows)")
    eval_schedule: Literal["interval", "log"] = Field("interval", description=(
        "when the validation loss is measured: every eval_interval steps (interval), or at eval_points steps "
        "spread evenly in log steps, and so in log compute, from the end of warm-up on, where a scaling fit "
        "reads them (log: a frontier gets points at small compute too); both at step 0 and at the last step as "
        "well"))
    eval_points: int = Field(20, ge=2, description=(
        "validation measurements of eval_schedule: log, from the end of warm-up to the last step, plus step 1 "
        "(fewer when a short run rounds two of them to the same step)"))
    checkpoint_interval: int = Field(200, ge=1, description=(
        "steps between rolling checkpoints (models/<run>/seed<k>/last.pt). Resume is exact, so changing it reruns "
        "nothing, and a training stopped under one interval resumes under another"))
    log_interval: int = Field(10, ge=1, description="steps between train-loss rows in metrics.csv")
    snapshot_steps: list[Annotated[int, Field(ge=0)]] = Field([], description=(
        "keep the model at these steps of the one training run (models/<run>/seed<k>/snapshots/)"))
    optimizer: Literal["adamw", "muon"] = Field("adamw", description=(
        "adamw: AdamW on every parameter; muon: torch.optim.Muon on the 2-D hidden weight matrices, AdamW "
        "(train.lr) on embeddings, head, norms and biases"))
    muon_lr: float = Field(0.02, gt=0, description=(
        "peak learning rate of Muon's matrices (optimizer: muon), on the same warm-up + cosine schedule"))
    muon_momentum: float = Field(0.95, ge=0, lt=1, description="Muon's Nesterov momentum (optimizer: muon)")
    muon_weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay of Muon's matrices (optimizer: muon)")
    compile: bool = Field(False, description=(
        "torch.compile the model (needs a C++ compiler on CPU); the first steps pay the compile time"))
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description=(
        "bf16: bfloat16 autocast (weights and optimizer stay fp32); auto: bf16 on CUDA GPUs and on CPUs with "
        "native bf16 (AVX512-BF16, AMX), fp32 elsewhere, where torch emulates bf16 many times slower (bf16 asked "
        "for there trains, after a note of the slowdown measured)"))
    threads: int = Field(2, ge=1, description=(
        "CPU threads per training process (each of a data-parallel run's devices: the job holds devices x "
        "threads) and per evaluation job (Snakemake threads; scheduling only: changing it reruns nothing)"))
    devices: int = Field(1, ge=1, description=(
        "training processes per node (data parallel; on CUDA one GPU each, so at most the GPUs a node has). Above "
        "1 (or with nodes > 1) the train job runs through torchrun and DDP averages the gradients; batch_size "
        "stays the global batch, split evenly over devices x nodes ranks, so the result is one process's up to "
        "float rounding (with dropout, each rank draws masks of its own: the same training in law, not in "
        "numbers; scheduling only: changing it reruns nothing)"))
    nodes: int = Field(1, ge=1, description=(
        "machines per training job, each running `devices` processes (SLURM only: profiles/slurm starts one "
        "torchrun per node with srun; scheduling only: changing it reruns nothing)"))
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = Field([], description=(
        "live trackers that get every metrics.csv row as it is written, the run's config and seed, and its "
        "summary (picollm.tracking; metrics.csv is always written): tensorboard (results/<experiment>/"
        "tensorboard/<run>/seed<k>/), mlflow (MLFLOW_TRACKING_URI, else results/<experiment>/mlruns/) and wandb "
        "(WANDB_MODE, WANDB_PROJECT, WANDB_ENTITY). Needs `pip install -e .[tracking]` (watching only: changing "
        "it reruns nothing)"))
    # Keys of who watches a run and how often it saves itself: no part of what a checkpoint or a finished training
    # must match (picollm.checkpoint), since resuming from any step gives the same numbers.
    WATCH_AND_SAVE: ClassVar[set[str]] = {"loggers", "checkpoint_interval"}
    # Keys that change no result: how many cores, GPUs and machines a job gets (devices and nodes split the same
    # global batch over more processes, which tests/test_ddp.py finds equal to one process's run up to float
    # rounding), who watches it and when it saves. A change to them reruns no job (picollm.jobs).
    SCHEDULING: ClassVar[set[str]] = {"threads", "devices", "nodes"} | WATCH_AND_SAVE

    @model_validator(mode="after")
    def _one_length(self):
        """A budget sets the run's length, so it takes the place of the other two; max_steps counts as given
        only when a study file, its base or a model's `train:` sets it (its default gives way)."""
        if self.flops is None:
            return self
        if "max_steps" in self.model_fields_set:
            raise ValueError(f"flops: the budget sets the number of steps, and train.max_steps ({self.max_steps}) "
                             f"sets it too; drop max_steps (or flops) wherever it is set (a base file's train: max_steps "
                             f"stays unless the study says replace: [train.max_steps], which keeps the rest of its train:)")
        if self.max_minutes is not None:
            raise ValueError("flops: a budget of FLOPs fixes the steps before training, and train.max_minutes stops "
                             "on the clock; drop one of the two")
        return self

    @model_validator(mode="after")
    def _fits_the_run(self):
        if self.snapshot_steps and self.max_minutes is not None:
            raise ValueError("snapshot_steps: needs a run of known length, and train.max_minutes stops it "
                             "whenever the time is up; drop one of the two")
        # under a budget the steps are known once the vocabulary is: picollm.flops.budget_steps checks them
        late = [s for s in self.snapshot_steps if s > self.max_steps and self.flops is None]
        if late:
            kept = [s for s in self.snapshot_steps if s <= self.max_steps]
            raise ValueError(f"snapshot_steps: step {late[0]} is beyond train.max_steps ({self.max_steps}); keep "
                             f"the steps up to it (train: {{max_steps: {self.max_steps}, snapshot_steps: {kept}}}) or "
                             f"raise max_steps")
        ranks = self.devices * self.nodes
        if self.batch_size % ranks:
            raise ValueError(f"batch_size: {self.batch_size} does not split evenly over train.devices x "
                             f"train.nodes = {ranks} ranks; make it a multiple of {ranks}")
        return self

    @model_serializer(mode="wrap")
    def _derived_steps_left_out(self, handler):
        """Under a budget max_steps is derived, not given: its default stays out of the dump, so that the dump
        parses back (train_of, the train job's --config) without reading as max_steps given with flops."""
        out = handler(self)
        if self.flops is not None and "max_steps" not in self.model_fields_set:
            out.pop("max_steps", None)
        return out

    @property
    def kept_steps(self) -> list[int]:
        """snapshot_steps, sorted, each once."""
        return sorted(set(self.snapshot_steps))

    def is_eval_step(self, step: int) -> bool:
        """Whether the schedule measures the validation loss at `step` (training adds the last step)."""
        if self.eval_schedule == "log":
            return step in log_steps(self.max_steps, self.eval_points, self.warmup_steps)
        return step % self.eval_interval == 0


@functools.lru_cache(maxsize=64)
def log_steps(max_steps: int, points: int, warmup_steps: int = 0) -> frozenset[int]:
    """Steps 0 and 1, and `points` steps from the end of warm-up to max_steps spaced evenly in log(step),
    rounded: a fit of loss against compute leaves warm-up out (the learning rate, not the compute, holds the
    loss up there), so the points go where it reads them."""
    start = min(max(warmup_steps, 1), max_steps)
    ratio = (max_steps / start) ** (1 / (points - 1)) if points > 1 else 1.0
    return frozenset({0, 1, max_steps} | {round(start * ratio ** i) for i in range(points)})


class _Overrides(Section):
    @model_serializer(mode="wrap")
    def _only_given(self, handler):
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


def _overrides_of(cls: type[Section]) -> type[Section]:
    """The same keys as `cls`, each optional with no default: what a model's own `train:` may override."""
    fields = {name: (Optional[Annotated[f.annotation, *f.metadata] if f.metadata else f.annotation],
                     Field(None, description=f.description))
              for name, f in cls.model_fields.items()}
    return create_model("TrainOverrides", __base__=_Overrides, __doc__="per-model overrides of the train section "
                        "(e.g. its own lr); no defaults of their own", **fields)


TrainOverrides = _overrides_of(TrainConfig)


class ModelBase(Section):
    train: Optional[TrainOverrides] = Field(None, exclude_if=lambda v: v is None)
    type: str  # each type's class narrows it to its name (and the keys follow it, as a study file lists them)

    def hyperparameters(self) -> dict:
        """What the model class's constructor takes: every key but `type` and `train`."""
        return self.model_dump(exclude={"type", "train"})

    def overrides(self) -> dict:
        """The train keys this model sets itself."""
        return self.train.model_dump() if self.train else {}


def _config_class(model_type) -> type[ModelBase]:
    """A type's `models:` entry: its keys (picollm.model_types.<type>), its `type` tag and its train overrides."""
    keys = model_type.keys
    cls = create_model(keys.__name__, __base__=(keys, ModelBase), __module__=__name__, __doc__=keys.__doc__,
                       type=(Literal[model_type.name], ...))
    globals()[cls.__name__] = cls  # found by its name here, as a class written in this module is (pickle)
    return cls


# A model type's config class, by its `type`; the union every `models:` entry is read as follows from it.
MODEL_CLASSES = {name: _config_class(model_type) for name, model_type in model_types().items()}
ModelConfig = Annotated[Union[tuple(MODEL_CLASSES.values())], Field(discriminator="type")]


class SourceBase(Section):
    name: Optional[Name] = Field(None, description="output folder data/raw/<name>/ (default: the kind, numbered if repeated)")
    weight: float = Field(1.0, gt=0, description="relative probability that a training window is drawn from this source")

    @property
    def local_files(self) -> list[str]:
        """The files of this machine the source reads (a `text` source's); none for a downloaded or generated one."""
        return []


class TinyStoriesSource(SourceBase):
    kind: Literal["tinystories"]
    train_stories: int = Field(20000, ge=1, description="stories streamed from the train split")
    val_stories: int = Field(1000, ge=1, description="stories streamed from the validation split")
    dataset: str = Field("roneneldan/TinyStories", description="Hugging Face dataset id")
    revision: str = Field("f54c09fd23315a6f9c86f9dc80f725de7d8f9c64", min_length=1,
                          description="pinned dataset revision (git commit on the Hub)")


class TextSource(SourceBase):
    kind: Literal["text"]
    train_files: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, description=(
        "UTF-8 files, cut into documents as split_on says"))
    val_files: list[Annotated[str, Field(min_length=1)]] = Field([], description=(
        "validation files; empty: hold out data.val_fraction of the train documents"))
    max_documents: Optional[int] = Field(None, ge=1, description="take at most this many training documents")
    split_on: Optional[Literal["eot", "blank_line", "line", "none"]] = Field(None, description=(
        "how the files are cut into documents, train and validation alike: at <|endoftext|> lines (eot), at blank "
        "lines (blank_line), at every line (line), or not at all (none: a file is one document); null: eot if a "
        "train file holds an <|endoftext|> line, else line (the download job says which on the terminal)"))

    @property
    def local_files(self) -> list[str]:
        return [*self.train_files, *self.val_files]


class ThreeSeqsSource(SourceBase):
    kind: Literal["3seqs"]
    num_sequences: int = Field(5000, ge=2, description="generated sequences (one per line)")
    max_terms: int = Field(12, ge=2, description="numbers per sequence at most")


SOURCE_CLASSES = {"tinystories": TinyStoriesSource, "text": TextSource, "3seqs": ThreeSeqsSource}
Source = Annotated[Union[tuple(SOURCE_CLASSES.values())], Field(discriminator="kind")]


class DataConfig(Section):
    val_fraction: float = Field(0.05, gt=0, lt=1, description=(
        "share of documents held out for validation when a source has no validation split of its own"))
    sources: list[Source] = Field([ThreeSeqsSource(kind="3seqs")], min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _name_sources(cls, data):
        """Every source gets a unique folder name: its `name`, else its kind (numbered when repeated)."""
        sources = data.get("sources", cls.model_fields["sources"].default) if isinstance(data, dict) else None
        if not isinstance(sources, list):
            return data  # the field's own check says what is wrong
        items = [s.model_dump() if isinstance(s, BaseModel) else s for s in sources]
        kinds = [s.get("kind") if isinstance(s, dict) else None for s in items]
        seen = set()
        for i, src in enumerate(items):
            if not isinstance(src, dict):
                continue
            if src.get("name") is None:
                items[i] = src = {**src, "name": src.get("kind") if kinds.count(src.get("kind")) == 1 else
                                  f"{src.get('kind')}{i}"}
            if src["name"] in seen:
                raise PicoError(f"config key 'data.sources.{i}.name': {src['name']!r} is used twice; "
                                f"give each source its own name")
            seen.add(src["name"])
        return {**data, "sources": items}

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    @property
    def english(self) -> bool:
        """Whether the study's text is English words (a tinystories or text source), so that a share of words
        found in an English word list means something; 3seqs text is numbers."""
        return any(s.kind != "3seqs" for s in self.sources)


class SamplingConfig(Section):
    prompts: list[str] = Field(["Once upon a time"], min_length=1)
    p_values: list[Probability] = Field([0.8, 0.95, 1.0], min_length=1, description=(
        "nucleus (top-p) thresholds, each in (0, 1]; greedy decoding is always added"))
    sweep_p_values: list[Probability] = Field([], description=(
        "optional denser p grid for figures/p_sweep.png (measured by the evaluate stage)"))
    max_new_tokens: int = Field(60, ge=1)
    num_samples: int = Field(2, ge=1, description="samples per prompt and p")
    stop_at_eot: bool = Field(True, description="end a sample at the end-of-text token")


class EvaluateConfig(Section):
    max_tokens: Optional[int] = Field(None, ge=1, description=(
        "validation tokens scored per model by the evaluate stage (null: the whole split)"))
    scoring: Literal["windows", "per_document"] = Field("windows", description=(
        "windows: each source in non-overlapping windows of block_size tokens that run across documents, "
        "end-of-text tokens scored too; per_document: each document on its own from end-of-text, its closing "
        "end-of-text not scored, as lm-evaluation-harness's loglikelihood_rolling tasks do (docs/lm-eval.md)"))


class FiguresConfig(Section):
    attention_prompt: Optional[str] = Field(None, description=(
        "prompt of figures/attention_heads.png (null: the first sampling prompt)"))
    loss_zoom: bool = Field(False, description=(
        "figures/loss_curves.png: cut the first steps' large losses off the y axis to show the later ones"))
    loss_logy: bool = Field(False, description="figures/loss_curves.png: log-scale y axis")
    scaling: bool = Field(False, description=(
        "figures/scaling.png and tables/scaling.csv: validation bits per byte against training FLOPs per model "
        "type, each type's compute frontier and fitted power law E + A C^-alpha (picollm.scaling). Needs a model "
        "type with two runs or more, e.g. a sweep of sizes; train.eval_schedule: log gives the curves points at "
        "small compute"))
