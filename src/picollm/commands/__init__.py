"""One module per stage command (`picollm <stage>`): read the job's `--config` slice and paths, run the
stage, write the outputs and a provenance record. cli.py imports only the command it runs, so a job's code
identity (picollm.codehash) is its own command module and what that imports.
"""

import json

from picollm.errors import PicoError


def by_run_and_seed(text):
    """'{"run": {"seed": path}}' -> {run: {int seed: path}}; empty -> {}."""
    if not text:
        return {}
    try:
        return {run: {int(s): p for s, p in seeds.items()} for run, seeds in json.loads(text).items()}
    except (json.JSONDecodeError, AttributeError, ValueError):
        raise PicoError(f'expected {{"run": {{"seed": "path"}}}} as JSON, got {text[:80]!r}') from None
