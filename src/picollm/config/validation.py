"""A typed config object from plain data, or one line naming the first bad key: what every study file, `--config`
override and job slice goes through.
"""
from __future__ import annotations

import difflib
import re
from typing import get_args

from pydantic import BaseModel, ValidationError

from picollm.config.sections import MODEL_CLASSES, SOURCE_CLASSES, ModelConfig
from picollm.errors import PicoError

NUMBER = re.compile(r"-?\d+(\.\d*)?")  # a --config value, which reaches the schema as text
BOUNDS = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<", "less_than_equal": "≤"}
JSON_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "string": "string", "list": "array",
              "dict": "object", "model": "object"}


def parse(cls: type[BaseModel], data, at: tuple = (), run: str | None = None):
    """`cls` built from `data`, or PicoError with one line naming the first bad key (`at`: where data sits)."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise PicoError(one_line(exc.errors()[0], cls, at, run)) from None


def _tag_classes() -> dict:
    """Union tag -> class: pydantic puts the tag (a model's type, a source's kind) into error locations."""
    return {**MODEL_CLASSES, **SOURCE_CLASSES}


def _clean_path(loc: tuple) -> list:
    """A pydantic error location without its union tags (models.m.lstm.hidden_dim -> models.m.hidden_dim)."""
    tags = _tag_classes()
    return [p for i, p in enumerate(loc) if not (p in tags and i >= 2 and loc[i - 2] in ("models", "sources"))]


def _holder(cls: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The class whose field the last part of `loc` would be."""
    tags = _tag_classes()
    for part in loc[:-1]:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        if part in tags:
            cls = tags[part]
        elif field is not None:
            cls = next((t for t in (field.annotation, *get_args(field.annotation))
                        if isinstance(t, type) and issubclass(t, BaseModel)), cls)
    return cls


