"""The documentation: README.md stays short, and the MkDocs site (mkdocs.yml, docs/) builds with no broken link
or missing page, with the configuration reference generated from the schema and every benchmark record shown.
"""
import html
import html.parser
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_BYTES = 15 * 1024


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_pages() -> list[str]:
    """The Markdown files mkdocs.yml's nav names, in order, through its dropdown sections."""
    import yaml

    def files(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            if isinstance(value, list):
                yield from files(value)
            else:
                yield value

    return list(files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))


def page_text(site: Path, page: str) -> str:
    """The visible text of a built page: tags dropped, entities decoded, whitespace collapsed."""
    raw = (site / page / "index.html").read_text()
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e .[docs]")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_readme_is_short():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, more than {README_MAX_BYTES}: move detail to docs/"


def test_readme_keeps_the_test_command():
    assert "python -m pytest" in (ROOT / "README.md").read_text()  # the command .ci/run runs


def test_commands_put_targets_before_configfile():
    """`--configfile FILE` takes every following word as a config file, unless `--` ends the options."""
    for path in [ROOT / "README.md", ROOT / "config" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in path.read_text().splitlines():
            match = re.search(r"\bsnakemake\b.*--configfile\s+(.*)", line)
            if not match:
                continue
            after = re.split(r"[#`]", match.group(1))[0].split()
            assert len(after) == 1 or after[1].startswith("-") or after[1] in ("|", ">", "&&", ";"), \
                f"{path.name}: a target after --configfile: {line}"


def test_site_builds_strict_with_every_page(site):
    pages = ["pipeline", "configuration", "config-walk", "reruns", "running", "scaling", "cluster", "export-api",
             "lm-eval", "benchmarks"]
    pages += [page.removesuffix(".md") for page in nav_pages() if page != "index.md"]  # and every page of the nav
    for page in pages:
        assert (site / page / "index.html").exists(), page
    assert (site / "index.html").exists()
    assert (site / "img" / "rulegraph.svg").exists()


def test_every_generated_part_says_so_in_the_raw_page_and_not_on_the_site(site):
    """A marker the site fills in reads as nothing in the raw page (on GitHub): the line under it says what goes
    there; the site shows what goes there instead."""
    hooks = load_hooks()
    for path in sorted((ROOT / "docs").glob("*.md")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.fullmatch(r"<!-- [^>]+ -->", line.strip()):
                assert hooks.RAW_NOTE.match(lines[i + 1] + "\n"), f"{path.name}:{i + 1}: {line} has no note under it"
    for page in sorted(site.rglob("index.html")):
        assert "Filled in when the site is built" not in page.read_text(), page.relative_to(site)


def test_site_home_page_shows_the_readme_commands(site):
    """The site's home page holds the README's install-and-run commands (included from README.md, one copy), with
    its links into docs/ made the site's."""
    home = (site / "index.html").read_text()
    assert "pip install torch==2.13.0" in home and "python -m pytest" in home
    assert 'href="benchmarks/"' in home and "docs/benchmarks.md" not in home
    with pytest.raises(ValueError, match="no section '## Nowhere'"):
        load_hooks().readme_section("Nowhere")


def test_a_value_and_its_interval_stay_on_one_line_in_the_site_tables(site):
    """"3.4791 ± 0.0092" in a table cell is joined by no-break spaces, so a narrow column cannot put the interval
    under its value; the ± of prose and code blocks is left alone. The home page's result table has room for its
    verdict sentences."""
    hooks = load_hooks()
    page = "Mean ± interval.\n\n| run | loss |\n| --- | --- |\n| a | 3.47 ± 0.01 |\n\n```\n| 1 ± 2 |\n```\n"
    assert hooks.whole_values(page) == page.replace("3.47 ± 0.01", "3.47\u00a0±\u00a00.01")
    home = (site / "index.html").read_text()
    assert "\u00a0±\u00a0" in home or "&nbsp;±&nbsp;" in home
    assert not re.search(r"<td>[^<]* ± ", home)
    # the README's table sits in a block whose last column (docs/css/extra.css) is wide enough for its sentences
    assert re.search(r'<div class="results">\s*<table>\s*<thead>\s*<tr>\s*<th>run</th>', home)


# what Markdown and the theme put in a page (i: the theme's icons; details, summary: a folded benchmark record); a
# placeholder written as <b> or <s> in prose would vanish as well, so tags Markdown never writes from prose are left out
HTML_TAGS = set("""a blockquote body br button code dd details div dl dt em footer form h1 h2 h3 h4 h5 h6 head hr html i img
input kbd li link meta nav ol p pre script span strong summary sup table tbody td th thead title tr ul""".split())


class TagNames(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.names = set()

    def handle_starttag(self, tag, attrs):
        self.names.add(tag)


def test_placeholders_in_prose_are_not_swallowed_as_tags(site):
    """A `<budget>` written outside a code span reaches the page as an unknown HTML tag, which the browser shows
    as nothing ("at FLOPs: better than by bpb"): every tag of every page is a real one."""
    for page in sorted(site.rglob("index.html")):
        parser = TagNames()
        parser.feed(page.read_text())
        assert parser.names <= HTML_TAGS, f"{page.relative_to(site)}: {sorted(parser.names - HTML_TAGS)}"


def test_index_lists_every_nav_page():
    """docs/index.md's table of pages is the way in to the pages the navbar folds into dropdowns."""
    rows = [line for line in (ROOT / "docs" / "index.md").read_text().splitlines() if line.startswith("| [")]
    linked = [re.match(r"\| \[[^]]+\]\(([^)#]+)\)", row).group(1) for row in rows]
    missing = [page for page in nav_pages() if page != "index.md" and page not in linked]
    assert not missing, f"pages of the nav missing from docs/index.md's table: {missing}"
    assert set(linked) <= set(nav_pages()), "docs/index.md's table links a page that is not in the nav"


def test_navbar_fits_one_row():
    """The mkdocs theme puts every top-level nav entry in the navbar: 14 long ones wrapped it onto 4 rows at 1280
    px. Pages go into dropdown sections (nested nav); the top level stays a few short titles (about 45 characters
    in all fit one row beside Search, Previous and Next from 992 px, below which the theme folds the navbar)."""
    import yaml

    top = [next(iter(item)) if isinstance(item, dict) else item
           for item in yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]]
    assert len(top) <= 7 and sum(len(title) for title in top) <= 45, top


def test_configuration_page_lists_every_key_of_the_schema(site):
    from picollm.config import schema

    raw = (site / "configuration" / "index.html").read_text()
    keys = {html.unescape(c) for c in re.findall(r"<tr>\s*<td><code>(.*?)</code></td>", raw)}  # first column
    for example in ["train.lr", "train.max_steps", "models.<name>.d_model", "models.<name>.hidden_dim",
                    "models.<name>.k", "data.sources[].train_files", "data.sources[].train_stories",
                    "data.sources[].num_sequences", "sampling.p_values", "sweep"]:
        assert example in keys, example

    def property_names(node):
        """Every key any object of the schema defines, wherever it is (properties of $defs and branches too)."""
        if isinstance(node, dict):
            for key, sub in (node.get("properties") or {}).items():
                yield key
            for value in node.values():
                yield from property_names(value)
        elif isinstance(node, list):
            for value in node:
                yield from property_names(value)

    listed = {key.rsplit(".", 1)[-1] for key in keys}
    missing = sorted(set(property_names(schema())) - listed)
    assert not missing, f"keys of the schema missing from the configuration page: {missing}"


def test_reference_walker_reads_pydantic_style_schemas():
    """$defs + $ref, a discriminated oneOf of models, anyOf with null, a map, a list of discriminated sources."""
    hooks = load_hooks()
    schema = {
        "$defs": {
            "Train": {"type": "object", "title": "Train", "additionalProperties": False, "properties": {
                "lr": {"type": "number", "exclusiveMinimum": 0, "default": 0.001, "title": "Lr",
                       "description": "peak learning rate"},
                "max_minutes": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None}}},
            "TrainOverrides": {"type": "object", "properties": {
                "lr": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
                "max_minutes": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None}}},
            "Lstm": {"type": "object", "required": ["type"], "properties": {
                "type": {"const": "lstm", "type": "string"},
                "train": {"anyOf": [{"$ref": "#/$defs/TrainOverrides"}, {"type": "null"}], "default": None},
                "hidden_dim": {"type": "integer", "minimum": 1, "default": 256}}},
            "Transformer": {"type": "object", "required": ["type"], "properties": {
                "type": {"const": "transformer", "type": "string"},
                "d_model": {"type": "integer", "default": 128},
                "mlp_hidden": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": None}}},
            "Text": {"type": "object", "properties": {"kind": {"const": "text"},
                                                      "train_files": {"type": "array", "items": {"type": "string"}}}},
            "Seqs": {"type": "object", "properties": {"kind": {"const": "3seqs"}, "max_terms": {"type": "integer"}}},
        },
        "type": "object",
        "properties": {
            "train": {"$ref": "#/$defs/Train"},
            "models": {"type": "object", "additionalProperties": {
                "oneOf": [{"$ref": "#/$defs/Lstm"}, {"$ref": "#/$defs/Transformer"}],
                "discriminator": {"propertyName": "type", "mapping": {}}}},
            "sources": {"type": "array", "items": {"oneOf": [{"$ref": "#/$defs/Text"}, {"$ref": "#/$defs/Seqs"}],
                                                   "discriminator": {"propertyName": "kind"}}},
            "sweep": {"type": "object", "additionalProperties": {"type": "object",
                                                                  "additionalProperties": {"type": "array"}}},
        },
    }
    paths = hooks.key_paths(schema)
    for path in ["train.lr", "train.max_minutes", "models.<name>.hidden_dim", "models.<name>.d_model",
                 "models.<name>.mlp_hidden", "models.<name>.train", "sources[].train_files", "sources[].max_terms",
                 "sweep.<model>.<key>"]:
        assert path in paths, (path, paths)
    page = hooks.config_reference(schema)
    assert "(type: `lstm`)" in page and "(type: `transformer`)" in page and "(kind: `3seqs`)" in page
    assert "integer ≥ 1 or null" in page  # a nullable key keeps its type and bound
    assert "[`train`](#key-train)" in page  # the per-model overrides point at train's table, not a copy of it


def test_reference_prints_bounds_defaults_and_map_values_plainly():
    """An integer bound in full, an object's default as a link to its table, a map's values described, and a
    sentence that says what the default column means."""
    hooks = load_hooks()
    schema = {"type": "object", "properties": {
        "seed": {"type": "integer", "minimum": 0, "maximum": 2 ** 32 - 1, "default": 1337},
        "p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1.0, "minimum": 0.05},
        "train": {"type": "object", "default": {"lr": 0.001, "max_steps": 1000}, "properties": {
            "lr": {"type": "number", "default": 0.001}, "max_steps": {"type": "integer", "default": 1000}}},
        "sweep": {"type": "object", "default": {}, "additionalProperties": {
            "type": "object", "additionalProperties": {"type": "array", "minItems": 1,
                                                       "description": "the values to try"}}},
    }}
    page = hooks.config_reference(schema)
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in page.splitlines() if line.startswith("| `")}
    assert rows["seed"][1] == "integer ≥ 0, ≤ 4294967295", rows["seed"]
    assert rows["p"][1] == "number ≥ 0.05, > 0, ≤ 1", rows["p"]
    assert rows["train"][2] == "see [`train`](#key-train)", rows["train"]  # not the JSON of every train key
    assert rows["train.lr"][2] == "`0.001`"
    assert rows["sweep"][2] == "`{}`"  # an empty mapping has no table to point at
    assert "the values to try" in rows["sweep.<model>.<key>"][3]
    assert page.index(hooks.DEFAULTS_NOTE) < page.index("| key |")
    assert "config/config.yaml" in hooks.DEFAULTS_NOTE and "leaves it out" in hooks.DEFAULTS_NOTE


def test_configuration_page_defines_defaults_and_shows_no_blobs(site):
    text = page_text(site, "configuration")
    assert "The default column is the value a key takes when the study file leaves it out" in text
    raw = (site / "configuration" / "index.html").read_text()
    rows = {html.unescape(re.sub(r"<[^>]+>", "", cells[0])): cells
            for cells in (re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", raw, re.S))
            if len(cells) == 4}
    for key, (_, kind, default, _) in rows.items():
        assert not re.search(r"\de\+\d", kind), f"{key}: a bound in float notation (4.29497e+09): {kind}"
        assert len(default) < 300, f"{key}: a default too long for its cell, link to its table instead: {default}"
    assert 'href="#key-train"' in rows["train"][2]
    assert rows["sweep.<model>.<key>"][3].strip()


def test_benchmarks_page_shows_every_record_with_its_date_and_machine(site):
    """Every record on the benchmarks page, or, for a benchmark a page of its own explains (the scaling study),
    on that page."""
    hooks = load_hooks()
    records = sorted((ROOT / "docs" / "benchmarks").glob("*.json"))
    assert records
    for path in records:
        record = json.loads(path.read_text())
        page = hooks.ELSEWHERE.get(record["benchmark"], "benchmarks.md").removesuffix(".md")
        text = page_text(site, page)
        assert {"benchmark", "title", "started_utc", "machine", "table"} <= set(record), path.name
        date = str(record["started_utc"])[:10]
        machine = " ".join(html.unescape(re.sub(r"<[^>]+>|`", "", hooks.machine_text(record["machine"]))).split())
        assert f"Measured {date}" in text, (path.name, date)
        assert f"on {machine}" in text, (path.name, machine)
        assert path.name in text, path.name


def test_speed_table_keeps_one_dated_row_per_machine_type():
    hooks = load_hooks()

    def record(benchmark, cpu, day, ratio):
        machine = {"cpu_model": cpu, "cpu_flags": ["avx2"], "torch_threads": 2, "torch": "2.13.0",
                   "cpu_caches": {"L2": "1024K"}}
        extra = {"ratio_vs_hf": ratio, "head_loss": {"fused_vs_plain": 1.8}} if benchmark == "train" else \
            {"ratios": {"cached_vs_hf": ratio}}
        return {"benchmark": benchmark, "started_utc": f"2026-12-0{day}T00:00:00+00:00", "machine": machine,
                "peak_matmul": {"gflops_by_size": {"4096": 200.0}, "onednn_fp32_gflops": 440.0, "bf16_gflops": 800.0},
                "table": {"columns": [], "rows": []}, **extra}

    rows = [line for line in hooks.speed_by_machine([
        record("train", "CPU A", 1, 1.2), record("train", "CPU A", 3, 1.9), record("generation", "CPU A", 2, 1.6),
        record("train", "CPU B", 4, 1.1)]) if line.startswith("| 2026")]
    assert len(rows) == 2
    assert "CPU A" in rows[0] and "2026-12-02, 2026-12-03" in rows[0] and "1.90x" in rows[0] and "1.60x" in rows[0]
    assert "1.80x" in rows[0] and "200 / 440 / 800" in rows[0] and "L2 1024K" in rows[0]
    assert "CPU B" in rows[1] and "1.10x" in rows[1]


def test_pipeline_page_lists_every_module_of_the_package(site):
    """The code layout is generated from the package: every module, and every subpackage with its modules, in a
    row with its docstring's first sentence (placeholders such as <run> shown, not read as tags)."""
    text = page_text(site, "pipeline")
    package = ROOT / "src" / "picollm"
    for path in package.glob("*.py"):
        if path.stem not in ("__init__", "__main__"):
            assert f"{path.stem} " in text, path.stem
    for init in package.glob("*/__init__.py"):
        assert f"{init.parent.name}/ " in text, init.parent.name
    assert "results/<experiment>/" in text
    hooks = load_hooks()
    assert hooks.first_sentence("A k-gram, e.g. k=3. Then more.\n\nAnother paragraph.") == "A k-gram, e.g. k=3."


def test_gpu_study_estimate_is_generated_from_its_study_file(site):
    """docs/scaling.md's expected wall time of config/gpu.yaml comes from the file and picollm.flops at build time:
    the page shows it, and twice the MFU halves it."""
    hooks = load_hooks()
    text = hooks.gpu_estimate()
    assert " ".join(html.unescape(re.sub(r"<[^>]+>|`|\*\*", "", text)).split()) in page_text(site, "scaling")
    assert "<!-- gpu-estimate -->" in (ROOT / "docs" / "scaling.md").read_text()
    at = {mfu: int(re.search(r"\*\*(\d+) min on an H100\*\*", hooks.gpu_estimate(mfu=mfu)).group(1))
          for mfu in (0.3, 0.6)}
    assert abs(at[0.3] / at[0.6] - 2) < 0.3, at


def test_lm_eval_page_table_is_its_newest_record_with_date_commit_and_cpu():
    """docs/lm-eval.md's scorings of one model are the lm_eval benchmark's newest record, rendered by the hook in
    place of its marker: its date, commit and CPU, and every row of its table."""
    hooks = load_hooks()
    page = (ROOT / "docs" / "lm-eval.md").read_text()
    assert "<!-- benchmark:lm_eval -->" in page and hooks.ELSEWHERE["lm_eval"] == "lm-eval.md"
    record = next(r for r in hooks.benchmark_records(ROOT / "docs" / "benchmarks") if r["benchmark"] == "lm_eval")
    text = hooks.on_page_markdown(page, None, {"docs_dir": str(ROOT / "docs")}, None)
    assert "<!-- benchmark:" not in text
    assert f"Measured **{record['started_utc'][:10]}** on {record['machine']['cpu_model']} (" in text
    assert f"; commit {record['commit']}." in text and f"`docs/benchmarks/{record['_file']}`" in text
    for row in record["table"]["rows"]:
        assert "| " + " | ".join(hooks.cell(c) for c in row) + " |" in text, row


def test_an_older_record_on_the_same_machine_is_folded_the_newest_stays_open(tmp_path):
    """The benchmarks page folds a record a newer one of its benchmark on the same machine type replaces (kept
    for its history, behind a line that opens it); the newest of each machine stays open."""
    hooks = load_hooks()
    for name, cpu, day in (("new-a", "CPU A", 3), ("old-a", "CPU A", 1), ("only-b", "CPU B", 2)):
        record = {"benchmark": "train", "title": name, "started_utc": f"2026-12-0{day}T00:00:00+00:00",
                  "machine": {"cpu_model": cpu}, "table": {"columns": ["x"], "rows": [[day]]}}
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    page = hooks.benchmarks_markdown(tmp_path, readme=tmp_path / "no-README.md")
    sections = {part.split(" ", 1)[0]: part for part in page.split("### ")[1:]}
    assert '<details markdown="1">' in sections["old-a"] and "(2026-12-01, CPU A): open to read it" in sections["old-a"]
    assert "<details" not in sections["new-a"] and "<details" not in sections["only-b"]
    assert "Measured **2026-12-01**" in sections["old-a"]  # folded, not dropped


def study_record(name, day, configs, commit=None, commit_utc=None, rows=()):
    return {"_file": f"{name}.json", "benchmark": "study", "title": name, "started_utc": day,
            "machine": {"cpu_model": f"CPU {name}"}, "table": {"columns": ["study", "wall time"], "rows": list(rows)},
            **({"commit": commit, "commit_utc": commit_utc} if commit else {}), "configs": configs}


def test_a_record_note_shows_its_angle_brackets():
    """A note's "<config/config.yaml with ...>" stands for a file, not an HTML tag the page would swallow; code
    spans keep theirs as written."""
    record = {**study_record("n", "2026-01-01", {}), "notes": ["ran --configfile <config/config.yaml with x> & `a<b>`"]}
    body = "\n".join(load_hooks().record_body(record))
    assert "- ran --configfile &lt;config/config.yaml as of 2026-01-01 with x&gt; &amp; `a<b>`" in body


def test_study_records_are_dated_and_superseded_by_newer_runs(tmp_path):
    """A study record names its study files as of its commit, never as today's; the older of two records of one
    study file is marked superseded, and so is the newest where the README quotes a later run of the file."""
    hooks = load_hooks()
    ran = {"runs": ["lstm", "transformer"], "seeds": [1], "max_steps": 10, "data": [{"kind": "3seqs"}]}
    old = study_record("old", "2026-01-01", {"config/offline.yaml": ran}, "aaaaaaa", "2026-01-01T08:00:00+00:00",
                       rows=[["offline (config/offline.yaml: one seed)", "9 s"]])
    new = study_record("new", "2026-01-01", {"config/offline.yaml": {**ran, "seeds": [1, 2]},
                                             "config/tinystories-local.yaml": ran},
                       "bbbbbbb", "2026-01-01T20:00:00+00:00")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## {hooks.README_STUDY_SECTION}\n\nIts run on 2026-02-01 (`snakemake --cores 2 all "
                      "--configfile\nconfig/tinystories-local.yaml`, commit ccccccc) took 1 minute.\n\n## Next\n")
    assert hooks.readme_study_run(readme) == {"config": "config/tinystories-local.yaml", "date": "2026-02-01",
                                              "commit": "ccccccc"}
    history, notes = hooks.study_history([old, new], hooks.readme_study_run(readme), [old, new])
    text = "\n".join(history)
    assert "2 runs x 2 seeds, 10 steps each: 4 trainings" in text and "2 runs x 1 seed, 10 steps each: 2 trainings" in text
    assert text.index("CPU new, bbbbbbb") < text.index("CPU old, aaaaaaa")  # newest first, by commit time within a day
    assert "**current**" in text and "2026-02-01, commit ccccccc" in text
    assert "superseded by the 2026-01-01 CPU new record at bbbbbbb" in " ".join(notes["old.json"])
    assert "superseded by the run of 2026-02-01" in " ".join(notes["new.json"])
    page = "\n".join(hooks.record_markdown(old, notes["old.json"]))
    assert '!!! note "Superseded"' in page and "commit aaaaaaa" in page
    assert "offline (config/offline.yaml as of aaaaaaa: one seed)" in page  # the file as it was, not as it is


def test_the_readme_run_with_a_record_is_that_record_not_a_second_row(tmp_path):
    """A record written by python -m benchmarks.readme_study (readme: true) of the run README.md quotes is the
    current row of its study file: no extra 'no study record' row, and the older record superseded by it."""
    hooks = load_hooks()
    ran = {"runs": ["lstm"], "seeds": [1], "max_steps": 10, "data": [{"kind": "3seqs"}]}
    old = study_record("old", "2026-01-01", {"config/tinystories-local.yaml": ran}, "aaaaaaa", "2026-01-01T08:00:00+00:00")
    quoted = {**study_record("quoted", "2026-02-01T10:00:00+00:00", {"config/tinystories-local.yaml": ran},
                             "ccccccc", "2026-02-01T09:00:00+00:00"), "readme": True}
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## {hooks.README_STUDY_SECTION}\n\nIts run on 2026-02-01 (`snakemake --cores 2 all "
                      "--configfile config/tinystories-local.yaml`, the `src/picollm` of commit ccccccc) took 1 minute.\n")
    history, notes = hooks.study_history([old, quoted], hooks.readme_study_run(readme), [old, quoted])
    text = "\n".join(history)
    assert "no study record" not in text and "generated from [its record]" in text
    assert "**current**: the run" in text and "superseded by the CPU quoted record at ccccccc" in text
    assert "superseded" in " ".join(notes["old.json"]) and "superseded" not in " ".join(notes.get("quoted.json", []))


