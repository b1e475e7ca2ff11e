"""A typed config object from plain data, or one line naming the first bad key: what every study file, `--config`
override and job slice goes through.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Bad:
    """One pydantic error, in the terms the lines below speak of: its key's path, kind and value."""
    path: list
    kind: str
    value: object
    msg: str
    ctx: dict
    loc: tuple
    cls: type[BaseModel]
    run: str | None

    @property
    def where(self) -> str:
        return ".".join(map(str, self.path)) or "(top level)"

    @property
    def of_run(self) -> str:
        return f" of run {self.run}" if self.run else ""

    @property
    def shown(self) -> str:
        """The value as the user wrote it: a --config value reaches the schema as text, a number shown bare."""
        return self.value if isinstance(self.value, str) and NUMBER.fullmatch(self.value) else repr(self.value)


# Other projects' names for keys of ours (nanoGPT's, Hugging Face's, the other model type's), which difflib's
# spelling distance does not find: learning_rate is far from lr.
ALIASES = {"learning_rate": ["lr"], "max_iters": ["max_steps"], "steps": ["max_steps"], "num_steps": ["max_steps"],
           "warmup_iters": ["warmup_steps"], "warmup": ["warmup_steps"], "n_layer": ["n_layers", "num_layers"],
           "num_layers": ["n_layers"], "n_layers": ["num_layers"], "num_hidden_layers": ["n_layers", "num_layers"],
           "n_head": ["n_heads"], "num_heads": ["n_heads"], "num_attention_heads": ["n_heads"],
           "n_embd": ["d_model", "embed_dim"], "hidden_size": ["d_model", "hidden_dim"], "block": ["block_size"],
           "context_length": ["block_size"], "batch": ["batch_size"], "clip_grad": ["grad_clip"],
           "clip_grad_norm": ["grad_clip"], "max_grad_norm": ["grad_clip"], "intermediate_size": ["mlp_hidden"]}


