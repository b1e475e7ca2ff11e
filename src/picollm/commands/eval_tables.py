"""`picollm eval-tables`: eval.csv/.md (each run's mean and 95% interval over seeds), compare.csv (every two runs
paired by seed) and sampling.csv (every decoding's measures, with the real stories' reference rows)."""
from picollm import provenance, tables
from picollm.commands import by_run_and_seed, by_seed, paths
from picollm.config import TablesJob, parse


def run(args):
    experiment = parse(TablesJob, args.config).experiment
    evals, sampling = by_run_and_seed(args.evals), by_run_and_seed(args.sampling_inputs)
    reference = by_seed(args.reference_inputs)
    compare = tables.compare_table(evals, args.compare_csv, experiment)
    tables.eval_table(evals, args.eval_csv, args.eval_md, experiment, compare=compare)
    tables.sampling_table(sampling, args.sampling_csv, experiment, reference=reference)
    inputs = paths(evals) + paths(sampling) + list(reference.values())
    outputs = [args.eval_csv, args.eval_md, args.compare_csv, args.sampling_csv]
    provenance.write(args.provenance, provenance.record("eval-tables", config=args.config, inputs=inputs,
                                                        outputs=outputs))
