"""What each stage command is given: its slice of the study as one typed, frozen object.

A slice has exactly the study keys its stage reads, declared once on Study (same types, defaults and
checks) and picked here by name. The workflow builds a slice from the Study (picollm.jobs), passes it to
the command as JSON in the rule's params, and the command parses it back into the same class.
"""
from __future__ import annotations

from pydantic import create_model, model_validator

from picollm.config.sections import Section
from picollm.config.study import Study
from picollm.config.sweep import SweepPoint
from picollm.errors import PicoError


def slice_of(name: str, *keys: str, base: type[Section] = Section) -> type[Section]:
    """A class with Study's fields `keys` (their types, defaults and checks)."""
    fields = {k: (Study.model_fields[k].annotation, Study.model_fields[k]) for k in keys}
    return create_model(name, __base__=base, **fields)


class _OneModel(Section):
    @model_validator(mode="after")
    def _one(self):
        if len(self.models) != 1:
            raise PicoError(f"--config names {len(self.models)} models; a train job trains exactly one")
        return self

    @property
    def name(self) -> str:
        return next(iter(self.models))

    @property
    def model(self):
        return next(iter(self.models.values()))

    @property
    def weights(self) -> dict | None:
        """{source name: weight}: how often the sampler draws a training window from each source (None: the
        job names no sources, so every source of the token folder weighs the same)."""
        return {s.name: s.weight for s in self.data.sources} if "data" in self.model_fields_set else None


class _OnePoint(Section):
    # a sweep run's point, which its evaluation records (None: a model of the config)
    point: SweepPoint | None = None


DownloadJob = slice_of("DownloadJob", "data", "seed")
TokenizerJob = slice_of("TokenizerJob", "tokenizer")
TrainJob = slice_of("TrainJob", "seed", "device", "block_size", "compact_vocab", "models", "train", "data",
                    base=_OneModel)
SampleJob = slice_of("SampleJob", "seed", "sampling")
EvaluateJob = slice_of("EvaluateJob", "seed", "device", "sampling", "evaluate", "data", base=_OnePoint)
ReferenceJob = slice_of("ReferenceJob", "seed", "sampling", "data")
TablesJob = slice_of("TablesJob", "experiment")
FigureJob = slice_of("FigureJob", "experiment", "figures")
SnapshotsJob = slice_of("SnapshotsJob", "experiment", "sampling")
LmEvalTaskJob = slice_of("LmEvalTaskJob", "experiment", "models")
