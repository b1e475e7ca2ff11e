"""Load and validate a study config: the JSON schema (with defaults) plus the checks a schema cannot say.

`load_config` is what the Snakefile and every command call, so a bad key stops the run at start-up with
one line naming the key and what is allowed.
"""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from picollm.errors import PicoError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
TINYSTORIES_URL = "https://huggingface.co/datasets/roneneldan/TinyStories"


def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _fill_defaults(node: dict, value):
    """Insert schema defaults into `value` in place (objects, arrays of objects, if/then branches)."""
    if isinstance(value, dict):
        for key, sub in node.get("properties", {}).items():
            if isinstance(sub, dict) and "default" in sub and key not in value:
                value[key] = copy.deepcopy(sub["default"])
            if key in value and isinstance(sub, dict):
                _fill_defaults(sub, value[key])
        for branch in node.get("allOf", []):
            cond = branch.get("if")
            if cond and jsonschema.Draft202012Validator(cond).is_valid(value):
                _fill_defaults(branch["then"], value)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            _fill_defaults(node["items"], item)


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
    if err.validator == "required":
        return f"config key '{where}' is missing {err.message.split()[0]}"
    return f"config key '{where}': {err.message}"


def validate(cfg: dict) -> dict:
    """Return a validated deep copy of `cfg` with every default filled in; raise PicoError otherwise."""
    cfg = copy.deepcopy(cfg if cfg is not None else {})
    sch = schema()
    _fill_defaults(sch, cfg)
    errors = sorted(jsonschema.Draft202012Validator(sch).iter_errors(cfg),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # if/then branches report through the branch's own error; prefer the deepest, most specific one
        best = jsonschema.exceptions.best_match(errors)
        raise PicoError(_one_line(best))
    _check_models(cfg)
    _name_sources(cfg)
    if cfg["tokenizer"] != "byte":
        import tiktoken
        if cfg["tokenizer"] not in tiktoken.list_encoding_names():
            raise PicoError(f"config key 'tokenizer' is {cfg['tokenizer']!r}; allowed: byte, "
                            f"{', '.join(tiktoken.list_encoding_names())}")
    return cfg


def model_spec(cfg: dict, name: str) -> dict:
    """A model's entry without its `train` overrides: what build_model takes."""
    return {k: v for k, v in cfg["models"][name].items() if k != "train"}


def model_train(cfg: dict, name: str) -> dict:
    """The train section with the model's own `train:` overrides (e.g. a smaller lr) applied."""
    return {**cfg["train"], **cfg["models"][name].get("train", {})}


def _check_models(cfg: dict) -> None:
    """Per-type hyperparameters: names from the model constructors, values by building on the meta device."""
    import torch

    from picollm.models import build_model
    train_schema = schema()["properties"]["train"]
    for name in cfg["models"]:
        overrides = cfg["models"][name].get("train", {})
        for err in jsonschema.Draft202012Validator(train_schema).iter_errors(overrides):
            raise PicoError(_one_line(err, prefix=("models", name, "train")))
        model_cfg = model_spec(cfg, name)
        for key, value in model_cfg.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0 and key != "dropout":
                raise PicoError(f"config key 'models.{name}.{key}' is {value}; it must be positive")
        try:
            with torch.device("meta"):  # checks shapes and values without allocating weights
                build_model(model_cfg, vocab_size=257, block_size=cfg["block_size"])
        except (PicoError, ValueError, TypeError) as exc:
            raise PicoError(f"config key 'models.{name}': {exc}") from None


def _name_sources(cfg: dict) -> None:
    """Give every data source a unique folder name: its `name`, else its kind (numbered when repeated)."""
    sources = cfg["data"]["sources"]
    kinds = [s["kind"] for s in sources]
    seen = set()
    for i, src in enumerate(sources):
        if "name" not in src:
            src["name"] = src["kind"] if kinds.count(src["kind"]) == 1 else f"{src['kind']}{i}"
        if src["name"] in seen:
            raise PicoError(f"config key 'data.sources.{i}.name': {src['name']!r} is used twice; give each source its own name")
        seen.add(src["name"])


def load_config(path) -> dict:
    """Read a YAML file and validate it."""
    path = Path(path)
    if not path.exists():
        raise PicoError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PicoError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return validate(raw)


def source(cfg: dict, name: str) -> dict:
    for src in cfg["data"]["sources"]:
        if src["name"] == name:
            return src
    raise PicoError(f"no data source named {name!r}; the config has {[s['name'] for s in cfg['data']['sources']]}")
