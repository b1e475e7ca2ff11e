"""`picollm report-tables`: the study's tables as HTML pages, which Snakemake's report shows inline
(picollm.report_tables)."""
import json

from picollm import report_tables
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
    for out, source in _pages(args.pages).items():
        report_tables.render(source, out, experiment)
        print(f"{source} -> {out}")
