"""`picollm provenance-table`: every job's provenance record as one row of tables/provenance.csv."""
from picollm import provenance


def run(args):
    provenance.table(args.records, args.out)
    print(f"{len(args.records)} records -> {args.out}")
