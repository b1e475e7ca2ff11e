"""Load and validate a study config: the JSON schema (every key, its default and meaning) plus the few
checks a schema cannot say.

`load_study` is what the Snakefile calls: study files (each may start from a `base:` file), then the
command line's `--config` overrides, deep-merged in that order, coerced to the schema's types and validated.
A bad key stops the run at start-up with one line naming the key and what is allowed. Nothing here imports
torch or tiktoken, so parsing the workflow stays cheap.
"""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from picollm.errors import PicoError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
DEFAULT_STUDY = "config/config.yaml"


def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _branches(node: dict, value) -> list[dict]:
    """The `then` parts of a node's if/then branches that apply to `value`."""
    return [b["then"] for b in node.get("allOf", [])
            if "if" in b and jsonschema.Draft202012Validator(b["if"]).is_valid(value)]


def _children(node: dict, value: dict) -> dict:
    """{key: sub-schema} for the keys of an object `value`, if/then branches and additionalProperties included."""
    found = {}
    for part in [node, *_branches(node, value)]:
        for key, sub in part.get("properties", {}).items():
            if isinstance(sub, dict):
                found[key] = {**found.get(key, {}), **sub}
        extra = part.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                found.setdefault(key, extra)
    return found


def fill_defaults(node: dict, value) -> None:
    """Insert schema defaults into `value` in place (objects, maps, arrays of objects, if/then branches)."""
    if isinstance(value, dict):
        for key, sub in _children(node, value).items():
            if "default" in sub and key not in value:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                fill_defaults(sub, value[key])
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            fill_defaults(node["items"], item)


def _coerce(node: dict, value, merged):
    """`--config` values arrive as strings inside nested mappings: parse those the schema types otherwise."""
    if isinstance(value, dict):
        children = _children(node, merged if isinstance(merged, dict) else value)
        return {k: _coerce(children.get(k, {}), v, (merged or {}).get(k) if isinstance(merged, dict) else None)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(node.get("items", {}), v, None) for v in value]
    if isinstance(value, str) and node.get("type") != "string":
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return value if isinstance(parsed, str) else parsed
    return value


def _one_line(err: jsonschema.ValidationError, prefix: tuple = ()) -> str:
    path = [*prefix, *err.absolute_path]
    where = ".".join(map(str, path)) or "(top level)"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        key = ".".join(map(str, [*path, extra[0]]))
        return f"unknown config key '{key}'; allowed here: {', '.join(allowed)}"
    if err.validator == "enum":
        return f"config key '{where}' is {err.instance!r}; allowed: {', '.join(map(str, err.validator_value))}"
    if path == ["seeds"] and err.validator == "minItems":
        return "config key 'seeds' is empty; give at least one seed (or seed: N for one)"
    if err.validator == "required":
        return f"config key '{where}' is missing {err.message.split()[0]}"
    if path == ["tokenizer"]:
        return f"config key 'tokenizer' is {err.instance!r}; use {tokenizer_choices()}"
    if path[:2] == ["sampling", "p_values"] or path[:2] == ["sampling", "sweep_p_values"]:
        if err.validator in ("exclusiveMinimum", "maximum", "type"):
            return (f"config key '{where}' is {err.instance!r}; each p must be in (0, 1] "
                    f"(greedy decoding is always included)")
    return f"config key '{where}': {err.message}"


def validate(cfg: dict) -> dict:
    """Return a validated deep copy of `cfg` with every default filled in; raise PicoError otherwise."""
    cfg = copy.deepcopy(cfg if cfg is not None else {})
    cfg.pop("base", None)
    sch = schema()
    fill_defaults(sch, cfg)
    errors = list(jsonschema.Draft202012Validator(sch).iter_errors(cfg))
    if errors:
        # if/then branches report through the branch's own error; prefer the deepest, most specific one
        raise PicoError(_one_line(jsonschema.exceptions.best_match(errors)))
    check_tokenizer(cfg["tokenizer"])
    _name_sources(cfg)
    _resolve_seeds(cfg)
    _check_runs(cfg)
    _check_models(cfg)
    return cfg


BPE_PREFIX = "bpe:"
# 256 byte tokens + end-of-text at least; token ids stored as uint16 at most
BPE_MIN_VOCAB, BPE_MAX_VOCAB = 257, 65536


def tokenizer_choices() -> str:
    """What `tokenizer` may be, for error messages (the tiktoken names come from the schema)."""
    names = [n for n in schema()["properties"]["tokenizer"]["anyOf"][0]["enum"] if n != "byte"]
    return (f"byte, bpe:N (a BPE of N tokens trained on the study's text, {BPE_MIN_VOCAB}..{BPE_MAX_VOCAB}, "
            f"e.g. bpe:4096) or a tiktoken encoding ({', '.join(names)})")


def bpe_vocab_size(name: str) -> int | None:
    """N of a `bpe:N` tokenizer name; None for every other tokenizer."""
    if not name.startswith(BPE_PREFIX) or not name[len(BPE_PREFIX):].isdigit():
        return None
    return int(name[len(BPE_PREFIX):])


