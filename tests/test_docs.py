"""The documentation: README.md stays short, and the MkDocs site (mkdocs.yml, docs/) builds with no broken link
or missing page, with the configuration reference generated from the schema and every benchmark record shown.
"""
import html
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
    nav_pages = ["pipeline", "configuration", "config-walk", "reruns", "running", "scaling", "cluster", "export-api",
                 "lm-eval", "benchmarks"]
    for page in nav_pages:
        assert (site / page / "index.html").exists(), page
    assert (site / "index.html").exists()
    assert (site / "img" / "rulegraph.svg").exists()


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
