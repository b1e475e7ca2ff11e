"""The report's tables as pages it shows inline (picollm.report_tables, `picollm report-tables`), and the config
its description shows: the study file it was built from (provenance/study.json), scheduling keys left out.

The end-to-end check, the report of a finished study, is test_workflow's report test (it uses the helpers here)."""
import base64
import html
import json
import re

import numpy as np
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
    """compare.csv: its rows, each pair's sentence first, then its verdict and the numbers it rests on; floats
    to 4 significant digits, an empty cell empty, the study's name in the heading rather than in a column, and a
    column empty in every row named, not shown."""
    csv = tmp_path / "compare.csv"
    pd.DataFrame([{"experiment": "tiny", "a": "lstm", "b": "gru", "n": 2, "flops_budget": None,
                   "bpb_diff_mean": 0.123456789, "bpb_diff_ci_low": None, "verdict": "b better",
                   "statement": "gru better <by far>"},
                  {"experiment": "tiny", "a": "lstm", "b": "mlp", "n": 1, "flops_budget": None,
                   "bpb_diff_mean": -2.0, "bpb_diff_ci_low": -3.0, "verdict": "within noise", "statement": "alike"}]
                 ).to_csv(csv, index=False)
    page = report_tables.csv_html(csv, "tiny")
    assert page.startswith("<h1>Comparison of every two runs: experiment <code>tiny</code></h1>")
    assert table_rows(page) == [["lstm", "gru", "gru better <by far>", "b better", "0.1235", "", "2"],
                                ["lstm", "mlp", "alike", "within noise", "-2", "-3", "1"]]
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


def table_headers(page: str) -> list[list[str]]:
    """The header names of each table of an HTML page, in order."""
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell))
             for cell in re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", table, re.S)]
            for table in re.findall(r"<table\b.*?</table>", page, re.S)]


def test_every_table_scrolls_in_a_box_of_its_own(tmp_path):
    """Each table, from Markdown or a CSV, sits in a box that scrolls both ways and is at most 80% of the window
    high, so its sticky header row sticks and its horizontal scrollbar is in view (a table that scrolled itself,
    display: block, showed that scrollbar only below its last row, and its header never stuck)."""
    (tmp_path / "eval.md").write_text("# Evaluation\n\n| run | bpb |\n|:--|--:|\n| lstm | 1.2 ± 0.1 |\n\n"
                                      "## Per data source\n\n| run | source |\n|:--|:--|\n| lstm | a |\n")
    (tmp_path / "compare.csv").write_text("experiment,a,b,verdict\ntiny,lstm,gru,within noise\n")
    for source in ("eval.md", "compare.csv"):
        report_tables.render(tmp_path / source, tmp_path / "page.html", "tiny")
        page = (tmp_path / "page.html").read_text()
        tables_ = re.findall(r"<table\b", page)
        assert tables_ and len(re.findall(r'<div class="table-scroll"><table\b', page)) == len(tables_), source
        assert page.count("</table></div>") == len(tables_), source
    style = re.search(r"\.table-scroll \{(.*?)\}", report_tables.STYLE, re.S)[1]
    assert "max-height: 80vh" in style and "overflow: auto" in style
    assert "display: block" not in report_tables.STYLE
    assert re.search(r"th \{[^}]*position: sticky; top: 0", report_tables.STYLE)


