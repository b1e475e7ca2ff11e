"""Study files to a Study: the `base:` chain, `--config` overrides, and one line per mistake.

Study files are read in order (each after its own `base:` chain), then the command line's `--config`
overrides, deep-merged in that order; pydantic does the rest (defaults, coercion, checks). A bad key or
value stops the run with one line naming the key and what to do.
"""
from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path

import yaml

from picollm.config.study import Study
from picollm.config.validation import parse
from picollm.errors import PicoError, first_line

DEFAULT_STUDY = "config/config.yaml"
STUDY_SUFFIXES = (".yaml", ".yml", ".json")
# A target typed after --configfile (argparse gives that option every word up to the next option) is read as a
# study file: the fix, in the one line that says so.
TARGET_HINT = "put targets before --configfile (snakemake --cores N TARGET --configfile FILE)"
TEXT_OUTPUTS = (".svg", ".md", ".csv", ".html", ".txt", ".log", ".tsv")  # what the workflow writes as text


class Replace:
    """`key: !replace VALUE` in a study file: VALUE replaces what the base has under key instead of merging."""

    def __init__(self, value):
        self.value = value


class _StudyLoader(yaml.SafeLoader):
    pass


def _replace(loader, node):
    if isinstance(node, yaml.ScalarNode):
        return Replace(loader.construct_scalar(node) or None)  # `key: !replace` alone: drop the key
    construct = loader.construct_sequence if isinstance(node, yaml.SequenceNode) else loader.construct_mapping
    return Replace(construct(node, deep=True))


_StudyLoader.add_constructor("!replace", _replace)


def deep_merge(base: dict, top: dict) -> dict:
    """`top` onto `base`: mappings merge key by key, anything else (lists included) is replaced; a
    Replace(value) replaces even a mapping, and Replace(None) removes the key. A model given another `type`
    replaces its base's whole: the base's hyperparameters are another type's keys."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Replace):
            if value.value is None:
                out.pop(key, None)
            else:
                out[key] = _unwrap(value.value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and not _retyped(out[key], value):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = _unwrap(copy.deepcopy(value))
    return out


def _retyped(base: dict, top: dict) -> bool:
    """Whether `top` makes a model of `base` another type (lstm -> transformer)."""
    return "type" in top and base.get("type") not in (None, top["type"])


def _unwrap(value):
    """A value with any nested Replace markers turned into their plain values (nothing to merge them into)."""
    if isinstance(value, Replace):
        return _unwrap(value.value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items() if not (isinstance(v, Replace) and v.value is None)}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def similar_study(path: Path) -> Path | None:
    """The study file whose name is closest to `path`'s misspelt one, if any is close: beside it, or in config/
    for a bare name (`offline.yaml` for config/offline.yaml)."""
    folders = [path.parent, *([Path("config")] if path.parent == Path(".") else [])]
    for folder in reversed(folders):
        studies = {p.stem: p for p in folder.glob("*.y*ml")} if folder.is_dir() else {}
        close = difflib.get_close_matches(path.stem, studies, n=1)  # by stem: every name shares ".yaml"
        if close:
            return studies[close[0]]
    return None


def output_problem(path: Path, raw=None) -> None:
    """A study file named on the command line that is a workflow output, so a target typed after --configfile:
    a figure's .svg or a table's .md (before it is read as YAML), or a .json under results/ that holds other
    keys than a study's (an eval's; the workflow's own provenance/study.json is a study)."""
    output = path.suffix in TEXT_OUTPUTS if raw is None else (
        path.suffix == ".json" and "results" in path.parts and isinstance(raw, dict)
        and not set(raw) <= {*Study.model_fields, "base", "replace"})
    if output:
        raise PicoError(f"config file {path} is no study file (text, but not .yaml); if it is a "
                        f"target, {TARGET_HINT}")


