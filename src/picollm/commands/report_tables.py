"""`picollm report-tables`: the study's tables as HTML pages, which Snakemake's report shows inline
(picollm.report_tables)."""
import json

from picollm import provenance, report_tables
from picollm.config import TablesJob, parse
from picollm.errors import PicoError


def _pages(text) -> dict:
    """'{"page.html": "source.md or .csv"}' -> {page: source}."""
    try:
        pages = json.loads(text)
    except json.JSONDecodeError:
        pages = None
    if not isinstance(pages, dict) or not pages:
        raise PicoError(f'expected {{"page.html": "source.md or source.csv"}} as JSON, got {text[:80]!r}')
    return pages


def run(args):
    experiment = parse(TablesJob, args.config).experiment
    pages = _pages(args.pages)
    for out, source in pages.items():
        report_tables.render(source, out, experiment)
        print(f"{source} -> {out}")
    provenance.write(args.provenance, provenance.record("report_tables", config=args.config,
                                                        inputs=list(pages.values()), outputs=list(pages)))