def check_tokenizer(name: str) -> None:
    """The size of a `bpe:N` tokenizer, which the schema's pattern cannot bound."""
    n = bpe_vocab_size(name)
    if n is not None and n < BPE_MIN_VOCAB:
        raise PicoError(f"config key 'tokenizer' is {name!r}: a byte-level BPE needs at least {BPE_MIN_VOCAB} tokens "
                        f"(256 bytes + end-of-text); use bpe:{BPE_MIN_VOCAB} or more, e.g. bpe:4096")
    if n is not None and n > BPE_MAX_VOCAB:
        raise PicoError(f"config key 'tokenizer' is {name!r}: at most {BPE_MAX_VOCAB} tokens (ids are stored as "
                        f"uint16); use bpe:{BPE_MAX_VOCAB} or less, e.g. bpe:4096")


def runs(cfg: dict) -> dict:
    """{run name: model entry}: every model, then every sweep point as <model>.<key>=<value>."""
    out = {name: copy.deepcopy(entry) for name, entry in cfg["models"].items()}
    for model, grid in cfg.get("sweep", {}).items():
        for key, values in grid.items():
            for value in values:
                name = f"{model}.{key}={value}"
                if name in out:
                    raise PicoError(f"config key 'sweep.{model}.{key}': two runs are named {name!r}; "
                                    f"list each value once and give models names unlike sweep runs")
                entry = copy.deepcopy(cfg["models"][model])
                if key.startswith("train."):
                    entry.setdefault("train", {})[key.removeprefix("train.")] = value
                else:
                    entry[key] = value
                out[name] = entry
    return out


def model_spec(cfg: dict, name: str) -> dict:
    """A run's model entry without its `train` overrides: what build_model takes."""
    return {k: v for k, v in runs(cfg)[name].items() if k != "train"}


def model_train(cfg: dict, name: str) -> dict:
    """The train section with the run's own `train:` overrides (e.g. a smaller lr) applied."""
    return {**cfg["train"], **runs(cfg)[name].get("train", {})}


def sweep_point(cfg: dict, run: str) -> dict | None:
    """{model, key, value} of a sweep run, None for a model of the config."""
    for model, grid in cfg.get("sweep", {}).items():
        for key, values in grid.items():
            for value in values:
                if run == f"{model}.{key}={value}":
                    return {"model": model, "key": key, "value": value}
    return None


def _resolve_seeds(cfg: dict) -> None:
    """`seed: N` means `seeds: [N]`; the data follow data_seed, else the first seed."""
    seeds = cfg["seeds"] if cfg["seeds"] is not None else [cfg["seed"]]
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise PicoError(f"config key 'seeds' lists seed {twice[0]} twice; give each seed once")
    cfg["seeds"] = seeds
    if cfg["data_seed"] is None:
        cfg["data_seed"] = seeds[0]


def _check_runs(cfg: dict) -> None:
    """Sweep keys and values, run names, and snapshot steps within max_steps."""
    models_schema = {**schema(), "required": []}
    train_keys = schema()["properties"]["train"]["properties"]
    for model, grid in cfg["sweep"].items():
        if model not in cfg["models"]:
            raise PicoError(f"config key 'sweep.{model}': the config has no model {model!r}; "
                            f"sweep one of: {', '.join(cfg['models'])}")
        kind = cfg["models"][model]["type"]
        own = sorted(k for k in cfg["models"][model] if k not in ("type", "train"))
        for key, values in grid.items():
            if key.startswith("train.") and key.removeprefix("train.") not in train_keys or (
                    not key.startswith("train.") and key not in own):
                raise PicoError(f"config key 'sweep.{model}.{key}': {model} ({kind}) has no such key; sweep one of "
                                f"{', '.join(own)} or train.<key> ({', '.join(sorted(train_keys))})")
            for value in values:
                point = runs({"models": {model: cfg["models"][model]}, "sweep": {model: {key: [value]}}})
                entry = {model: point[f"{model}.{key}={value}"]}
                errors = list(jsonschema.Draft202012Validator(models_schema).iter_errors({"models": entry}))
                if errors:
                    message = jsonschema.exceptions.best_match(errors).message
                    raise PicoError(f"config key 'sweep.{model}.{key}': value {value!r} does not fit ({message})")
    for run in runs(cfg):
        train = model_train(cfg, run)
        if train["snapshot_steps"] and train["max_minutes"] is not None:
            raise PicoError(f"config key 'train.snapshot_steps' of run {run} needs a run of known length, and "
                            f"train.max_minutes stops it whenever the time is up; drop one of the two")
        late = [s for s in train["snapshot_steps"] if s > train["max_steps"]]
        if late:
            raise PicoError(f"config key 'train.snapshot_steps': step {late[0]} is beyond train.max_steps "
                            f"({train['max_steps']}) of run {run}; drop it or raise max_steps")
        ranks = train["devices"] * train["nodes"]
        if train["batch_size"] % ranks:
            raise PicoError(f"config key 'train.batch_size' ({train['batch_size']}) of run {run} does not split evenly "
                            f"over train.devices x train.nodes = {ranks} ranks; make it a multiple of {ranks}")