def one_line(err: dict, cls: type[BaseModel], at: tuple = (), run: str | None = None) -> str:
    """One pydantic error as the line the user sees: the key, what it is, and what is allowed."""
    path = [*at, *_clean_path(err["loc"])]
    kind, value, msg = err["type"], err.get("input"), err["msg"].removeprefix("Value error, ")
    sub = re.match(r"([a-z_0-9]+): (.*)", msg) if kind == "value_error" else None
    if sub:
        path, msg = [*path, sub.group(1)], sub.group(2)
    where = ".".join(map(str, path)) or "(top level)"
    of_run = f" of run {run}" if run else ""
    if kind == "extra_forbidden":
        allowed = sorted(_holder(cls, err["loc"]).model_fields)
        key, colon, value = str(path[-1]).partition(":")
        if colon and key in allowed:  # {max_steps:400}: YAML reads one key, "max_steps:400", with no value
            return (f"config key '{where}' is no key: YAML needs a space after the colon; write "
                    f"'{key}: {value.strip()}'")
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown config key '{where}'; {guess}allowed here: {', '.join(allowed)}"
    if kind == "union_tag_invalid":
        tags = err["ctx"]["expected_tags"].replace("'", "")
        field = err["ctx"]["discriminator"].strip("'")
        close = difflib.get_close_matches(str(err["ctx"]["tag"]), tags.split(", "), n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        return f"config key '{where}.{field}' is {err['ctx']['tag']!r}; {guess}allowed: {tags}"
    if kind == "union_tag_not_found":
        field = err["ctx"]["discriminator"].strip("'")
        close = difflib.get_close_matches(str(path[-1]), MODEL_CLASSES, n=1) if field == "type" else []
        guess = f" (a model of type '{close[0]}'? give it type: {close[0]})" if close else ""
        return f"config key '{where}' is missing '{field}'{guess}"
    if kind == "literal_error":
        return f"config key '{where}' is {value!r}; allowed: {err['ctx']['expected'].replace(chr(39), '')}"
    if kind == "missing" and len(path) == 1:
        name = " (the study's name: its outputs go under results/<experiment>/)" if path == ["experiment"] else ""
        return f"config key '{path[0]}' is missing{name}"
    if kind == "missing":
        return f"config key '{'.'.join(map(str, path[:-1]))}' is missing '{path[-1]}'"
    if kind == "too_short" and path == ["seeds"]:
        return "config key 'seeds' is empty; give at least one seed (or seed: N for one)"
    if path[:2] in (["sampling", "p_values"], ["sampling", "sweep_p_values"]):
        if len(path) == 2 and kind == "list_type":
            return f"config key '{where}' is {value!r}; give a list of p values, e.g. [{value}]"
        if len(path) == 3:
            return f"config key '{where}' is {value!r}; each p must be in (0, 1] (greedy decoding is always included)"
    if kind == "list_type" and not isinstance(value, (list, dict)):  # one value where YAML needs a list
        if value in (None, "null", "~", ""):  # --config's words reach the schema as text
            example = "[1337, 1338] (or seed: 1337 for a single seed)" if path == ["seeds"] else "[] for none"
            return f"config key '{where}'{of_run} is empty; give a list, e.g. {example}"
        shown = value if isinstance(value, str) and NUMBER.fullmatch(value) else repr(value)
        single = f" (or seed: {shown} for a single seed)" if path == ["seeds"] else ""
        return f"config key '{where}'{of_run} is {value!r}; give a list, e.g. [{shown}]{single}"
    if kind == "string_type" and isinstance(value, (bool, int, float)):  # experiment: 2024, name: yes
        read_as = "true/false" if isinstance(value, bool) else "a number"
        return f"config key '{where}'{of_run} is {value!r}, which YAML reads as {read_as}; quote it: '{value}'"
    # a --config value reaches the schema as text: a number is shown as the number it reads as
    shown = value if isinstance(value, str) and NUMBER.fullmatch(value) else repr(value)
    type_name = next((JSON_TYPES[k] for k in JSON_TYPES if kind.startswith(f"{k}_")), None)
    if type_name and kind.endswith(("_type", "_parsing", "_from_float")):
        return f"config key '{where}'{of_run}: {shown} is not of type '{type_name}'"
    if kind == "finite_number":  # .inf, .nan
        return f"config key '{where}'{of_run} is {shown}; give a finite number"
    if kind in BOUNDS:  # the value given and the bound it breaks, not pydantic's "Input should be ..."
        sign, bound = next((BOUNDS[kind], err["ctx"][key]) for key in ("gt", "ge", "lt", "le") if key in err["ctx"])
        return f"config key '{where}'{of_run} is {shown}; it must be {sign} {bound if isinstance(bound, int) else f'{bound:g}'}"
    if kind == "string_pattern_mismatch":  # a name: the experiment's, a model's or a sweep's (a mapping's key)
        chars = re.fullmatch(r"\^\[(.*)\]\+\$", err["ctx"]["pattern"])
        allowed = f"only the characters {chars.group(1)}" if chars else f"to match {err['ctx']['pattern']}"
        key = ".".join(map(str, path[:-2])) if path[-1] == "[key]" else where
        return (f"config key '{key}'{of_run}: the name {value!r} is not allowed; a name may hold {allowed} "
                f"(no spaces)")
    if kind == "too_short":
        least = err["ctx"]["min_length"]
        return f"config key '{where}'{of_run} is empty; give at least {'one entry' if least == 1 else f'{least} entries'}"
    return f"config key '{where}'{of_run}: {msg}"


def model_config(entry) -> ModelConfig:
    """A model config from a mapping ({type: ..., hyperparameters}), or the object itself."""
    if not isinstance(entry, dict):
        return entry
    if entry.get("type") not in MODEL_CLASSES:
        raise PicoError(f"unknown model type {entry.get('type')!r}; use one of {', '.join(MODEL_CLASSES)}")
    return parse(MODEL_CLASSES[entry["type"]], entry)
