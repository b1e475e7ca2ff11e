"""`picollm eval-tables`: eval.csv/.md (each run's mean and 95% interval over seeds), compare.csv (every two runs
paired by seed) and sampling.csv (every decoding's measures, with the real stories' reference rows)."""
import json

from picollm import provenance, tables
from picollm.commands import by_run_and_seed
from picollm.config import TablesJob, parse
from picollm.errors import PicoError


def _by_seed(text):
    """'{"seed": path}' -> {int seed: path}; empty -> {}."""
    if not text:
        return {}
    try:
        return {int(s): p for s, p in json.loads(text).items()}
    except (json.JSONDecodeError, AttributeError, ValueError):
        raise PicoError(f'expected {{"seed": "path"}} as JSON, got {text[:80]!r}') from None


def run(args):
    experiment = parse(TablesJob, args.config).experiment
    evals, sampling = by_run_and_seed(args.evals), by_run_and_seed(args.sampling_inputs)
    reference = _by_seed(args.reference_inputs)
    tables.eval_table(evals, args.eval_csv, args.eval_md, experiment)
    tables.compare_table(evals, args.compare_csv, experiment)
    tables.sampling_table(sampling, args.sampling_csv, experiment, reference=reference)
    inputs = [p for d in (evals, sampling) for seeds in d.values() for p in seeds.values()] + list(reference.values())
    provenance.write(args.provenance, provenance.record("eval-tables", config=args.config, inputs=inputs))