def _guess(word, choices) -> str:
    aliased = [name for name in ALIASES.get(str(word), []) if name in choices]
    close = aliased or difflib.get_close_matches(str(word), choices, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def _unknown_key(bad: _Bad) -> str | None:
    if bad.kind != "extra_forbidden":
        return None
    allowed = sorted(_holder(bad.cls, bad.loc).model_fields)
    key, colon, value = str(bad.path[-1]).partition(":")
    if colon and key in allowed:  # {max_steps:400}: YAML reads one key, "max_steps:400", with no value
        return f"config key '{bad.where}' is no key: YAML needs a space after the colon; write '{key}: {value.strip()}'"
    return f"unknown config key '{bad.where}'; {_guess(bad.path[-1], allowed)}allowed here: {', '.join(allowed)}"


def _bad_tag(bad: _Bad) -> str | None:
    """A model's type or a source's kind that names no class, or none given."""
    if bad.kind == "union_tag_invalid":
        tags, field = bad.ctx["expected_tags"].replace("'", ""), bad.ctx["discriminator"].strip("'")
        return f"config key '{bad.where}.{field}' is {bad.ctx['tag']!r}; {_guess(bad.ctx['tag'], tags.split(', '))}" \
               f"allowed: {tags}"
    if bad.kind == "union_tag_not_found":
        field = bad.ctx["discriminator"].strip("'")
        close = difflib.get_close_matches(str(bad.path[-1]), MODEL_CLASSES, n=1) if field == "type" else []
        guess = f" (a model of type '{close[0]}'? give it type: {close[0]})" if close else ""
        return f"config key '{bad.where}' is missing '{field}'{guess}"
    return None


def _missing_or_choice(bad: _Bad) -> str | None:
    if bad.kind == "literal_error":
        return f"config key '{bad.where}' is {bad.value!r}; allowed: {bad.ctx['expected'].replace(chr(39), '')}"
    if bad.kind == "missing" and len(bad.path) == 1:
        name = " (the study's name: its outputs go under results/<experiment>/)" if bad.path == ["experiment"] else ""
        return f"config key '{bad.path[0]}' is missing{name}"
    if bad.kind == "missing":
        return f"config key '{'.'.join(map(str, bad.path[:-1]))}' is missing '{bad.path[-1]}'"
    return None


def _bad_list(bad: _Bad) -> str | None:
    """The seeds, the p values, and one value where YAML needs a list."""
    if bad.kind == "too_short" and bad.path == ["seeds"]:
        return "config key 'seeds' is empty; give at least one seed (or seed: N for one)"
    if bad.path[:2] in (["sampling", "p_values"], ["sampling", "sweep_p_values"]):
        if len(bad.path) == 2 and bad.kind == "list_type":
            return f"config key '{bad.where}' is {bad.value!r}; give a list of p values, e.g. [{bad.value}]"
        if len(bad.path) == 3:
            return f"config key '{bad.where}' is {bad.value!r}; each p must be in (0, 1] (greedy decoding is always " \
                   f"included)"
    if bad.kind != "list_type" or isinstance(bad.value, (list, dict)):
        return None
    if bad.value in (None, "null", "~", ""):  # --config's words reach the schema as text
        example = "[1337, 1338] (or seed: 1337 for a single seed)" if bad.path == ["seeds"] else "[] for none"
        return f"config key '{bad.where}'{bad.of_run} is empty; give a list, e.g. {example}"
    single = f" (or seed: {bad.shown} for a single seed)" if bad.path == ["seeds"] else ""
    return f"config key '{bad.where}'{bad.of_run} is {bad.value!r}; give a list, e.g. [{bad.shown}]{single}"


def _bad_type(bad: _Bad) -> str | None:
    if bad.kind == "string_type" and isinstance(bad.value, (bool, int, float)):  # experiment: 2024, name: yes
        read_as = "true/false" if isinstance(bad.value, bool) else "a number"
        return f"config key '{bad.where}'{bad.of_run} is {bad.value!r}, which YAML reads as {read_as}; quote it: " \
               f"'{bad.value}'"
    type_name = next((JSON_TYPES[k] for k in JSON_TYPES if bad.kind.startswith(f"{k}_")), None)
    if type_name and bad.value is None:  # `key:` with nothing after it, or --config key=
        return f"config key '{bad.where}'{bad.of_run} is empty; give a value of type '{type_name}'"
    if type_name and bad.kind.endswith(("_type", "_parsing", "_from_float")):
        return f"config key '{bad.where}'{bad.of_run}: {bad.shown} is not of type '{type_name}'"
    return None


def _bad_value(bad: _Bad) -> str | None:
    """A value of the right type out of its bounds: a number, a name, a list."""
    if bad.kind == "finite_number":  # .inf, .nan
        return f"config key '{bad.where}'{bad.of_run} is {bad.shown}; give a finite number"
    if bad.kind in BOUNDS:  # the value given and the bound it breaks, not pydantic's "Input should be ..."
        sign, bound = next((BOUNDS[bad.kind], bad.ctx[key]) for key in ("gt", "ge", "lt", "le") if key in bad.ctx)
        return f"config key '{bad.where}'{bad.of_run} is {bad.shown}; it must be {sign} " \
               f"{bound if isinstance(bound, int) else f'{bound:g}'}"
    if bad.kind == "string_pattern_mismatch":  # a name: the experiment's, a model's or a sweep's (a mapping's key)
        chars = re.fullmatch(r"\^\[(.*)\]\+\$", bad.ctx["pattern"])
        allowed = f"only the characters {chars.group(1)}" if chars else f"to match {bad.ctx['pattern']}"
        key = ".".join(map(str, bad.path[:-2])) if bad.path[-1] == "[key]" else bad.where
        return f"config key '{key}'{bad.of_run}: the name {bad.value!r} is not allowed; a name may hold {allowed} " \
               f"(no spaces)"
    if bad.kind == "too_short":
        least = bad.ctx["min_length"]
        return f"config key '{bad.where}'{bad.of_run} is empty; give at least " \
               f"{'one entry' if least == 1 else f'{least} entries'}"
    return None


# Tried in this order: the first that knows the error words it (a p value's bound before any bound's).
_LINES = (_unknown_key, _bad_tag, _missing_or_choice, _bad_list, _bad_type, _bad_value)


def one_line(err: dict, cls: type[BaseModel], at: tuple = (), run: str | None = None) -> str:
    """One pydantic error as the line the user sees: the key, what it is, and what is allowed."""
    path = [*at, *_clean_path(err["loc"])]
    kind, msg = err["type"], err["msg"].removeprefix("Value error, ")
    sub = re.match(r"([a-z_0-9]+): (.*)", msg) if kind == "value_error" else None
    if sub:  # a validator's "key: problem" names the key below the one it checks
        path, msg = [*path, sub.group(1)], sub.group(2)
    bad = _Bad(path, kind, err.get("input"), msg, err.get("ctx") or {}, err["loc"], cls, run)
    return next((line for words in _LINES if (line := words(bad))), f"config key '{bad.where}'{bad.of_run}: {bad.msg}")


def model_config(entry) -> ModelConfig:
    """A model config from a mapping ({type: ..., hyperparameters}), or the object itself."""
    if not isinstance(entry, dict):
        return entry
    if entry.get("type") not in MODEL_CLASSES:
        raise PicoError(f"unknown model type {entry.get('type')!r}; use one of {', '.join(MODEL_CLASSES)}")
    return parse(MODEL_CLASSES[entry["type"]], entry)
