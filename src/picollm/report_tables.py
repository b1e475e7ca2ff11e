"""The study's tables as HTML pages, for Snakemake's report: it shows an .html result inline (in a frame of its
own), while a .csv it only offers as a download.

A Markdown table file (tables/eval.md, models.md, samples.md, snapshots.md, as picollm.tables writes them) is
rendered by Python-Markdown with its pipe tables, raw HTML off (a sample's "<b>" is text). A CSV (tables/
compare.csv, eval/sampling.csv, tables/scaling.csv) becomes one table: the columns a reader reads first
(compare.csv's pair, its sentence, then the verdict and the interval behind it) first, a column that repeats another in every row
(sampling.csv's `model`, the same as `run`) named below it rather than shown, floats to 4 significant digits,
counts with thousands separators and computes in powers of ten (every digit stays in the CSV). Every table sits
in a box that scrolls both ways, so its header row and its first column stay in view, and so does the
horizontal scrollbar. Each page is one self-contained file, its style included.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import markdown
import pandas as pd

from picollm.errors import PicoError
from picollm.io import write_text

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937; margin: 12px 10px; }
h1 { font-size: 1.3em; margin: 0.2em 0 0.6em; } h2 { font-size: 1.1em; margin: 1.2em 0 0.5em; }
p { max-width: 70em; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; background: #f3f4f6; padding: 0 3px;
       border-radius: 3px; }
.table-scroll { max-height: 80vh; overflow: auto; width: fit-content; max-width: 100%; margin: 0.6em 0 1em;
                border: 1px solid #e5e7eb; }
table { border-collapse: separate; border-spacing: 0; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border: 0; border-bottom: 1px solid #e5e7eb; vertical-align: top; max-width: 40em; }
th { background: #f3f4f6; border-bottom: 2px solid #d1d5db; position: sticky; top: 0; z-index: 1;
     text-align: left; }
th:first-child, td:first-child { position: sticky; left: 0; box-shadow: inset -1px 0 #d1d5db; }
th:first-child { z-index: 2; }
td:first-child { background: inherit; white-space: nowrap; }  /* a run name, the row's label, on one line */
td.prose { min-width: 26em; } td.short { white-space: nowrap; }
td[style*="text-align: right"] { white-space: nowrap; }  /* a number on one line: 1.92e-11, not 1.92e- / 11 */
tbody tr { background: #fff; }
tbody tr:nth-child(even) { background: #fafafa; }
tbody tr:hover { background: #eef2ff; }
"""

# A page rendered from a CSV, by the CSV's name: its title (a Markdown file has its own heading), a note on what
# its numbers are, the columns it shows first, the ones the note and the verdicts speak of, and those it shows
# last. compare.csv's sentence comes right after its pair: it is what a reader quotes, and it holds the verdict
# and the interval that the columns after it repeat as numbers (in a report pane the table scrolls sideways).
CSV_PAGES = {
    "compare": {"title": "Comparison of every two runs",
                "note": "bpb_diff = bpb(a) − bpb(b), paired by seed: its mean over the n seeds and its 95% t "
                        "interval (bpb_diff_ci_low to bpb_diff_ci_high), which each verdict reads: “a better” when "
                        "the interval is below 0, “b better” when it is above, “within noise” when it holds 0 "
                        "(or one seed gives none). FLOPs to 3 significant digits in powers of ten.",
                "first": ["a", "b", "statement", "verdict", "bpb_diff_mean", "bpb_diff_ci_low", "bpb_diff_ci_high",
                          "n", "flops_budget"],
                "scientific": r"flops"},
    # the row's run, seed and decoding in one first column, which stays in view as the measures scroll by
    "sampling": {"title": "Sampling measures", "label": ["run", "seed", "decoding"]},
    # computes and the fit's scale factor span decades: in powers of ten, as the scaling figure's axis is
    "scaling": {"title": "Scaling fits per model type",
                "note": "alpha, E (bits per byte) and A of bpb(C) = E + A·C^−alpha, fitted to each type's compute "
                        "frontier past warm-up, each with its 95% interval over seeds (_ci_low to _ci_high). "
                        "crosses_<type>_at_flops: every compute at which this type's frontier crosses that type's "
                        "past both warm-ups (a frontier held at its best out to its type's largest compute); "
                        "crosses_<type>_ci_low to _ci_high: the last crossing's 95% interval; "
                        "crosses_<type>_same_order: the share of seed redraws that end with the same type ahead. "
                        "<name>_at_bound: the fit put that parameter on the bound of its range (E at 0), which these "
                        "points do not determine. "
                        "Computes (FLOPs) and A to 3 significant digits in powers of ten.",
                "first": ["type", "fitted", "alpha", "alpha_ci_low", "alpha_ci_high", "alpha_at_bound", "E", "E_ci_low",
                          "E_ci_high", "E_at_bound"],
                "scientific": r"flops|^A(_ci_low|_ci_high)?$|^crosses_.*_ci_(low|high)$"},
}