def test_a_column_that_repeats_another_in_every_row_is_named_not_shown(tmp_path):
    """sampling.csv's `model` is its `run` in every row: the page names it below the table rather than showing it
    twice (the CSV keeps it); where they differ in a single row, both are shown."""
    csv = tmp_path / "sampling.csv"
    frame = pd.DataFrame({"experiment": "tiny", "run": ["lstm", "reference"], "seed": [1337, 1337],
                          "model": ["lstm", "reference"], "decoding": ["greedy", "reference"],
                          "distinct_1": [0.0847457627118644, 0.5]})
    frame.to_csv(csv, index=False)
    before = csv.read_bytes()
    page = report_tables.csv_html(csv, "tiny")
    # run, seed and decoding name a row together, in the first column, which stays in view (sticky)
    assert table_headers(page) == [["run · seed · decoding", "distinct_1"]]
    assert table_rows(page) == [["lstm · 1337 · greedy", "0.08475"], ["reference · 1337 · reference", "0.5"]]
    assert "The same as <code>run</code> in every row, so not shown: <code>model</code>." in page
    assert csv.read_bytes() == before
    frame.loc[1, "model"] = "other"
    frame.to_csv(csv, index=False)
    page = report_tables.csv_html(csv, "tiny")
    assert table_headers(page) == [["run · seed · decoding", "model", "distinct_1"]]
    assert "so not shown" not in page


def test_compare_shows_each_pairs_sentence_beside_it_then_the_interval_behind_its_verdict(tmp_path):
    """compare.csv as picollm.tables writes it: the pair and its sentence (what a reader quotes, the verdict and
    interval in words) come first, so that a report pane of a 1280 px screen shows them; the numbers follow."""
    csv = tmp_path / "compare.csv"
    pd.DataFrame([{"experiment": "tiny", "a": "lstm", "b": "gru", "n": 2, "flops_budget": None,
                   "bpb_diff_mean": 0.04, "bpb_diff_ci_low": 0.031, "bpb_diff_ci_high": 0.053,
                   "verdict": "b better", "statement": "gru better than lstm by 0.0400 bpb (95% CI 0.0310 to 0.0530, "
                                                      "2 seeds paired)"}],
                 columns=tables.COMPARE_COLUMNS).to_csv(csv, index=False)
    page = report_tables.csv_html(csv, "tiny")
    [headers] = table_headers(page)
    assert headers[:7] == ["a", "b", "statement", "verdict", "bpb_diff_mean", "bpb_diff_ci_low", "bpb_diff_ci_high"]
    assert "bpb_diff_ci_low to bpb_diff_ci_high" in page  # the note says what the verdict reads
    assert '<td class="prose">gru better than lstm' in page  # the sentence has room to read


def test_the_scaling_page_shows_the_fits_first_and_computes_in_powers_of_ten(tmp_path):
    """tables/scaling.csv as scaling.fit_rows writes it, read back (its single crossing reads as a number)."""
    from picollm import scaling
    rng = np.random.default_rng(3)
    flops = np.geomspace(1e8, 1e12, 12)
    points = pd.concat([pd.DataFrame({"type": kind, "run": kind, "seed": seed, "kind": "curve", "step": range(1, 13),
                                      "tokens_seen": range(1, 13), "train_flops": flops, "params_non_embedding": 1,
                                      "after_warmup": True,
                                      "bpb": (e + a * flops ** -0.3) * np.exp(rng.normal(0, 0.01, 12))})
                        for seed in (1, 2) for kind, e, a in (("a", 1.0, 400.0), ("b", 1.5, 10.0))])
    csv = tmp_path / "scaling.csv"
    scaling.fit_rows(points, "tiny").to_csv(csv, index=False)
    page = report_tables.csv_html(csv, "tiny")
    headers, rows = table_headers(page)[0], table_rows(page)
    assert headers[:10] == ["type", "fitted", "alpha", "alpha_ci_low", "alpha_ci_high", "alpha_at_bound", "E",
                            "E_ci_low", "E_ci_high", "E_at_bound"]  # each with whether the fit left it on its bound
    first = dict(zip(headers, rows[0]))
    assert first["flops_max"] == "1e+12" and first["flops_min"] == "1e+08"
    for name in ("crosses_b_at_flops", "crosses_b_ci_low", "crosses_b_ci_high"):
        assert re.fullmatch(r"\d(\.\d+)?e\+\d\d", first[name]), (name, first[name])
    assert first["A"] == f"{pd.read_csv(csv)['A'][0]:.3g}"  # a scale factor, to 3 digits as the computes
    assert float(first["crosses_b_same_order"]) > 0.9 and first["seeds"] == "2"


