"""`picollm tables`: samples.csv/.md, models.csv/.md, eval.csv/.md, compare.csv, sampling.csv."""
from picollm import provenance, tables
from picollm.commands import by_run_and_seed
from picollm.config import TablesJob, parse


def run(args):
    experiment = parse(TablesJob, args.config).experiment
    if args.samples:
        tables.samples_table(args.samples, args.samples_csv, args.samples_md, experiment)
    if args.summaries:
        tables.models_table(args.summaries, args.models_md, experiment, out_csv=args.models_csv)
    evals, sampling = by_run_and_seed(args.evals), by_run_and_seed(args.sampling_inputs)
    if evals:
        tables.eval_table(evals, args.eval_csv, args.eval_md, experiment)
        if args.compare_csv:
            tables.compare_table(evals, args.compare_csv, experiment)
    if sampling:
        tables.sampling_table(sampling, args.sampling_csv, experiment)
    flat = [p for d in (evals, sampling) for seeds in d.values() for p in seeds.values()]
    inputs = [*args.samples, *args.summaries, *flat]
    provenance.write(args.provenance, provenance.record("tables", config=args.config, inputs=inputs))
