"""Model types: each module of this package is one, named by its file (kgram_mlp.py is type `kgram_mlp`).

A type's module says what the workflow needs of the type without torch, as it is read whenever a study is parsed:
- one subclass of `ModelKeys`: the type's keys in a study file (a `models:` entry of `type: <name>`), with their
  defaults, bounds and meaning; picollm.config adds `type` and the per-model `train:` overrides;
- `flops_parts(cfg, block_size) -> {part: forward FLOPs per token}`: its matrix multiplications but the output
  layer's, which picollm.flops adds from `head_width(cfg)` (the module's own, or else `cfg.hidden_dim`);
- `IMPLEMENTATION = "picollm.<module>:<Class>"`: its torch nn.Module, imported only when a model is built.

The folder is the registry: adding a type edits no shared file. A job's code identity (picollm.codehash, which
follows static imports) holds the modules of its own types only (`ModelType.modules`), so a study finished
before a type was added keeps every job.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel

from picollm.codehash import module_path
from picollm.errors import PicoError

GUIDE = "docs/extending.md"


class ModelKeys(BaseModel):
    """The base of a type's keys; picollm.config.sections.ModelBase gives the type's config class the settings of
    every section (unknown keys are errors, frozen, finite numbers), its `type` and `train`."""


def matmul(n_in: int, n_out: int) -> int:
    """Forward FLOPs per token of a (n_in -> n_out) linear map: 2 per multiply-add."""
    return 2 * n_in * n_out


def _hidden_dim(cfg) -> int:
    return cfg.hidden_dim


@dataclass(frozen=True)
class ModelType:
    name: str
    keys: type[ModelKeys]
    flops_parts: Callable
    head_width: Callable  # the features the output layer reads
    implementation: str  # "module:Class"

    @property
    def modules(self) -> tuple[str, str]:
        """What a job of this type runs beyond its stage: the type's module here, and its implementation's."""
        return f"{__name__}.{self.name}", self.implementation.split(":")[0]


def _import(name: str):
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except SyntaxError as exc:
        raise PicoError(f"{exc.filename} has a syntax error at line {exc.lineno} ({exc.msg}); fix it, "
                        f"then rerun") from None


def describe(name: str, module) -> ModelType:
    """A type's module read as a ModelType, or one line naming what it lacks."""
    where = f"src/picollm/model_types/{name}.py"
    keys = [value for value in vars(module).values() if isinstance(value, type) and issubclass(value, ModelKeys)
            and value.__module__ == module.__name__]
    if len(keys) != 1:
        raise PicoError(f"{where} defines {len(keys)} subclasses of ModelKeys; give it exactly one, the type's "
                        f"keys ({GUIDE}, step 2)")
    if not callable(getattr(module, "flops_parts", None)):
        raise PicoError(f"{where} has no flops_parts(cfg, block_size), the type's FLOPs; add it ({GUIDE}, step 2)")
    implementation = getattr(module, "IMPLEMENTATION", None)
    if not (isinstance(implementation, str) and re.fullmatch(r"picollm(\.\w+)+:\w+", implementation)):
        raise PicoError(f"{where} needs IMPLEMENTATION = \"picollm.<module>:<Class>\", the type's nn.Module "
                        f"({GUIDE}, step 2)")
    if module_path(implementation.split(":")[0]) is None:
        raise PicoError(f"{where} names IMPLEMENTATION {implementation!r}, but src/"
                        f"{implementation.split(':')[0].replace('.', '/')}.py is missing; write it ({GUIDE}, step 1)")
    return ModelType(name, keys[0], module.flops_parts, getattr(module, "head_width", _hidden_dim), implementation)


@functools.cache
def model_types() -> dict[str, ModelType]:
    """Every type, by name: the modules of this package."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    return {name: describe(name, _import(name)) for name in names}


def model_type(name: str) -> ModelType:
    types = model_types()
    if name not in types:
        raise PicoError(f"unknown model type {name!r}; use one of {', '.join(types)} (a type of your own: {GUIDE})")
    return types[name]
