"""The study's tables as HTML pages, for Snakemake's report: it shows an .html result inline (in a frame of its
own), while a .csv it only offers as a download.

A Markdown table file (tables/eval.md, models.md, samples.md, snapshots.md, as picollm.tables writes them) is
rendered by Python-Markdown with its pipe tables, raw HTML off (a sample's "<b>" is text); a CSV (tables/
compare.csv, eval/sampling.csv) becomes one table by pandas, its floats to 4 significant digits (every digit
stays in the CSV). Each page is one self-contained file, its style included.
"""
from __future__ import annotations

import html
from pathlib import Path

import markdown
import pandas as pd

from picollm.errors import PicoError
from picollm.io import write_text

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937; margin: 12px 16px; }
h1 { font-size: 1.3em; margin: 0.2em 0 0.6em; } h2 { font-size: 1.1em; margin: 1.2em 0 0.5em; }
p { max-width: 70em; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; background: #f3f4f6; padding: 0 3px;
       border-radius: 3px; }
table { display: block; overflow-x: auto; border-collapse: collapse; font-variant-numeric: tabular-nums;
        margin: 0.6em 0 1em; }
th, td { padding: 3px 10px; border: 0; border-bottom: 1px solid #e5e7eb; vertical-align: top; max-width: 40em; }
th { background: #f3f4f6; border-bottom: 2px solid #d1d5db; position: sticky; top: 0; text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
tbody tr:hover { background: #eef2ff; }
"""

# A page rendered from a CSV, by the CSV's name: its title (a Markdown file has its own heading), and the columns
# it shows first, the ones a reader reads (each pair's verdict in a sentence), before the numbers behind them.
CSV_PAGES = {
    "compare": {"title": "Comparison of every two runs", "first": ["a", "b", "verdict", "statement"]},
    "sampling": {"title": "Sampling measures", "first": []},
}


def markdown_html(text: str) -> str:
    """The Markdown that picollm.tables writes -> HTML; any HTML in it (a sample's text) stays text."""
    md = markdown.Markdown(extensions=["tables"])
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md.convert(text)


def csv_html(path, experiment: str) -> str:
    """A CSV -> a heading (its title, the experiment) and one table: floats to 4 significant digits, empty cells
    empty. An `experiment` column that holds only this study's name is said in the heading instead, and a column
    empty in every row is named below the table rather than shown."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    name = Path(path).stem
    spec = CSV_PAGES.get(name, {"title": name, "first": []})
    if "experiment" in frame.columns and set(frame["experiment"].astype(str)) <= {experiment}:
        frame = frame.drop(columns="experiment")
    empty = [c for c in frame.columns if len(frame) and frame[c].isna().all()]
    first = [c for c in spec["first"] if c in frame.columns]
    frame = frame[first + [c for c in frame.columns if c not in first and c not in empty]]
    table = frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
    title = f"{spec['title']}: experiment <code>{html.escape(experiment)}</code>"
    note = (f"<p>{len(frame)} rows of <code>{html.escape(Path(path).name)}</code>, floats shown to 4 significant "
            f"digits (the CSV has every digit).</p>")
    left_out = (f"<p>Empty in every row, so not shown: {', '.join(f'<code>{html.escape(c)}</code>' for c in empty)}"
                f".</p>" if empty else "")
    return f"<h1>{title}</h1>\n{note}\n{table}{left_out}"


def page(body: str, title: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def render(source, out, experiment: str) -> None:
    """`source` (.md or .csv) -> the HTML page `out`."""
    source = Path(source)
    if source.suffix == ".md":
        body = markdown_html(source.read_text(encoding="utf-8"))
    elif source.suffix == ".csv":
        body = csv_html(source, experiment)
    else:
        raise PicoError(f"{source}: a report page is made from a .md or a .csv file, not {source.suffix or 'this'}")
    write_text(out, page(body, f"{source.name}: experiment {experiment}"))
