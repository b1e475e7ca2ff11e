"""One module per stage command (`picollm <stage>`): read the job's `--config` slice and paths, run the
stage, write the outputs and a provenance record. cli.py imports only the command it runs, so a job's code
identity (picollm.codehash) is its own command module and what that imports.

The {run: {seed: path}} mappings the commands read have one parser and one list of paths here (torch-free:
picollm.registry, read whenever the Snakefile is parsed, uses `paths` too).
"""

import json

from picollm.errors import PicoError


def seed_keys(seeds: dict) -> dict:
    """{seed: path} with integer seeds (JSON makes every key a string), in the order given."""
    return {int(s): p for s, p in seeds.items()}


def seed_keyed(nested: dict) -> dict:
    """{run: {seed: path}} with integer seeds, in the order given."""
    return {run: seed_keys(seeds) for run, seeds in nested.items()}


def paths(inputs) -> list:
    """Every path of a {run: {seed: path}} or {run: path} mapping; of one path, itself."""
    if not isinstance(inputs, dict):
        return [inputs]
    return [p for v in inputs.values() for p in (v.values() if isinstance(v, dict) else [v])]


def _from_json(text, shape, example: str) -> dict:
    """shape(the JSON in `text`); empty -> {}. Not JSON, or not of that shape: one line showing `example`."""
    if not text:
        return {}
    try:
        return shape(json.loads(text))
    except (json.JSONDecodeError, AttributeError, ValueError):
        raise PicoError(f"expected {example} as JSON, got {text[:80]!r}") from None


def by_run_and_seed(text) -> dict:
    """'{"run": {"seed": path}}' -> {run: {int seed: path}}; empty -> {}."""
    return _from_json(text, seed_keyed, '{"run": {"seed": "path"}}')


def by_seed(text) -> dict:
    """'{"seed": path}' -> {int seed: path}; empty -> {}."""
    return _from_json(text, seed_keys, '{"seed": "path"}')