# A column that may repeat another in every row ({column: the one it repeats}): then it is named, not shown.
SAME_AS = {"model": "run"}

# A CSV's text column whose cells are all at most this many characters long is kept on one line.
SHORT = 16

# Integer columns that name rather than count: shown without thousands separators.
LABELS = {"seed", "step"}

def markdown_html(text: str) -> str:
    """The Markdown that picollm.tables writes -> HTML; any HTML in it (a sample's text) stays text."""
    md = markdown.Markdown(extensions=["tables"])
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md.convert(text)


def _is_count(values: pd.Series) -> bool:
    """Integers, or floats that are whole numbers (an integer column with a blank in it reads as floats)."""
    values = values.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return False
    return bool(len(values)) and bool(values.map(lambda v: float(v).is_integer()).all())


def number(value, count: bool, label: bool = False) -> str:
    """A cell's number, compact: a count in full with thousands separators (1,234,567; a label such as a seed
    without them), other floats to 4 significant digits, large ones to the unit (12,346 rather than 1.235e+04);
    blank for a missing value."""
    if pd.isna(value):
        return ""
    if count:
        return f"{int(value)}" if label else f"{int(value):,}"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def label_text(value) -> str:
    """A value as text (a run, a seed, a decoding), blank where missing: a seed read as a float (1337.0) as the
    integer."""
    if pd.isna(value):
        return ""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def frame_html(frame: pd.DataFrame, scientific: str | None = None) -> str:
    """A table of `frame`'s rows, each cell escaped; numbers aligned right, as a Markdown `--:` column is; those of
    the columns whose names match the regex `scientific` to 3 significant digits in powers of ten (3.44e+11)."""
    right = ' style="text-align: right;"'
    columns = []
    for name in frame.columns:
        values = frame[name]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric and scientific and re.search(scientific, str(name)):
            shown = ["" if pd.isna(v) else f"{v:.3g}" for v in values]
        elif numeric:
            count = _is_count(values)
            shown = [number(v, count, name in LABELS) for v in values]
        else:
            shown = [label_text(v) for v in values]
        # a column of sentences (compare.csv's statement) is given room to read rather than a word a line, one of
        # short phrases ("within noise") is kept on one line
        longest = max(map(len, shown), default=0)
        columns.append((name, right if numeric else ' class="prose"' if longest > 40
                        else ' class="short"' if longest <= SHORT else "", shown))
    head = "".join(f"<th{align if 'style' in align else ''}>{html.escape(str(name))}</th>"
                   for name, align, _ in columns)
    body = "".join("<tr>" + "".join(f"<td{align}>{html.escape(shown[i])}</td>" for _, align, shown in columns)
                   + "</tr>\n" for i in range(len(frame)))
    return f"<table>\n<thead>\n<tr>{head}</tr>\n</thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def _codes(names) -> str:
    return ", ".join(f"<code>{html.escape(str(c))}</code>" for c in names)


