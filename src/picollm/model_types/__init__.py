"""Model types: each module of this package is one, named by its file (kgram_mlp.py is type `kgram_mlp`).

A type's module says what the workflow needs of the type without torch, as it is read whenever a study is parsed:
- one subclass of `ModelKeys`: the type's keys in a study file (a `models:` entry of `type: <name>`), with their
  defaults, bounds and meaning; picollm.config adds `type` and the per-model `train:` overrides;
- `flops_parts(cfg, block_size) -> {part: forward FLOPs per token}`: its matrix multiplications but the output
  layer's, which picollm.flops adds from `head_width(cfg)` (the module's own, or else `cfg.hidden_dim`);
- `IMPLEMENTATION = "picollm.<module>:<Class>"`: its torch nn.Module, imported only when a model is built.
It imports pydantic, typing and this package only: picollm.config, picollm.flops and picollm.models read every
type, so importing them from a type module is a cycle. A module whose name starts with _ is no type (a helper).

The folder is the registry: adding a type edits no shared code. A job's code identity (picollm.codehash, which
follows static imports) holds the modules of its own types only (`ModelType.modules`), so a study finished
before a type was added keeps every job.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from picollm.codehash import module_path, top_level_classes
from picollm.errors import PicoError

GUIDE = "docs/extending.md, adding a model type"
TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*")
IMPLEMENTATION_FORM = re.compile(r"picollm(\.\w+)+:\w+")
RESERVED = ("type", "train")  # the keys picollm.config gives every type
ONLY_IMPORTS = "a type module imports only pydantic, typing and picollm.model_types"


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


_importing: list[Path] = []  # the type module being imported, which a cycle back to model_types() names


def _import(name: str, path: Path):
    """A type's module, imported; a mistake in it (syntax, a name, a cycle) is one line naming its file and line."""
    if _importing:
        raise PicoError(f"{_importing[-1]} imports a module that reads every model type; {ONLY_IMPORTS}")
    _importing.append(path)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except PicoError:
        raise
    except SyntaxError as exc:
        raise PicoError(f"{exc.filename} has a syntax error at line {exc.lineno} ({exc.msg}); fix it, "
                        f"then rerun") from None
    except Exception as exc:
        if isinstance(exc, ImportError) and "partially initialized" in str(exc):
            raise PicoError(f"{path} imports a module that reads every model type; {ONLY_IMPORTS}") from None
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        at = f" at line {lines[-1]}" if lines else ""
        raise PicoError(f"{path}{at}: {type(exc).__name__}: {exc}; fix it, then rerun") from None
    finally:
        _importing.pop()


def describe(name: str, module) -> ModelType:
    """A type's module read as a ModelType, or one line naming what it lacks."""
    where = module.__file__
    keys = [value for value in vars(module).values() if isinstance(value, type) and issubclass(value, ModelKeys)
            and value.__module__ == module.__name__]
    if len(keys) != 1:
        raise PicoError(f"{where} defines {len(keys)} subclasses of ModelKeys; give it exactly one, the type's "
                        f"keys ({GUIDE}, step 2; a helper module's name starts with _)")
    taken = [key for key in RESERVED if key in keys[0].model_fields]
    if taken:
        raise PicoError(f"{where}: {keys[0].__name__} declares {taken[0]!r}, which every type has already "
                        f"(picollm.config.sections.ModelBase); rename the key")
    if not callable(getattr(module, "flops_parts", None)):
        raise PicoError(f"{where} has no flops_parts(cfg, block_size), the type's FLOPs; add it ({GUIDE}, step 2)")
    head_width = getattr(module, "head_width", _hidden_dim)
    if head_width is _hidden_dim and "hidden_dim" not in keys[0].model_fields:
        raise PicoError(f"{where}: {keys[0].__name__} has no hidden_dim, the width the output layer reads; name "
                        f"that key hidden_dim, or define head_width(cfg) ({GUIDE}, step 2)")
    implementation = getattr(module, "IMPLEMENTATION", None)
    if not (isinstance(implementation, str) and IMPLEMENTATION_FORM.fullmatch(implementation)):
        raise PicoError(f"{where} needs IMPLEMENTATION = \"picollm.<module>:<Class>\", the type's nn.Module "
                        f"({GUIDE}, step 2)")
    source, cls = implementation.split(":")
    if module_path(source) is None:
        raise PicoError(f"{where} names IMPLEMENTATION {implementation!r}, but src/{source.replace('.', '/')}.py "
                        f"is missing; write it ({GUIDE}, step 1)")
    if cls not in top_level_classes(source):
        raise PicoError(f"{where} names IMPLEMENTATION {implementation!r}, but {module_path(source)} defines no "
                        f"class {cls}; name the class it defines")
    return ModelType(name, keys[0], module.flops_parts, head_width, implementation)


def _no_copies(types: dict[str, ModelType]) -> None:
    """A copy of a type's module (lstm_backup.py) would be a type of its own: refused, with the way out."""
    for named in (lambda kind: kind.implementation, lambda kind: kind.keys.__name__):
        seen = {}
        for name, kind in types.items():
            value = named(kind)
            if value in seen:
                raise PicoError(f"model types {seen[value]!r} and {name!r} (src/picollm/model_types/) both name "
                                f"{value}; a copy of a type's module is a type of its own: move one out of the "
                                f"folder, or start its name with _")
            seen[value] = name


@functools.cache
def model_types() -> dict[str, ModelType]:
    """Every type, by name: the modules of this package."""
    folder = Path(__path__[0])
    types = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if info.name.startswith("_"):
            continue
        if not TYPE_NAME.fullmatch(info.name) or info.ispkg:
            found = folder / (info.name if info.ispkg else f"{info.name}.py")
            raise PicoError(f"{found} is no model type: a type is a module named in lower case letters, digits "
                            f"and _ (gru.py); move it out of the folder, or start a helper module's name with _")
        types[info.name] = describe(info.name, _import(info.name, folder / f"{info.name}.py"))
    _no_copies(types)
    return types


def model_type(name: str) -> ModelType:
    types = model_types()
    if name not in types:
        raise PicoError(f"unknown model type {name!r}; use one of {', '.join(types)} (a type of your own: {GUIDE})")
    return types[name]