def train_defaults(train_cfg: dict) -> dict:
    """A train section with the schema's defaults filled in (for callers of picollm.train.train)."""
    filled = copy.deepcopy(train_cfg)
    fill_defaults(schema()["properties"]["train"], filled)
    return filled


def model_defaults(model_cfg: dict) -> dict:
    """A model entry ({type: ..., hyperparameters}) with its type's schema defaults filled in."""
    full = {"models": {"m": copy.deepcopy(model_cfg)}}
    fill_defaults({"properties": {"models": schema()["properties"]["models"]}}, full)
    return full["models"]["m"]


def _check_models(cfg: dict) -> None:
    """What the schema cannot say about a model's hyperparameters (sweep points included)."""
    for name, m in runs(cfg).items():
        where = f"models.{name}" if name in cfg["models"] else f"sweep run {name}"
        if m["type"] == "transformer":
            if m["d_model"] % m["n_heads"]:
                raise PicoError(f"config key '{where}': d_model ({m['d_model']}) must be divisible by "
                                f"n_heads ({m['n_heads']})")
            if m["pos_encoding"] == "rope" and (m["d_model"] // m["n_heads"]) % 2:
                raise PicoError(f"config key '{where}': rope rotates pairs of channels, so d_model / n_heads "
                                f"({m['d_model'] // m['n_heads']}) must be even")


def _name_sources(cfg: dict) -> None:
    """Give every data source a unique folder name: its `name`, else its kind (numbered when repeated)."""
    sources = cfg["data"]["sources"]
    kinds = [s["kind"] for s in sources]
    seen = set()
    for i, src in enumerate(sources):
        if "name" not in src:
            src["name"] = src["kind"] if kinds.count(src["kind"]) == 1 else f"{src['kind']}{i}"
        if src["name"] in seen:
            raise PicoError(f"config key 'data.sources.{i}.name': {src['name']!r} is used twice; "
                            f"give each source its own name")
        seen.add(src["name"])


def deep_merge(base: dict, top: dict) -> dict:
    """`top` onto `base`: mappings merge key by key, anything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_study_file(path, _chain: tuple = ()) -> dict:
    """One study file with its `base:` chain resolved (paths relative to the file naming them)."""
    path = Path(path)
    if path.resolve() in _chain:
        raise PicoError(f"config file {path}: 'base' loops back to itself "
                        f"({' -> '.join(p.name for p in [*_chain, path.resolve()])}); remove one 'base:'")
    if not path.is_file():
        named = f" (named by 'base:' in {_chain[-1]})" if _chain else ""
        raise PicoError(f"config file {path} does not exist{named}; fix the path")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PicoError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise PicoError(f"config file {path} must hold a mapping of config keys, not {type(raw).__name__}")
    if "base" not in raw:
        return raw
    if not isinstance(raw["base"], str):
        raise PicoError(f"config file {path}: 'base' must be a file path, not {raw['base']!r}")
    parent = read_study_file(path.parent / raw["base"], (*_chain, path.resolve()))
    return deep_merge(parent, {k: v for k, v in raw.items() if k != "base"})


def load_study(files=(), overrides: dict | None = None) -> dict:
    """Study files (default: config/config.yaml) merged in order, then `--config` overrides, validated."""
    merged = {}
    for path in files or [DEFAULT_STUDY]:
        merged = deep_merge(merged, read_study_file(path))
    overrides = _coerce(schema(), dict(overrides or {}), merged)
    return validate(deep_merge(merged, overrides))


def load_config(path) -> dict:
    """Read one study file (and its base) and validate it."""
    return load_study([path])


def validate_part(part: dict, required=(), optional=()) -> dict:
    """A job's slice of the config (some top-level keys): each validated against its part of the schema,
    with that part's defaults filled in; `optional` keys that are absent get their schema default.
    What the stage commands take as `--config`."""
    sch = schema()
    part = copy.deepcopy(part)
    missing = [k for k in required if k not in part]
    if missing:
        raise PicoError(f"--config lacks {', '.join(missing)}; give it as in a study file (JSON)")
    for key in optional:
        part.setdefault(key, copy.deepcopy(sch["properties"][key].get("default")))
    for key, value in part.items():
        if key not in sch["properties"]:
            raise PicoError(f"unknown config key '{key}'; allowed here: {', '.join(sorted(sch['properties']))}")
        node = sch["properties"][key]
        holder = {key: value}
        fill_defaults({"properties": {key: node}}, holder)
        errors = list(jsonschema.Draft202012Validator({**sch, "required": []}).iter_errors(holder))
        if errors:
            raise PicoError(_one_line(jsonschema.exceptions.best_match(errors)))
        if key == "tokenizer":
            check_tokenizer(value)
        part[key] = holder[key]
    return part
