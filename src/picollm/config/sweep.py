"""A study's runs: every model, then every point of its sweep as a model of its own."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from picollm.config.sections import MODEL_CLASSES, Section, TrainConfig
from picollm.errors import PicoError


def run_name(model: str, key: str, value) -> str:
    return f"{model}.{key}={value}"


class SweepPoint(Section):
    """The run <model>.<key>=<value>: the study's model `model` with `key` (a hyperparameter, or train.<key>) set
    to `value`. Its evaluation records it, for the sweep figure."""
    model: str
    key: str
    value: Any


def point(entry, key: str, value):
    """`entry` (a model config) with `key` set to `value`: a hyperparameter, or train.<key> as its own override."""
    data = entry.model_dump()
    if key.startswith("train."):
        data["train"] = {**entry.overrides(), key.removeprefix("train."): value}
    else:
        data[key] = value
    return MODEL_CLASSES[entry.type].model_validate(data)


def expand(study) -> tuple[dict, dict[str, SweepPoint]]:
    """{run name: model config}: the study's models, then <model>.<key>=<value> for every swept value; and
    {run name: its SweepPoint} of those swept runs."""
    runs, points = dict(study.models), {}
    for model, grid in study.sweep.items():
        if model not in study.models:
            raise PicoError(f"config key 'sweep.{model}': the config has no model {model!r}; "
                            f"sweep one of: {', '.join(study.models)}")
        entry = study.models[model]
        own = sorted(k for k in type(entry).model_fields if k not in ("type", "train"))
        for key, values in grid.items():
            train_key = key.removeprefix("train.")
            if (key.startswith("train.") and train_key not in TrainConfig.model_fields) or (
                    not key.startswith("train.") and key not in own):
                raise PicoError(f"config key 'sweep.{model}.{key}': {model} ({entry.type}) has no such key; sweep one "
                                f"of {', '.join(own)} or train.<key> ({', '.join(sorted(TrainConfig.model_fields))})")
            for value in values:
                name = run_name(model, key, value)
                if name in runs:
                    raise PicoError(f"config key 'sweep.{model}.{key}': two runs are named {name!r}; "
                                    f"list each value once and give models names unlike sweep runs")
                points[name] = SweepPoint(model=model, key=key, value=value)
                try:
                    runs[name] = point(entry, key, value)
                except (ValidationError, PicoError) as exc:
                    why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                    raise PicoError(f"config key 'sweep.{model}.{key}': value {value!r} does not fit "
                                    f"({why.removeprefix('Value error, ')})") from None
    return runs, points
