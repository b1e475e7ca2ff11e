"""The report's tables as pages it shows inline (picollm.report_tables, `picollm report-tables`), and the config
its description shows: the study file it was built from (provenance/study.json), scheduling keys left out.

The end-to-end check, the report of a finished study, is test_workflow's report test (it uses the helpers here)."""
import base64
import html
import json
import re

import pandas as pd
import pytest
from docutils.core import publish_parts
from jinja2 import Environment

from conftest import ROOT, tiny_offline_config
from picollm import cli, jobs, report_tables, tables
from picollm.config import Study, parse


# --- reading a Snakemake report (report.html) ---------------------------------------------------------------------

def report_results(page: str) -> dict:
    """{path: {name, mime_type, caption, data_uri, ...}}: every result a Snakemake report holds."""
    return json.JSONDecoder().raw_decode(page, page.index("var results = {") + len("var results = "))[0]


def result_text(entry: dict) -> str:
    """A result's file, as the report embeds it (a base64 data URI)."""
    return base64.b64decode(entry["data_uri"].split(";base64,", 1)[1]).decode("utf-8")


def workflow_description(page: str) -> str:
    """The report's description (workflow/report/workflow.rst rendered), as HTML."""
    return json.JSONDecoder().raw_decode(page, re.search(r"workflow_desc = (?=\")", page).end())[0]


def shown_config(description: str) -> dict:
    """{key: value} of the config the description lists, one `- **key**: ``JSON``` item each."""
    items = re.findall(r'<li><strong>(\w+)</strong>: <tt class="docutils literal">(.*?)</tt></li>', description, re.S)
    return {key: json.loads(html.unescape(re.sub(r"<[^>]+>", "", value))) for key, value in items}


def table_rows(page: str) -> list[list[str]]:
    """The text of each body row's cells, over every table of an HTML page."""
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>", 1)[-1], re.S) if "<td" in row]


# --- the pages ----------------------------------------------------------------------------------------------------

def test_a_markdown_table_file_renders_as_it_reads():
    """samples.md as picollm.tables writes it: headings, a paragraph, one pipe table per prompt whose cells may hold
    a pipe, markup or whitespace signs; all of it shows as text."""
    frame = pd.DataFrame([
        {"model": "lstm", "train_tokens": 512, "prompt": "1 2", "decoding": "greedy", "sample": 0, "new_tokens": 4,
         "text": "a|b <b>x</b>\n"},
        {"model": "transformer", "train_tokens": 512, "prompt": "1 2", "decoding": "p=0.9", "sample": 0,
         "new_tokens": 0, "text": ""},
    ])
    frame["newlines"] = frame["text"].str.count("\n")
    page = report_tables.markdown_html(tables.samples_markdown(frame, "tiny"))
    assert "<h1>Samples: experiment <code>tiny</code>, 512 training tokens per model</h1>" in page
    assert "<h2>Prompt: “1 2”</h2>" in page and "<b>" not in page
    assert table_rows(page) == [["greedy", "lstm", "4", "1", "a|b <b>x</b>⏎"],
                                ["p=0.9", "transformer", "0", "0", tables.ENDED_AT_ONCE]]
    assert '<th style="text-align: right;">new tokens</th>' in page  # |--:|
    assert "<td>lstm</td>" in page  # |---|


def test_a_pandas_markdown_table_keeps_its_alignment():
    text = "# Title\n\nOne\nparagraph.\n\n" + pd.DataFrame({"run": ["a", "b"], "bpb": [1.5, 2.25]}).to_markdown(
        index=False) + "\n"
    page = report_tables.markdown_html(text)
    assert "<p>One\nparagraph.</p>" in page
    assert table_rows(page) == [["a", "1.5"], ["b", "2.25"]]
    assert '<td style="text-align: left;">a</td>\n<td style="text-align: right;">1.5</td>' in page


