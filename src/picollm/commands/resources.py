"""`picollm resources`: tables/resources.csv from every job's benchmark file."""
import json

from picollm import provenance
from picollm.config import TablesJob, parse
from picollm.resources import resources_table


def run(args):
    parse(TablesJob, args.config)
    # {benchmark file: {rule, run, seed, record}}: each file's job as the workflow names it, and the provenance
    # record it wrote (null: none)
    jobs = json.loads(args.jobs)
    records = {bench: job.pop("record", None) for bench, job in jobs.items()}
    resources_table(args.benchmarks, args.root, args.out, records, jobs)
    provenance.write(args.provenance, provenance.record("resources", config=args.config,
                                                        inputs=[*args.benchmarks, *filter(None, records.values())],
                                                        outputs=[args.out]))
