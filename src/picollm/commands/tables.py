"""`picollm tables`: samples.csv/.md (every run's first-seed samples) and models.csv/.md (their training
summaries)."""
from picollm import provenance, tables
from picollm.config import TablesJob, parse


def run(args):
    experiment = parse(TablesJob, args.config).experiment
    tables.samples_table(args.samples, args.samples_csv, args.samples_md, experiment)
    tables.models_table(args.summaries, args.models_md, experiment, out_csv=args.models_csv)
    outputs = [args.samples_csv, args.samples_md, args.models_csv, args.models_md]
    provenance.write(args.provenance, provenance.record("tables", config=args.config,
                                                        inputs=[*args.samples, *args.summaries], outputs=outputs))