def test_a_csv_becomes_one_table(tmp_path):
    """compare.csv: its rows, each pair's verdict first, floats to 4 significant digits, an empty cell empty, the
    study's name in the heading rather than in a column, and a column empty in every row named, not shown."""
    csv = tmp_path / "compare.csv"
    pd.DataFrame([{"experiment": "tiny", "a": "lstm", "b": "gru", "n": 2, "flops_budget": None,
                   "bpb_diff_mean": 0.123456789, "bpb_diff_ci_low": None, "verdict": "b better",
                   "statement": "gru better <by far>"},
                  {"experiment": "tiny", "a": "lstm", "b": "mlp", "n": 1, "flops_budget": None,
                   "bpb_diff_mean": -2.0, "bpb_diff_ci_low": -3.0, "verdict": "within noise", "statement": "alike"}]
                 ).to_csv(csv, index=False)
    page = report_tables.csv_html(csv, "tiny")
    assert page.startswith("<h1>Comparison of every two runs: experiment <code>tiny</code></h1>")
    assert table_rows(page) == [["lstm", "gru", "b better", "gru better <by far>", "2", "0.1235", ""],
                                ["lstm", "mlp", "within noise", "alike", "1", "-2", "-3"]]
    assert ">experiment</th>" not in page and "&lt;by far&gt;" in page
    assert "Empty in every row, so not shown: <code>flops_budget</code>" in page


def test_the_command_writes_each_page(tmp_path):
    (tmp_path / "eval.md").write_text("# Evaluation\n\n| run | bpb |\n|:--|--:|\n| lstm | 1.2 ± 0.1 |\n")
    (tmp_path / "compare.csv").write_text("experiment,a,b,verdict\ntiny,lstm,gru,within noise\n")
    pages = {str(tmp_path / "eval.html"): str(tmp_path / "eval.md"),
             str(tmp_path / "compare.html"): str(tmp_path / "compare.csv")}
    record = tmp_path / "provenance.json"
    assert cli.main(["report-tables", "--config", '{"experiment": "tiny"}', "--pages", json.dumps(pages),
                     "--provenance", str(record)]) == 0
    assert set(json.loads(record.read_text())["inputs"]) == set(pages.values())  # each page's source, hashed
    eval_page, compare_page = (tmp_path / "eval.html").read_text(), (tmp_path / "compare.html").read_text()
    assert eval_page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in eval_page
    assert table_rows(eval_page) == [["lstm", "1.2 ± 0.1"]]
    assert table_rows(compare_page) == [["lstm", "gru", "within noise"]]


@pytest.mark.parametrize("pages, message", [
    ("not json", 'expected {"page.html": "source.md or source.csv"} as JSON'),
    ('{"x.html": "x.txt"}', "a report page is made from a .md or a .csv file, not .txt"),
])
def test_bad_pages_are_one_line(tmp_path, capsys, pages, message):
    (tmp_path / "x.txt").write_text("text")
    pages = pages.replace("x.", f"{tmp_path}/x.")
    assert cli.main(["report-tables", "--config", '{"experiment": "tiny"}', "--pages", pages]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


# --- the config the description shows ----------------------------------------------------------------------------

def render_description(config: dict) -> str:
    """workflow/report/workflow.rst as Snakemake's report renders it (snakemake.report.auto_report)."""
    class Snakemake:
        pass

    Snakemake.config = config
    text = (ROOT / "workflow" / "report" / "workflow.rst").read_text()
    rst = Environment(trim_blocks=True, lstrip_blocks=True).from_string(text).render(
        snakemake=Snakemake, categories={}, files=[])
    return publish_parts(rst, writer="html")["html_body"]


def test_the_description_shows_the_study_file_the_report_was_built_from():
    """The report's inner run reads provenance/study.json (jobs.study_file: scheduling keys left out), and its
    schema fills those keys in again with their defaults; the Snakefile hands Snakemake's `config` (what the
    description shows) the study file again, not them."""
    cfg = tiny_offline_config()
    cfg["train"].update(threads=3, devices=1, nodes=1)
    cfg["models"]["lstm"]["train"] = {"lr": 0.01, "threads": 2}
    cfg["models"]["kgram_mlp"]["train"] = {"threads": 4}  # nothing but scheduling: no train of its own
    study_json = jobs.study_file(parse(Study, cfg))
    inner = parse(Study, study_json).model_dump(mode="json")  # the report's run: defaults back in
    assert inner["train"]["threads"] == 2 and inner["train"]["loggers"] == []
    description = render_description(jobs.study_file(parse(Study, inner)))  # common.smk's `config`
    assert shown_config(description) == study_json
    shown = shown_config(description)
    assert not {"threads", "devices", "nodes", "loggers"} & set(shown["train"])
    assert shown["models"]["lstm"]["train"] == {"lr": 0.01} and "train" not in shown["models"]["kgram_mlp"]
    said = " ".join(re.sub(r"<[^>]+>", "", description).split())
    assert "leaves out the scheduling keys of train (threads, devices, nodes, loggers:" in said
