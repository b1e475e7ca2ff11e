"""`picollm resources`: tables/resources.csv from every job's benchmark file."""
import json

from picollm import provenance
from picollm.config import TablesJob, parse
from picollm.resources import resources_table


def run(args):
    parse(TablesJob, args.config)
    records = json.loads(args.records)
    resources_table(args.benchmarks, args.root, args.out, records)
    provenance.write(args.provenance, provenance.record("resources", config=args.config,
                                                        inputs=[*args.benchmarks, *records.values()]))