def test_readme_study_numbers_are_generated_from_their_record(monkeypatch):
    """README.md's run sentence, figure and table are the block `python -m benchmarks.readme_study readme` writes
    from the newest record with readme: true, and that record is the run the docs' benchmarks page finds."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import readme_study

    record = readme_study.newest_record()
    assert readme_study.readme_block((ROOT / "README.md").read_text()) == readme_study.block(record), \
        "README.md's study block is not its record's: run python -m benchmarks.readme_study readme"
    assert load_hooks().readme_study_run() == {"config": next(iter(record["configs"])),
                                               "date": record["started_utc"][:10], "commit": record["commit"]}


def test_the_readme_says_which_lead_was_not_bought_with_more_compute(monkeypatch):
    """Runs of equal steps differ in FLOPs: under the table, a run better than another on fewer FLOPs is said to
    lead without more compute, one better on more FLOPs to lead per token seen only; one budget says nothing."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import readme_study

    def table(flops: dict) -> dict:
        cells = {"a": "better than b by 0.1 bpb (95% CI 0.05 to 0.15), than c.d=2 by 0.3 (0.2 to 0.4)",
                 "b": "better than c.d=2 by 0.2 bpb (95% CI 0.1 to 0.3)", "c.d=2": ""}
        return {"columns": ["run", "training FLOPs", "paired by seed"],
                "rows": [[run, flops[run], cells[run]] for run in cells]}

    text = readme_study.compute_sentence(table({"a": "1e+12", "b": "2e+12", "c.d=2": "4e+12"}))
    assert text == ("Per FLOP: a is better than b and c.d=2 on 0.5 and 0.25 times their training FLOPs respectively, "
                    "so the lead is not bought with more compute; b is better than c.d=2 on 0.5 times its training "
                    "FLOPs, so the lead is not bought with more compute.")
    text = readme_study.compute_sentence(table({"a": "3e+12", "b": "2e+12", "c.d=2": "4e+12"}))
    assert "a is better than c.d=2 on 0.75 times its training FLOPs, so" in text
    assert "a is better than b on 1.5 times its training FLOPs, a lead per token seen that only an equal " \
           "`train.flops` budget can test" in text
    assert readme_study.compute_sentence(table({"a": "2e+12", "b": "2e+12", "c.d=2": "2e+12"})) == ""
    assert readme_study.compute_sentence({"columns": ["run", "paired by seed"], "rows": []}) == ""