def csv_html(path, experiment: str) -> str:
    """A CSV -> a heading (its title, the experiment) and one table: floats to 4 significant digits, counts with
    thousands separators, empty cells empty. An `experiment` column that holds only this study's name is said in
    the heading instead; a column empty in every row, or the same as another in every row (SAME_AS), is named
    below the table rather than shown."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    name = Path(path).stem
    spec = {"title": name, "note": "", "first": [], "last": [], "label": [], "scientific": None,
            **CSV_PAGES.get(name, {})}
    if "experiment" in frame.columns and set(frame["experiment"].astype(str)) <= {experiment}:
        frame = frame.drop(columns="experiment")
    empty = [c for c in frame.columns if len(frame) and frame[c].isna().all()]
    same = {c: other for c, other in SAME_AS.items() if len(frame) and c in frame.columns and other in frame.columns
            and c not in empty and (frame[c].astype(str) == frame[other].astype(str)).all()}
    shown = [c for c in frame.columns if c not in empty and c not in same]
    first = [c for c in spec["first"] if c in shown]
    last = [c for c in spec["last"] if c in shown and c not in first]
    frame = frame[first + [c for c in shown if c not in first and c not in last] + last]
    label = [c for c in spec["label"] if c in frame.columns]
    if label:  # one column, first: the table's first column is the one that stays put (sticky)
        joined = frame[label].apply(lambda row: " · ".join(map(label_text, row)), axis=1)
        frame = frame.drop(columns=label)
        frame.insert(0, " · ".join(label), joined)
    title = f"{spec['title']}: experiment <code>{html.escape(experiment)}</code>"
    note = (f"<p>{len(frame)} rows of <code>{html.escape(Path(path).name)}</code>, floats shown to 4 significant "
            f"digits (the CSV has every digit).{' ' + html.escape(spec['note']) if spec['note'] else ''}</p>")
    left_out = "".join([
        f"<p>Empty in every row, so not shown: {_codes(empty)}.</p>" if empty else "",
        *(f"<p>The same as <code>{html.escape(other)}</code> in every row, so not shown: {_codes([c])}.</p>"
          for c, other in same.items()),
    ])
    return f"<h1>{title}</h1>\n{note}\n{frame_html(frame, spec['scientific'])}{left_out}"


def breakable(header: str) -> str:
    """A header's name with one place to break it in two (<wbr>), after the underscore nearest its middle that
    leaves at least 3 characters on each side: params_<wbr>embedding, bpb_diff_<wbr>ci_high; distinct_1 and
    wall_s stay whole. What follows a space (" (machine-dependent)") breaks at the space."""
    name, space, rest = header.partition(" ")
    cuts = [i + 1 for i, char in enumerate(name) if char == "_" and i >= 3 and len(name) - i - 1 >= 3]
    if not cuts:
        return header
    cut = min(cuts, key=lambda i: abs(2 * i - len(name)))
    return f"{name[:cut]}<wbr>{name[cut:]}{space}{rest}"


def scrolling_tables(body: str) -> str:
    """Each table in a box that scrolls both ways (at most 80% of the window high), so its sticky header row
    stays at the top and its horizontal scrollbar in view; each header breakable in two (breakable)."""
    body = re.sub(r"<th([^>]*)>(.*?)</th>", lambda m: f"<th{m[1]}>{breakable(m[2])}</th>", body, flags=re.S)
    # a value with its interval ("0.798 ± 0.039") on one line
    body = re.sub(r"<td([^>]*)>([^<]*±[^<]*)</td>", lambda m: f'<td{m[1]} class="short">{m[2]}</td>'
                  if "class=" not in m[1] and len(html.unescape(m[2])) <= 2 * SHORT else m[0], body)
    return re.sub(r"<table\b", '<div class="table-scroll"><table', body).replace("</table>", "</table></div>")


def page(body: str, title: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{scrolling_tables(body)}\n</body>\n</html>\n")


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
