"""`picollm provenance-table`: every job's provenance record as one row of tables/provenance.csv, and the code
that made the study (provenance.code_summary) as the report's page tables/provenance.html."""
from picollm import provenance, report_tables
from picollm.io import write_text


def run(args):
    rows = provenance.table(args.records, args.out)
    print(f"{len(args.records)} records -> {args.out}")
    if args.page:
        body = report_tables.markdown_html(provenance.code_summary(rows))
        write_text(args.page, report_tables.page(body, "The code that made the study"))
        print(f"the code that made the study -> {args.page}")