def read_study_file(path, _chain: tuple = ()) -> dict:
    """One study file with its `base:` chain resolved (paths relative to the file naming them)."""
    path = Path(path)
    if path.resolve() in _chain:
        raise PicoError(f"config file {path}: 'base' loops back to itself "
                        f"({' -> '.join(p.name for p in [*_chain, path.resolve()])}); remove one 'base:'")
    if not path.is_file():
        named = f" (named by 'base:' in {_chain[-1]})" if _chain else ""
        close = similar_study(path)
        raise PicoError(f"config file {path} does not exist{named}; "
                        + (f"did you mean {close}?" if close else "fix the path"))
    if not _chain:
        output_problem(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StudyLoader)
    except UnicodeDecodeError as exc:
        if path.suffix not in STUDY_SUFFIXES:  # a figure or a model: a target typed after --configfile
            raise PicoError(f"config file {path} is no study file (not text, and not .yaml); if it is a target, "
                            f"{TARGET_HINT}") from None
        raise PicoError(f"config file {path} is not UTF-8 (invalid byte at offset {exc.start}); save it as "
                        f"UTF-8, or if it is no study file, check that a target did not follow --configfile") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        why = getattr(exc, "problem", None) or first_line(exc)
        raise PicoError(f"config file {path} is not valid YAML{where}: {why}; if it is no study file, check that a "
                        f"target did not follow --configfile") from None
    if raw is None:  # Snakemake refuses it with a line that names neither the file nor the fix
        raise PicoError(f"config file {path} is empty (or only comments); give it a study's keys (experiment:, "
                        f"models:, ...), or build on one with base: offline.yaml")
    if not _chain:
        output_problem(path, raw)
    if not isinstance(raw, dict):
        raise PicoError(f"config file {path} must hold a mapping of config keys, not {type(raw).__name__}; "
                        f"if it is no study file, check that a target did not follow --configfile")
    replaced = raw.pop("replace", [])
    check_own_seeds(raw, f"config file {path}")
    if "base" not in raw:
        if replaced:  # it would be dropped without a word: there is nothing to replace
            raise PicoError(f"config file {path}: 'replace' lists keys of a base, but the file has no 'base:'; "
                            f"add base: <study file>, or remove replace")
        return _unwrap(raw)
    if not isinstance(raw["base"], str):
        raise PicoError(f"config file {path}: 'base' must be a file path, not {raw['base']!r}")
    parent = read_study_file(path.parent / raw["base"], (*_chain, path.resolve()))
    check_seed(parent, raw, f"config file {path}", f"its base {raw['base']}")
    # a study of its own: inheriting its base's experiment, it would write over the base's results/<experiment>/
    raw.setdefault("experiment", re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem))
    return deep_merge(without(parent, replaced, path), {k: v for k, v in raw.items() if k != "base"})


def check_seed(lower: dict, upper: dict, where: str, below: str) -> None:
    """A `seed` set on top of a study whose `seeds` list decides which seeds run would change nothing: say so."""
    seeds, seed = lower.get("seeds"), upper.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):  # no seed, or none at all (1.5): validation says so
        return
    if "seeds" not in upper and seeds is not None and seeds != [seed]:
        instead = f"--config 'seeds=[{seed}]'" if where == "--config" else f"seeds: [{seed}]"
        raise PicoError(f"{where} sets seed: {seed}, but {below} gives seeds: {seeds}, which decide the seeds that "
                        f"run; set {instead} instead")


def check_own_seeds(layer: dict, where: str) -> None:
    """One file (or --config) giving both `seed` and a `seeds` list without it: the list decides, and the seed
    would be dropped without a word. (A seed among the seeds changes nothing: a study.json of provenance/.)"""
    seed, seeds = layer.get("seed"), layer.get("seeds")
    if seed is not None and isinstance(seeds, list) and seed not in seeds:
        instead = "--config 'seeds=[...]'" if where == "--config" else "seeds: [...]"
        raise PicoError(f"{where} sets both seed: {seed} and seeds: {seeds}, and seeds decide the seeds that run; "
                        f"drop seed, or list every seed in {instead}")