def test_the_models_page_shows_the_training_outcome_in_a_table_of_its_own(tmp_path):
    """models.md's columns (16) are two tables, each led by the model's name: the training outcome (final losses,
    tokens seen, train FLOPs, the timings its note speaks of), narrow enough to read without scrolling sideways,
    then the size and setup; every column is in one of them, and the notes stay."""
    paths = []
    for name in ("lstm", "transformer.d_model=128"):
        summary = {"model": name, "type": "lstm", "params": 426752, "params_embedding": 32896, "params_head": 0,
                   "head_tied": True, "params_core": 393856, "tokens_seen": 819200, "flops_per_token": 2753280,
                   "train_flops": 2255486976000, "wall_s": 42.71, "tokens_per_s": 19203.4, "device": "cpu",
                   "final_train_loss": 0.456789, "final_val_loss": 0.49371,
                   "provenance": {"config": {"train": {"optimizer": "adamw", "lr": 0.003}}}}
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(summary))
    tables.models_table(paths, tmp_path / "models.md", "tiny")
    report_tables.render(tmp_path / "models.md", tmp_path / "models.html", "tiny")
    page = (tmp_path / "models.html").read_text()
    outcome, size = [[name.split(" (")[0] for name in names] for names in table_headers(page)]
    assert outcome[0] == size[0] == "model" and len(outcome) <= 8
    assert {"final_train_loss", "final_val_loss", "tokens_seen", "train_flops", "wall_s", "tokens_per_s"} <= set(
        outcome)
    assert set(outcome[1:]) | set(size[1:]) == set(tables.MODEL_COLUMNS[1:])
    assert not set(outcome[1:]) & set(size[1:])
    assert page.index("<h2>Training outcome</h2>") < page.index("<table") < page.index("<h2>Size and setup</h2>")
    assert [row[0] for row in table_rows(page)] == ["lstm", "transformer.d_model=128"] * 2
    assert table_rows(page)[1][1:5] == ["0.4568", "0.4937", "819,200", "2,255,486,976,000"]
    assert "wall_s (machine-dependent)" in table_headers(page)[0]
    assert page.index(tables.TIMING_NOTE.split(":")[0]) > page.rindex("</table>")  # the note, below the tables
    assert "train_flops = flops_per_token x tokens_seen" in page


@pytest.mark.parametrize("value, count, label, shown", [
    (819200.0, True, False, "819,200"),  # a count read as floats (a blank elsewhere in its column)
    (1337, True, True, "1337"),  # a seed: a name, not a count
    (0.0847457627118644, False, False, "0.08475"),
    (12345.678, False, False, "12,346"),  # not 1.235e+04
    (-2.0, False, False, "-2"),
    (float("nan"), False, False, ""),
])
def test_numbers_are_compact(value, count, label, shown):
    assert report_tables.number(value, count, label) == shown


def test_a_sampling_page_shows_counts_in_full(tmp_path):
    """sampling.csv's train_tokens is blank for the reference rows, so pandas reads it as floats: the page shows
    819,200, not 8.192e+05."""
    csv = tmp_path / "sampling.csv"
    csv.write_text("experiment,run,seed,model,train_tokens\ntiny,lstm,1337,lstm,819200.0\n"
                   "tiny,reference,1337,reference,\n")
    assert table_rows(report_tables.csv_html(csv, "tiny")) == [["lstm · 1337", "819,200"], ["reference · 1337", ""]]


@pytest.mark.parametrize("header, shown", [
    ("params_embedding", "params_<wbr>embedding"),
    ("bpb_diff_ci_high", "bpb_diff_<wbr>ci_high"),
    ("distinct_1", "distinct_1"),
    ("wall_s (machine-dependent)", "wall_s (machine-dependent)"),
])
def test_a_header_breaks_at_most_once_at_an_underscore(header, shown):
    assert report_tables.breakable(header) == shown


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