def test_a_study_record_outlines_the_study_files_it_timed_as_the_page_reads_them_today(monkeypatch):
    """python -m benchmarks --only study keeps `configs`, each file's Study.outline(): the benchmarks page compares
    it with the file of today to say whether a record still describes it."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import study

    outlines = study.outlines(study.STUDY_FILES)
    assert list(outlines) == ["config/offline.yaml", "config/config.yaml"]
    for path, outline in outlines.items():
        assert outline == load_hooks().today_study(path) and outline["runs"][:3] == ["kgram_mlp", "lstm", "transformer"]
    assert outlines["config/config.yaml"]["data"][0]["kind"] == "tinystories"
    assert outlines["config/config.yaml"]["data"][0]["train_stories"] > 0


def test_study_records_configs_are_their_commits_study_files():
    """A study record's `configs` is its study files as they were at its commit (derived, not typed), where that
    commit is in this clone's history."""
    import yaml

    def at(commit, path):
        proc = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], capture_output=True, text=True)
        if proc.returncode:
            return None
        study = yaml.safe_load(proc.stdout)
        base = study.pop("base", None)
        if base:
            below = at(commit, str(Path(path).parent / base))
            study = {**below, **{k: {**below[k], **v} if isinstance(v, dict) and isinstance(below.get(k), dict) else v
                                 for k, v in study.items()}}
        return study

    for path in sorted((ROOT / "docs" / "benchmarks").glob("*.json")):
        record = json.loads(path.read_text())
        if record["benchmark"] != "study":
            continue
        commits = [record["commit"]] if isinstance(record.get("commit"), str) else record.get("commit") or []
        for commit in commits:
            for config, ran in record["configs"].items():
                study = at(commit, config)
                if study is None:
                    continue  # a shallow clone: the commit is not here
                runs = list(study["models"]) + [f"{m}.{k}={v}" for m, grid in (study.get("sweep") or {}).items()
                                                for k, values in grid.items() for v in values]
                assert ran["runs"] == runs, (path.name, commit, config)
                assert ran["seeds"] == (study.get("seeds") or [study.get("seed")]), (path.name, commit, config)
                assert ran["max_steps"] == study["train"]["max_steps"], (path.name, commit, config)