def without(study: dict, keys, path) -> dict:
    """`study` (a base) without the dotted `keys` a file's `replace:` lists: the file's own values of those keys
    take their place whole, and a key the file does not give is gone."""
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise PicoError(f"config file {path}: 'replace' must be a list of keys, e.g. replace: [train, sweep.lstm], "
                        f"not {keys!r}")
    out = copy.deepcopy(study)
    for key in keys:
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:  # a misspelt key would replace nothing, silently
            given = sorted(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(last, given, n=1)
            hint = f"did you mean {'.'.join([*parents, close[0]])!r}?" if close else \
                f"its keys there: {', '.join(given) or 'none'}"
            raise PicoError(f"config file {path}: replace lists {key!r}, which its base does not set; {hint}")
        node.pop(last)
    return out


def load_study(files=(), overrides: dict | None = None) -> Study:
    """Study files (default: config/config.yaml) merged in order, then `--config` overrides, validated; a bad
    key's line names the file that gives it."""
    files, overrides = list(files or [DEFAULT_STUDY]), dict(overrides or {})
    merged = {}
    for path in files:
        layer = read_study_file(path)
        check_seed(merged, layer, f"config file {path}", "a study file before it")
        merged = deep_merge(merged, layer)
    check_own_seeds(overrides, "--config")
    check_seed(merged, overrides, "--config", "the study file")
    try:
        return parse(Study, deep_merge(merged, overrides))
    except PicoError as exc:
        raise PicoError(f"{giver(str(exc), files, overrides)}: {exc}") from None


def _layers(path, below: str = "") -> list[tuple[str, dict]]:
    """(name, own keys) of a study file and then of each file of its `base:` chain (read before, so readable)."""
    raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StudyLoader) or {}
    name = f"{path} (the base of {below})" if below else str(path)
    base = raw.get("base")
    return [(name, raw), *(_layers(Path(path).parent / base, str(path)) if isinstance(base, str) else [])]


MISSING = object()


def _find(layer: dict, key: str):
    """What a layer's own keys hold at the dotted `key` ("sweep.lstm.train.lr": a key may hold dots), a list
    or value above it (which replaces the base's whole), or MISSING where the layer does not give it."""
    node, rest = layer, key
    while rest:
        node = node.value if isinstance(node, Replace) else node
        if not isinstance(node, dict):
            return node
        parts = rest.split(".")
        step = next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in node), None)
        if step is None:
            return MISSING
        node, rest = node[step], rest[len(step) + 1:]
    return node


def _given(layers: list, key: str) -> list[tuple[str, object]]:
    """(name, value) of every layer that gives `key`, top first; a layer whose `replace:` drops it gives it too."""
    found = []
    for name, layer in layers:
        value = _find(layer, key)
        replaced = layer.get("replace") if isinstance(layer.get("replace"), list) else []
        if value is not MISSING or any(f"{r}.".startswith(f"{key}.") for r in replaced):
            found.append((name, value))
    return found


def giver(message: str, files: list, overrides: dict) -> str:
    """The study file (or --config) that gives the key a config error names: the last to set its value; for a
    mapping (a model missing its type, a check across its keys), every file that sets a key in it; every study
    file where none does. A run's own `train:` key (`... of run lstm`) is looked for before the study's."""
    named = re.match(r"(?:unknown )?config key '([^']+)'(?: of run ([^\s:]+))?", message)  # names hold no colon
    layers = [("--config", overrides)] + [layer for path in reversed(files) for layer in _layers(path)]
    source = " + ".join(map(str, files))
    if named:
        key, run = named.groups()
        model = run.split(".")[0] if run else None
        own = [f"models.{run}.{key}", f"models.{model}.{key}", f"sweep.{model}.{key}"] if run else []
        given = next(filter(None, (_given(layers, candidate) for candidate in [*own, key])), None)
        if given:
            source = given[0][0] if not isinstance(given[0][1], dict) else ", ".join(name for name, _ in given)
    # a check across keys (snapshot_steps beyond max_steps) may fail by the other key, given by another layer
    for key in re.findall(r"\b[a-z_]+(?:\.[a-z_]+)+\b", message[named.end():] if named else message):
        if named and key == named.group(1):  # the key itself, named again in its fix
            continue
        top = next(iter(_given(layers, key)), (source, None))[0]
        if top not in source.split(", "):
            return f"{source} with --config {key}" if top == "--config" else f"{source} with {key} from {top}"
    return source
