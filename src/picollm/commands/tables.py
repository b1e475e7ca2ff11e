"""`picollm tables`: samples.csv/.md, models.md, eval.csv/.md, sampling.csv from the stage outputs."""
from picollm import provenance, tables
from picollm.config import validate_part


def run(args):
    experiment = validate_part(args.config, required=("experiment",))["experiment"]
    if args.samples:
        tables.samples_table(args.samples, args.samples_csv, args.samples_md, experiment)
    if args.summaries:
        tables.models_table(args.summaries, args.models_md, experiment, out_csv=args.models_csv)
    if args.evals:
        tables.eval_table(args.evals, args.eval_csv, args.eval_md, experiment)
    if args.sampling_inputs:
        tables.sampling_table(args.sampling_inputs, args.sampling_csv, experiment)
    inputs = [*args.samples, *args.summaries, *args.evals, *args.sampling_inputs]
    provenance.write(args.provenance, provenance.record("tables", config=args.config, inputs=inputs))