def test_benchmarks_page_points_to_the_readme_run_and_dates_study_files(site):
    hooks = load_hooks()
    run = hooks.readme_study_run()
    assert run, f"README.md's section '{hooks.README_STUDY_SECTION}' names no run (`run on YYYY-MM-DD ... --configfile ...`)"
    text = page_text(site, "benchmarks")
    assert f"its run of {run['config']} on {run['date']}" in text
    for path in sorted((ROOT / "docs" / "benchmarks").glob("*.json")):
        record = json.loads(path.read_text())
        if record["benchmark"] == "study" and run["config"] in hooks.study_files(record):
            assert str(record["started_utc"])[:10] <= run["date"], \
                f"{path.name} is newer than the run README.md quotes: quote it there (and keep it here once)"
    raw = (site / "benchmarks" / "index.html").read_text()
    section = raw[raw.index('id="bench-study"'):raw.index("<h2", raw.index('id="bench-study"') + 1)]
    for row in re.findall(r"<tr>(.*?)</tr>", section, re.S):
        first = html.unescape(re.sub(r"<[^>]+>", "", re.findall(r"<td>(.*?)</td>", row, re.S)[0] if "<td>" in row else ""))
        for name in re.findall(r"config/[\w.-]+\.yaml(?! as of)", first):
            pytest.fail(f"a study record's row names {name} as today's file: {first}")


def test_rule_graph_is_the_documented_command_output(tmp_path):
    """docs/img/rulegraph.svg is what the command in docs/pipeline.md draws: the same rules and arrows, the same
    font size (the layout itself may differ between Graphviz versions)."""
    import shutil
    if not (shutil.which("dot") and shutil.which("tred") and shutil.which("snakemake")):
        pytest.skip("needs snakemake and Graphviz (dot, tred) on PATH")
    command = re.search(r"```bash\n(snakemake --rulegraph .*?)```", (ROOT / "docs" / "pipeline.md").read_text(),
                        re.S).group(1)
    assert command.rstrip().endswith("> docs/img/rulegraph.svg"), command
    out = tmp_path / "rulegraph.svg"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command.rstrip().removesuffix("docs/img/rulegraph.svg")
                           + str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def graph(svg: str):
        labels, edges, sizes = {}, set(), set(re.findall(r'font-size="([0-9.]+)"', svg))
        for kind, body in re.findall(r'<g id="\w+" class="(node|edge)">(.*?)</g>', svg, re.S):
            title = html.unescape(re.search(r"<title>(.*?)</title>", body, re.S).group(1))
            if kind == "node":
                labels[title] = "".join(html.unescape(t) for t in re.findall(r"<text[^>]*>(.*?)</text>", body, re.S))
            else:
                edges.add(tuple(title.split("->")))
        return set(labels.values()), {(labels[a], labels[b]) for a, b in edges}, sizes

    assert graph(out.read_text()) == graph((ROOT / "docs" / "img" / "rulegraph.svg").read_text()), \
        "docs/img/rulegraph.svg is stale: rerun the command in docs/pipeline.md"
