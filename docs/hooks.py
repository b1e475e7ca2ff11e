"""MkDocs hook (mkdocs.yml `hooks:`): pages generated at build time, so they cannot drift from their sources.

- `<!-- config-reference -->` in a page becomes the study config's key reference: one table per object of the
  schema that `picollm.config.schema()` returns (key path, type, default, description). The walker reads any
  JSON Schema: `properties`, `$ref` into `$defs`, `allOf` (plain composition, or `if`/`then` branches keyed by
  a `const`), `anyOf`/`oneOf` (a nullable value, a union of scalars, or a union of objects told apart by a
  `const` property such as `type` or `kind`: one table per variant), `additionalProperties` as a map
  (`models.<name>`), and arrays of objects (`data.sources[]`).
- `<!-- benchmarks -->` becomes every benchmark record in docs/benchmarks/*.json: the records that
  `python -m benchmarks` writes (results/benchmarks/<name>.json), each with its date, machine and command;
  `<!-- benchmark:NAME -->` becomes the newest record of one benchmark, in the page that explains it. The
  `study` records open with their history, study file by study file: what each ran (its study file as of the
  record's commit), newest first, which record a newer run supersedes, and the run the README quotes.

Under each marker, a line `*(Filled in when the site is built: ...)*` tells a reader of the raw page what the site
shows there; the hook drops it.
"""
from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_MARKER = "<!-- config-reference -->"
BENCHMARKS_MARKER = "<!-- benchmarks -->"
# the placeholder of a map's keys in a key path; any other map: <name>
MAP_KEY = {"sweep": "<model>", "sweep.<model>": "<key>"}
# above the tables: what the default column means (readers take config/config.yaml's values for the defaults)
DEFAULTS_NOTE = ("The *default* column is the value a key takes when the study file leaves it out (*required*: it "
                 "cannot be left out; &mdash;: no value, the key exists only where a file writes it). It is the "
                 "schema's default, not what `config/config.yaml` (the default TinyStories study) sets: that file "
                 "gives many keys values of its own.")
# the benchmark sections in order (benchmarks/run.py BENCHMARKS) and their headings; others follow by name
BENCHMARK_SECTIONS = {
    "study": "Study wall time",
    "train": "Training speed",
    "kgram": "k-gram MLP training speed",
    "generation": "Generation speed",
    "memory": "Training memory",
    "compact": "Compact vocabulary",
    "tokenize": "Tokenizing",
    "budget": "Best bits per byte in a fixed CPU budget",
    "recipe": "The default Transformer against nanoGPT-style",
    "vocab": "The default study's vocabulary",
}
# benchmarks shown in the page that explains them (`<!-- benchmark:NAME -->`), not on the benchmarks page
ELSEWHERE = {"scaling": "scaling.md", "gpu": "gpu.md", "lm_eval": "lm-eval.md"}
# the README's section that quotes the current run of a study (its result and wall time)
README_STUDY_SECTION = "The default study, and its run on local files"
# docs/scaling.md's expected wall time of config/gpu.yaml, generated from the study file and the FLOPs count
GPU_ESTIMATE_MARKER = "<!-- gpu-estimate -->"
# docs/pipeline.md's table of the package's modules, each with its docstring's first sentence
CODE_LAYOUT_MARKER = "<!-- code-layout -->"


# the line under each marker that tells a reader of the raw page (on GitHub) what the site shows there
RAW_NOTE = re.compile(r"^\*\(Filled in when the site is built: [^\n]*\)\*\n", re.M)


# ---------------------------------------------------------------- hook entry point

def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    markdown = RAW_NOTE.sub("", markdown)
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, config_reference(load_schema()))
    for name in re.findall(r"<!-- benchmark:(\w+) -->", markdown):
        markdown = markdown.replace(f"<!-- benchmark:{name} -->",
                                    one_benchmark_markdown(Path(config["docs_dir"]) / "benchmarks", name))
    if BENCHMARKS_MARKER in markdown:
        markdown = markdown.replace(BENCHMARKS_MARKER, benchmarks_markdown(Path(config["docs_dir"]) / "benchmarks"))
    if GPU_ESTIMATE_MARKER in markdown:
        markdown = markdown.replace(GPU_ESTIMATE_MARKER, gpu_estimate())
    if CODE_LAYOUT_MARKER in markdown:
        markdown = markdown.replace(CODE_LAYOUT_MARKER, code_layout())
    for title in re.findall(r"<!-- readme:([^>]+?) -->", markdown):
        markdown = markdown.replace(f"<!-- readme:{title} -->", readme_section(title))
    return whole_values(markdown)


def whole_values(markdown: str) -> str:
    """A table cell's "3.4791 ± 0.0092" stays on one line: a narrow column would otherwise break it at the ±,
    leaving the interval under its value. No-break spaces in table rows only; prose and code blocks keep theirs."""
    lines, fenced = markdown.split("\n"), False
    for i, line in enumerate(lines):
        fenced ^= line.lstrip().startswith("```")
        if not fenced and line.lstrip().startswith("|"):
            lines[i] = line.replace(" ± ", "\u00a0±\u00a0")
    return "\n".join(lines)


def gpu_estimate(study_file: str = "config/gpu.yaml", mfu: float = 0.30) -> str:
    """config/gpu.yaml's expected training time, from its training FLOPs (picollm.flops, the GPT-2 vocabulary)
    at an assumed MFU of an H100's and an A100's dense bf16 peak (benchmarks/gpu.py's table)."""
    checkout_first()
    if str(ROOT) not in sys.path:  # benchmarks/, beside src/
        sys.path.insert(0, str(ROOT))
    import torch
    from benchmarks.gpu import PEAK_TFLOPS
    from picollm.config import load_study
    from picollm.flops import flops_per_token
    from picollm.models import build_model, count_parameters

    study = load_study([str(ROOT / study_file)])
    (run, model), = study.runs.items()
    vocab, block, train = 50257, study.block_size, study.train_of(run)
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        counts = count_parameters(build_model(model, vocab, block))
    tokens = train.max_steps * train.batch_size * block
    flops = flops_per_token(model, vocab, block) * tokens
    peaks = {name: tflops for _, tflops, _, name in PEAK_TFLOPS}

    shown = f"{flops:.1e}".replace("e+", "e")

    def minutes(peak_tflops: float, share: float) -> str:
        return f"{flops / (share * peak_tflops * 1e12) / 60:.0f} min"

    return (f"`{study_file}`'s Transformer ({model.n_layers} layers, d_model {model.d_model}, {model.n_heads} heads) "
            f"has {counts['params'] / 1e6:.1f} M parameters ({counts['params_core'] / 1e6:.1f} M in "
            f"its blocks, {counts['params_embedding'] / 1e6:.1f} M in its tied token table); they train for "
            f"{train.max_steps:,} steps of {train.batch_size} x {block} tokens ({tokens / 1e9:.2f} B tokens) at "
            f"{flops_per_token(model, vocab, block) / 1e6:.0f} MFLOPs per token (`picollm.flops`: 3 x the forward "
            f"matmuls, the head and attention over the full window included): {shown} FLOPs, so about "
            f"**{minutes(peaks['H100 SXM'], mfu)} on an H100** at an assumed {mfu:.0%} MFU of its "
            f"{peaks['H100 SXM']:g} TFLOP/s dense bf16 peak ({minutes(peaks['H100 SXM'], mfu / 2)} at "
            f"{mfu / 2:.0%}), and about {minutes(peaks['A100'], mfu)} on an A100 ({mfu:.0%} of "
            f"{peaks['A100']:g} TFLOP/s).")


def first_sentence(doc: str) -> str:
    """A docstring's first sentence (to its first full stop before a space or its end), on one line."""
    text = " ".join(doc.split("\n\n")[0].split())
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", text)
    return text[:end.start() + 1] if end else text


def code_layout(package: Path = ROOT / "src" / "picollm") -> str:
    """A table of the package's modules, a subpackage with its modules' names, each with its docstring's first
    sentence: generated, so that every module is in it."""
    import ast

    def doc(path: Path) -> str:  # <run> and <experiment> outside code spans would be read as HTML tags
        parts = re.split(r"(`[^`]*`)", first_sentence(ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
                                                      or ""))
        return "".join(part if part.startswith("`") else html.escape(part, quote=False) for part in parts)

    rows = []
    for path in sorted(package.glob("*.py")):
        if path.stem not in ("__init__", "__main__"):
            rows.append((f"`{path.stem}`", doc(path)))
    for init in sorted(package.glob("*/__init__.py")):
        parts = sorted(p.stem for p in init.parent.glob("*.py") if p.stem != "__init__")
        rows.append((f"`{init.parent.name}/`", f"{doc(init)} Modules: {', '.join(f'`{p}`' for p in parts)}." if parts
                      else doc(init)))
    return "\n".join(["| module | what it holds |", "| --- | --- |",
                      *(f"| {name} | {text.replace('|', chr(92) + '|')} |" for name, text in rows)]) + "\n"


def readme_section(title: str, readme: Path = ROOT / "README.md") -> str:
    """The body of the README's `## title` section, for a page of the site that shows it too (one copy), its links
    into docs/ made the site's and its tables in a `results` block (docs/css/extra.css sets their columns)."""
    parts = re.split(r"^## +", readme.read_text(), flags=re.M)
    section = next((p for p in parts if p.startswith(title + "\n")), None)
    if section is None:
        raise ValueError(f"README.md has no section '## {title}' (docs/index.md includes it)")
    body = section[len(title) + 1:].strip().replace("](docs/", "](")
    return re.sub(r"((?:^\|.*\n?)+)", lambda table: f'<div class="results" markdown>\n\n{table.group(1).rstrip()}\n\n'
                  f'</div>\n', body, flags=re.M) + "\n"


def checkout_first() -> None:
    """This checkout's src/ first on the path, before any installed picollm: the docs describe its code."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def load_schema() -> dict:
    """The schema of this checkout."""
    checkout_first()
    from picollm.config import schema
    return maps_as_additional(schema())


def maps_as_additional(node):
    """A map whose keys must match one pattern (pydantic writes `patternProperties: {pattern: value}`) read as
    `additionalProperties: value`, the one form of a map the walker follows."""
    if isinstance(node, list):
        return [maps_as_additional(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: maps_as_additional(v) for k, v in node.items()}
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict) and len(patterns) == 1 and "additionalProperties" not in node:
        node["additionalProperties"] = next(iter(patterns.values()))
        del node["patternProperties"]
    return node


# ---------------------------------------------------------------- the config reference

class Section:
    def __init__(self, title: str, path: str, description: str, short: str):
        self.title, self.path, self.description, self.short, self.rows = title, path, description, short, []


def merge(base: dict, extra: dict) -> dict:
    """`extra` on top of `base`; properties and required lists are united (a property `true` keeps base's)."""
    out = {**base, **{k: v for k, v in extra.items() if k not in ("properties", "required")}}
    props = dict(base.get("properties", {}))
    for key, sub in extra.get("properties", {}).items():
        if isinstance(sub, dict) or key not in props:
            props[key] = sub
    if props:
        out["properties"] = props
    required = list(dict.fromkeys([*base.get("required", []), *extra.get("required", [])]))
    if required:
        out["required"] = required
    return out


def const_of(node) -> object:
    """The single value a property schema allows (`const`, or an `enum` of one), else None."""
    if not isinstance(node, dict):
        return None
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and len(node["enum"]) == 1:
        return node["enum"][0]
    return None


class SchemaWalker:
    def __init__(self, schema: dict):
        self.root = schema
        self.sections: list[Section] = []
        self.by_keys: dict[frozenset, str] = {}  # property names of a rendered object -> its section's path

    # ---- reading the schema

    def pointer(self, ref: str) -> dict:
        if not ref.startswith("#"):
            raise ValueError(f"config reference: only local $refs are supported, not {ref!r}")
        node = self.root
        for part in ref.lstrip("#").strip("/").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolve(self, node) -> dict:
        """Follow `$ref`s (their siblings win) and plain `allOf` composition (no if/then)."""
        if not isinstance(node, dict):
            return {}
        for _ in range(50):  # a $ref chain longer than this is a cycle
            if "$ref" in node:
                rest = {k: v for k, v in node.items() if k != "$ref"}
                node = {**self.pointer(node["$ref"]), **rest}
                continue
            parts = node.get("allOf")
            if parts and not any(isinstance(p, dict) and "if" in p for p in parts):
                out = {k: v for k, v in node.items() if k != "allOf"}
                for part in parts:
                    out = merge(self.resolve(part), out)
                node = out
                continue
            return node
        raise ValueError("config reference: a $ref cycle in the schema")

    def normalize(self, node) -> tuple[dict, bool]:
        """(schema, nullable): a union with `null` loses it; a union left with one member becomes that member."""
        node = self.resolve(node)
        nullable = False
        types = node.get("type")
        if isinstance(types, list) and "null" in types:
            nullable = True
            rest = [t for t in types if t != "null"]
            node = {**node, "type": rest[0] if len(rest) == 1 else rest}
        for key in ("anyOf", "oneOf"):
            if key not in node:
                continue
            members = [self.resolve(m) for m in node[key]]
            if any(m.get("type") == "null" for m in members):
                nullable = True
                members = [m for m in members if m.get("type") != "null"]
            outer = {k: v for k, v in node.items() if k != key}
            if len(members) == 1:
                inner, inner_nullable = self.normalize(members[0])
                node = {**inner, **{k: v for k, v in outer.items() if k not in ("discriminator", "type")}}
                nullable = nullable or inner_nullable
            else:
                node = {**outer, key: members}
        return node, nullable

    def variants(self, node: dict) -> list[tuple[str, object, dict]]:
        """[(discriminating key, its value, object schema)] when `node` is a union of objects, else []."""
        for key in ("oneOf", "anyOf"):
            members = node.get(key)
            if not members:
                continue
            members = [self.resolve(m) for m in members]
            if not all(m.get("properties") for m in members):
                return []
            names = [node["discriminator"]["propertyName"]] if isinstance(node.get("discriminator"), dict) else \
                list(members[0]["properties"])
            for name in names:
                values = [const_of(self.resolve(m["properties"].get(name))) for m in members]
                if all(v is not None for v in values):
                    return [(name, v, m) for v, m in zip(values, members)]
            return []
        branches = [b for b in node.get("allOf", []) if isinstance(b, dict) and "if" in b and "then" in b]
        out = []
        base = {k: v for k, v in node.items() if k != "allOf"}
        for branch in branches:
            condition = branch["if"].get("properties", {})
            for name, sub in condition.items():
                value = const_of(sub)
                if value is not None:
                    out.append((name, value, merge(base, self.resolve(branch["then"]))))
                    break
        return out

    def kind(self, node: dict) -> str:
        if self.variants(node):
            return "variants"
        if node.get("properties"):
            return "object"
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return "map"
        if node.get("type") == "array" or "items" in node:
            items, _ = self.normalize(node.get("items", {}))
            if self.kind(items) in ("object", "variants"):
                return "array"
        return "leaf"

    # ---- writing the tables

    def walk(self) -> list[Section]:
        root, _ = self.normalize(self.root)
        self.section("Top-level keys", "", root)
        return self.sections

    def section(self, title: str, path: str, node: dict, short: str | None = None) -> None:
        sec = Section(title, path, text(node.get("description", "")), short or title)
        self.sections.append(sec)
        self.by_keys.setdefault(frozenset(node["properties"]), path)
        required = set(node.get("required", []))
        for name, sub in node["properties"].items():
            if sub is True and path:  # "allowed, as the base says": already a row of this table's base
                continue
            self.child(f"{path}.{name}" if path else name, sub, sec.rows, name in required)

    def child(self, path: str, sub, rows: list, required: bool) -> None:
        node, nullable = self.normalize(sub)
        kind = self.kind(node)
        same = self.by_keys.get(frozenset(node.get("properties", {}))) if kind == "object" else None
        if same is not None:
            rows.append(self.row(path, node, nullable, required, see=[(f"`{same}`", same)]))
            return
        row_at = len(rows)
        rows.append(None)
        start = len(self.sections)
        inner = path
        if kind in ("object", "variants"):
            self.element(path, node, rows)
        elif kind == "map":
            inner = self.map_child(path, node, rows)
        elif kind == "array":
            items, _ = self.normalize(node.get("items", {}))
            inner = f"{path}[]"
            self.element(inner, items, rows)
        # a container's row links to the tables of its own keys
        see = [(sec.short, sec.title) for sec in self.sections[start:] if sec.path == inner]
        rows[row_at] = self.row(path, node, nullable, required, see=see or None)

    def element(self, path: str, node: dict, rows: list) -> None:
        """The value schema of a map or an array: an object or union gets its section(s), a leaf a row here."""
        kind = self.kind(node)
        if kind == "object":
            self.section(f"`{path}`", path, node)
        elif kind == "variants":
            self.variant_sections(path, node)
        elif kind == "map":
            self.map_child(path, node, rows)
        else:
            node, nullable = self.normalize(node)
            rows.append(self.row(path, node, nullable, False))

    def map_child(self, path: str, node: dict, rows: list) -> str:
        """Walks the values of a map at `path`; returns their key path (`models.<name>`)."""
        value, _ = self.normalize(node["additionalProperties"])
        inner = f"{path}.{MAP_KEY.get(path, '<name>')}"
        self.element(inner, value, rows)
        return inner

    def variant_sections(self, path: str, node: dict) -> None:
        for key, value, sub in self.variants(node):
            sub, _ = self.normalize(sub)
            # the discriminating key holds this variant's value only (an if/then base may list them all)
            props = dict(sub["properties"])
            disc = {k: v for k, v in self.resolve(props.get(key, {})).items() if k not in ("enum", "default")}
            props[key] = {**disc, "const": value}
            self.section(f"`{path}` ({key}: `{value}`)", path, {**sub, "properties": props}, short=f"{key}: `{value}`")

    def row(self, path: str, node: dict, nullable: bool, required: bool, see: list | None = None) -> tuple:
        """(key, type, default, description); `see`: [(title, section title)] of the tables holding its keys."""
        if isinstance(node.get("default"), dict) and node["default"] and see and len(see) == 1:
            # an object's default is its keys' defaults, which its own table lists key by key: a link, not a blob
            default = f"see [{see[0][0]}](#{anchor(see[0][1])})"
        elif "default" in node:
            default = code(json.dumps(node["default"], ensure_ascii=False))
        else:
            default = "required" if required else "&mdash;"
        description = text(node.get("description", ""))
        if see:
            if description and description[-1] not in ".)":
                description += "."
            links = ", ".join(f"[{title}](#{anchor(target)})" for title, target in see)
            description = (description + " " if description else "") + f"Keys: {links}."
        return code(path), describe(node, nullable, self), default, description

    def markdown(self) -> str:
        out = [DEFAULTS_NOTE, ""]
        for sec in self.walk():
            out += [f"### {sec.title} {{#{anchor(sec.title)}}}", ""]
            if sec.description:
                out += [sec.description, ""]
            out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
            out += ["| " + " | ".join(cell.replace("\n", " ") for cell in row) + " |" for row in sec.rows]
            out.append("")
        return "\n".join(out)


def describe(node: dict, nullable: bool, walker: SchemaWalker) -> str:
    """A short type: `integer ≥ 1`, `one of a, b`, `list of string`, `integer or null` ..."""
    value = const_of(node)
    if value is not None:
        out = code(json.dumps(value))
    elif "enum" in node:
        out = "one of " + ", ".join(code(json.dumps(v) if not isinstance(v, str) else v) for v in node["enum"])
    elif walker.variants(node):
        out = "object (one of the tables below)"
    elif node.get("anyOf") or node.get("oneOf"):
        members = [walker.normalize(m)[0] for m in node.get("anyOf") or node.get("oneOf")]
        out = " or ".join(describe(m, False, walker) for m in members)
        if node.get("type") and not any(m.get("type") for m in members):
            out = f"{node['type']}: {out}"
    else:
        types = node.get("type")
        if isinstance(types, list):
            out = " or ".join(types)
        elif types == "array" or "items" in node:
            items, items_nullable = walker.normalize(node.get("items", {}))
            if not items:
                inner = ""
            elif walker.kind(items) in ("object", "variants"):
                inner = "objects"
            else:
                inner = describe(items, items_nullable, walker)
                inner = f"({inner})" if " " in inner else inner
            out = f"list of {inner}" if inner else "list"
        elif types == "object" or node.get("properties") or isinstance(node.get("additionalProperties"), dict):
            out = "mapping" if walker.kind(node) == "map" else "object"
        elif types:
            out = types
        elif "pattern" in node:
            out = ""
        else:
            out = "any"
    limits = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if isinstance(node.get(key), (int, float)) and not isinstance(node.get(key), bool):
            limits.append(f"{sign} {number(node[key])}")
    for key, what in (("minItems", "items"), ("minLength", "characters"), ("minProperties", "entries")):
        if node.get(key):
            limits.append(f"≥ {node[key]} {what}")
    if "pattern" in node:
        limits.append("matching " + code(node["pattern"]))
    if limits:
        out = f"{out}{', ' if out.startswith(('list', 'mapping')) else ' '}{limits[0]}".strip() + "".join(f", {limit}" for limit in limits[1:])
    return f"{out} or null" if nullable else out


def number(value: int | float) -> str:
    """A bound as written: an integer in full (2**32 - 1 is 4294967295, not 4.29497e+09), a fraction short."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):  # 1e30 stays 1e+30
        return str(int(value))
    return f"{value:g}"


def code(value: str) -> str:
    """A Markdown code span that survives a table cell."""
    value = str(value).replace("|", "\\|")
    fence = "``" if "`" in value else "`"
    return f"{fence}{value}{fence}" if fence == "`" else f"{fence} {value} {fence}"


def text(value: str) -> str:
    """Schema prose for a table cell: one line, HTML-escaped outside code spans, pipes escaped."""
    value = " ".join(str(value).split())
    parts = re.split(r"(`[^`]*`)", value)
    return "".join(p.replace("|", "\\|") if p.startswith("`") else html.escape(p, quote=False).replace("|", "\\|")
                   for p in parts)


def anchor(title: str) -> str:
    return "key-" + (re.sub(r"[^a-z0-9]+", "-", re.sub(r"[`<>]", "", title).lower()).strip("-") or "top")


def config_reference(schema: dict) -> str:
    return SchemaWalker(schema).markdown()


def key_paths(schema: dict) -> list[str]:
    """Every key path the reference lists (for tests and for looking a key up)."""
    walker = SchemaWalker(schema)
    return [row[0].strip("`") for sec in walker.walk() for row in sec.rows]


# ---------------------------------------------------------------- benchmarks

def benchmark_records(folder: Path) -> list[dict]:
    records = []
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        record["_file"] = path.name
        records.append(record)
    order = {name: i for i, name in enumerate(BENCHMARK_SECTIONS)}
    records.sort(key=lambda r: (r["title"], r["_file"]))
    records.sort(key=record_time, reverse=True)  # the newest first within a benchmark
    return sorted(records, key=lambda r: (order.get(r["benchmark"], len(order)), r["benchmark"]))


def record_time(record: dict) -> tuple[str, str]:
    """(day, finer time) to order records by: records of one day by their commit's time where they name one."""
    return str(record["started_utc"])[:10], str(record.get("commit_utc") or record["started_utc"])


def record_anchor(record: dict) -> str:
    return "record-" + re.sub(r"[^a-z0-9]+", "-", record["_file"].removesuffix(".json").lower()).strip("-")


def commits_of(record: dict) -> list[str]:
    commit = record.get("commit")
    return [] if not commit else [commit] if isinstance(commit, str) else list(commit)


def as_of(record: dict) -> str:
    """When a record's study files were as it measured them: its (newest) commit, else its date."""
    commits = commits_of(record)
    return commits[-1] if commits else str(record["started_utc"])[:10]


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def ran_text(study: dict, names: bool = True) -> str:
    """'3 runs (kgram_mlp, lstm, transformer) x 1 seed (1337), 600 steps each: 3 trainings; data `tinystories`
    (10,000 stories)' from a study file's summary (`runs`, `seeds`, `max_steps`, `data`); without the names of
    the runs and seeds where `names` is false."""
    runs, seeds = study["runs"], study["seeds"]
    data = ", ".join(code(d["kind"]) + (f" ({d['train_stories']:,} stories)" if d.get("train_stories") else "")
                     for d in study.get("data", []))
    run_names = f" ({', '.join(runs)})" if names else ""
    seed_names = f" ({', '.join(map(str, seeds))})" if names else ""
    return (f"{plural(len(runs), 'run')}{run_names} x {plural(len(seeds), 'seed')}{seed_names}, "
            f"{study['max_steps']:,} steps each: {plural(len(runs) * len(seeds), 'training')}"
            + (f"; data {data}" if data else ""))


def study_files(record: dict) -> list[str]:
    """The study files a `study` record ran: its `configs`, else the config/*.yaml its table, notes and
    description name."""
    if record.get("configs"):
        return list(record["configs"])
    blob = json.dumps([record.get(k) for k in ("table", "notes", "description")])
    return sorted(set(re.findall(r"config/[\w.-]+\.yaml", blob)))


def today_study(path: str) -> dict | None:
    """A study file of this checkout as `ran_text` reads it, or None where it is gone or does not load."""
    if not (ROOT / path).is_file():
        return None
    checkout_first()
    try:
        from picollm.config import load_study
        return load_study([str(ROOT / path)]).outline()
    except Exception:  # noqa: BLE001 - a study file that no longer loads is reported as such
        return None


def readme_study_run(readme: Path = ROOT / "README.md") -> dict | None:
    """The run the README's "The default study" section quotes: {config, date, commit}, or None."""
    if not readme.is_file():
        return None
    parts = re.split(r"^## +", readme.read_text(), flags=re.M)
    section = next((p for p in parts if p.startswith(README_STUDY_SECTION)), None)
    if section is None:
        return None
    section = " ".join(section.split())
    run = re.search(r"\brun on (\d{4}-\d{2}-\d{2})", section)
    if not run:
        return None
    after = section[run.end():run.end() + 500]
    config = re.search(r"--configfile\s+(config/[\w.-]+\.yaml)", after)
    commit = re.search(r"\bcommit ([0-9a-f]{7,40})\b", after)
    if not config:
        return None
    return {"config": config.group(1), "date": run.group(1), "commit": commit.group(1) if commit else None}


def machine_short(machine) -> str:
    if isinstance(machine, list):
        return "; ".join(machine_short(m) for m in machine)
    return machine.get("cpu_model", "unknown CPU")


README_SECTION = f"the README's section *{README_STUDY_SECTION}*"


def study_history(records: list[dict], readme_run: dict | None, all_records: list[dict]) -> tuple[list[str], dict]:
    """The `study` section's opening: per study file, what today's file runs and a table of the runs of it,
    newest first (the README's run, then each record: what it ran, the file as of its commit, and whether a newer
    run supersedes it); and {record file: [lines]} naming, in each record, the numbers that are not current."""
    by_file: dict[str, list[dict]] = {}
    for record in records:
        for path in study_files(record):
            by_file.setdefault(path, []).append(record)
    if not by_file:
        return [], {}
    notes: dict[str, list[str]] = {}
    quoted = next((r for r in records if is_readme_run(r, readme_run)), None)
    out = ["A study record measured its study files as they were at its commit (or on its date), and they may "
           "have changed since: so each record says what it ran, read from its study file at that commit. Below, each "
           "study file's runs are listed newest first, and a run that a newer one replaces is marked superseded. "
           f"The current result and wall time of the default study are in {README_SECTION}"
           + (f" (its run of `{readme_run['config']}` on {readme_run['date']}, "
              + (f"generated from [its record](#{record_anchor(quoted)}))" if quoted else "which has no study record here)")
              if readme_run else "") + ".", ""]
    for path in sorted(by_file, key=lambda p: (readme_run is None or p != readme_run["config"], p)):
        runs = sorted(by_file[path], key=record_time, reverse=True)
        readme_newer = readme_run is not None and readme_run["config"] == path and quoted is None and \
            readme_run["date"] >= str(runs[0]["started_utc"])[:10]
        today = today_study(path)
        out += [f"**`{path}`**" + (f", today: {ran_text(today, names=False)}." if today else
                                   ": no longer in this checkout."), "",
                "| run | what it ran | status |", "| --- | --- | --- |"]
        if readme_newer:
            out.append(readme_row(path, readme_run, all_records))
        for i, record in enumerate(runs):
            ran = (record.get("configs") or {}).get(path)
            status, note = record_status(path, runs, i, ran, today, readme_run if readme_newer else None, quoted)
            if note:
                notes.setdefault(record["_file"], []).append(f"`{path}`: {note}.")
            label = ", ".join([str(record["started_utc"])[:10], machine_short(record["machine"]),
                               *commits_of(record)])
            out.append(f"| [{cell(label)}](#{record_anchor(record)}) | "
                       f"{cell(ran_text(ran, names=False)) if ran else 'not recorded'} | {status} |")
        out.append("")
    return out, notes


def is_readme_run(record: dict, readme_run: dict | None) -> bool:
    """Whether `record` is the run README.md quotes (written by python -m benchmarks.readme_study record)."""
    return bool(readme_run and record.get("readme") and readme_run["config"] in study_files(record)
                and str(record["started_utc"])[:10] == readme_run["date"] and record.get("commit") == readme_run["commit"])


def readme_row(path: str, readme_run: dict, all_records: list[dict]) -> str:
    """The history table's row of the README's run of `path`, with the other records that use that run."""
    def names_run(r: dict) -> bool:
        text = json.dumps([r.get("command"), r.get("description")])
        return r["benchmark"] != "study" and bool(readme_run["commit"]) and path in text and readme_run["commit"] in text
    also = "".join(f"; the [{r['benchmark']} record of {str(r['started_utc'])[:10]}](#{record_anchor(r)}) uses this run"
                   for r in all_records if names_run(r))
    commit = f", commit {readme_run['commit']}" if readme_run["commit"] else ""
    return f"| {readme_run['date']}{commit}: the README's run | see {README_SECTION} | **current**; no study record{also} |"


def record_status(path: str, runs: list[dict], i: int, ran: dict | None, today: dict | None,
                  newer_readme_run: dict | None, quoted: dict | None = None) -> tuple[str, str | None]:
    """(status cell, note for the record or None when it is current) of runs[i], the records of `path` newest
    first; newer_readme_run: the README's run where it is newer than every record; quoted: the record of the run
    the README quotes, if there is one."""
    newest = runs[0]
    if quoted is not None and runs[i] is quoted and i == 0:
        return f"**current**: the run {README_SECTION} quotes, its table generated from this record", None
    if newer_readme_run and i == 0:
        return ("superseded by the README's run",
                f"superseded by the run of {newer_readme_run['date']} that {README_SECTION} quotes")
    if i > 0:
        return (f"superseded by the {machine_short(newest['machine'])} record at {as_of(newest)}",
                f"superseded by the {str(newest['started_utc'])[:10]} {machine_short(newest['machine'])} "
                f"record at {as_of(newest)} ([{newest['_file']}](#{record_anchor(newest)}))")
    if today is None:
        note = f"the newest record, but `{path}` is no longer in this checkout"
        return note, note
    keys = ("runs", "seeds", "max_steps")
    if ran and {k: today[k] for k in keys} != {k: ran[k] for k in keys}:
        return ("the newest record, but the file has changed since",
                f"the newest record of this file, but the file has changed since: today {ran_text(today, names=False)}")
    return "**the newest record**" + ("; today's file has the same runs, seeds and steps" if ran else ""), None


def machine_text(machine) -> str:
    """One line per machine: CPU, logical CPUs, the bf16-relevant flags, torch, threads."""
    if isinstance(machine, list):
        return "; ".join(machine_text(m) for m in machine)
    parts = [machine.get("cpu_model", "unknown CPU")]
    details = []
    if machine.get("logical_cpus"):
        details.append(f"{machine['logical_cpus']} logical CPUs")
    if "cpu_flags" in machine:
        flags = machine["cpu_flags"]
        details.append(", ".join(code(f) for f in flags) if flags else "no AVX-512")
        if "avx512_bf16" not in flags and "amx_bf16" not in flags:
            details.append("no native bf16")
    elif machine.get("cpu_capability"):
        details.append(f"{machine['cpu_capability']}; bf16 flags not recorded")
    else:
        details.append("CPU flags not recorded")
    if machine.get("torch"):
        details.append(f"torch {machine['torch']}")
    if machine.get("torch_threads"):
        details.append(f"{machine['torch_threads']} torch threads")
    if machine.get("device") and machine["device"] != "cpu":
        details.append(machine["device"])
    if machine.get("note"):
        details.append(machine["note"])
    text_ = parts[0] + (f" ({', '.join(details)})" if details else "")
    if machine.get("used_for"):
        text_ += f": {machine['used_for']}"
    return text_


def cell(value) -> str:
    if isinstance(value, float):
        value = f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    elif isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:,}"
    elif value is None:
        value = ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def dated_paths(value, record: dict):
    """A study record's text with each study file it names dated: `config/offline.yaml as of 417ce2a` (the
    record measured the file as it was then, not as it is now); other values as they are."""
    if record["benchmark"] != "study" or not isinstance(value, str):
        return value
    when = as_of(record)
    return re.sub(r"(config/[\w.-]+\.yaml)(?!\w| as of)", rf"\1 as of {when}", value)


def record_markdown(record: dict, superseded: list[str] | None = None, folded: bool = False) -> list[str]:
    """A record's section; `superseded`: one line per study file whose numbers here are not current (a newer run
    supersedes them, or the file has changed since); `folded`: its body behind a line that opens it (a record a
    newer one replaces, kept for its history)."""
    out = [f"### {record['title']} {{#{record_anchor(record)}}}", ""]
    if superseded:
        title = "Superseded" if all(": superseded" in line for line in superseded) else "Not current"
        out += [f'!!! note "{title}"', "", *[f"    - {line}" for line in superseded], ""]
    body = record_body(record)
    if not folded:
        return out + body
    summary = f"An earlier record ({str(record['started_utc'])[:10]}, {machine_short(record['machine'])}): open to read it"
    return out + ['<details markdown="1">', f"<summary>{html.escape(summary)}</summary>", "", *body, "</details>", ""]


def record_body(record: dict) -> list[str]:
    """What a record measured, where and how: its date and machine, command, table, targets and notes."""
    date = str(record["started_utc"])[:10]
    if record.get("ended_utc"):
        date += f" to {str(record['ended_utc'])[:10]}"
    out = []
    line = f"Measured **{date}** on {machine_text(record['machine'])}"
    peak = record.get("peak_matmul") or {}
    if peak.get("peak_gflops"):
        line += f"; peak fp32 matmul {cell(peak['peak_gflops'])} GFLOP/s"
        if peak.get("method"):
            line += f" ({peak['method']})"
    if commits_of(record):
        line += f"; commit {', '.join(commits_of(record))}"
    out += [line + ".", ""]
    command = record.get("command") or f"python -m benchmarks --only {record['benchmark']}"
    source = f"; moved from the {record['source']}" if record.get("source") else ""
    out += [f"Command: `{command}` (record `docs/benchmarks/{record['_file']}`{source}).", ""]
    if record.get("configs"):
        commits = commits_of(record)
        at = f"commit{'s' if len(commits) > 1 else ''} {' and '.join(commits)}" if commits else "that date"
        out += [f"What it ran, each study file as it was at {at}:", ""]
        out += [f"- `{path}`: {ran_text(study)}" for path, study in record["configs"].items()] + [""]
    if record.get("quick"):
        out += ["!!! warning", "    Measured with `--quick`: tiny sizes, the numbers mean nothing.", ""]
    if record.get("description"):
        out += [dated_paths(record["description"], record), ""]
    table = record.get("table") or {}
    if table.get("rows"):
        out.append("| " + " | ".join(cell(c) for c in table["columns"]) + " |")
        out.append("| " + " | ".join("---" for _ in table["columns"]) + " |")
        out += ["| " + " | ".join(cell(dated_paths(c, record)) for c in row) + " |" for row in table["rows"]]
        out.append("")
    for target in record.get("targets", []):
        shown = target.get("display") or cell(target.get("value"))
        out.append(f"- Target: {target['target']}: **{shown}**, {'met' if target['met'] else 'missed'}.")
    for note in record.get("notes", []):  # plain text: "<config/config.yaml with ...>" is no HTML tag
        out.append(f"- {text(dated_paths(note, record))}")
    if record.get("error"):
        out += ["", f"Failed: `{record['error'].splitlines()[0]}`"]
    out.append("")
    return out


def table_markdown(table: dict) -> list[str]:
    if not table.get("rows"):
        return []
    return ["| " + " | ".join(cell(c) for c in table["columns"]) + " |",
            "| " + " | ".join("---" for _ in table["columns"]) + " |",
            *["| " + " | ".join(cell(c) for c in row) + " |" for row in table["rows"]], ""]


def one_benchmark_markdown(folder: Path, name: str) -> str:
    """`<!-- benchmark:NAME -->`: the newest record of one benchmark, in the page that explains it (and so not
    on the benchmarks page), with any further tables the record holds (e.g. the scaling study's `repeats`), then
    each earlier record, marked as superseded by it."""
    records = [r for r in benchmark_records(folder) if r["benchmark"] == name]
    if not records:
        return f"No record of the `{name}` benchmark in `docs/benchmarks/`."
    record = records[0]
    out = record_markdown(record)[2:]  # the page's own heading introduces it
    if record.get("repeats"):
        out += ["Where each run starts to repeat its training text:", "", *table_markdown(record["repeats"])]
    for older in records[1:]:
        summary = f"An earlier record ({str(older['started_utc'])[:10]}, {machine_short(older['machine'])}), " \
                  f"superseded by the {str(record['started_utc'])[:10]} one above: open to read it"
        out += ["", '<details markdown="1">', f"<summary>{html.escape(summary)}</summary>", "",
                *record_body(older), "</details>"]
    return "\n".join(out)


def _ratio(text) -> float | None:
    """1.48 from a table cell such as '1.48x' or '10.1x recompute, 1.62x HF' (the last 'x HF' figure)."""
    match = re.findall(r"([0-9.]+)x(?: HF)?", str(text))
    return float(match[-1]) if match else None


def train_vs_hf(record: dict):
    if record.get("ratio_vs_hf") is not None:
        return record["ratio_vs_hf"]
    rows = (record.get("table") or {}).get("rows") or []
    return _ratio(rows[0][-1]) if rows else None


def generation_vs_hf(record: dict):
    if (record.get("ratios") or {}).get("cached_vs_hf") is not None:
        return record["ratios"]["cached_vs_hf"]
    rows = (record.get("table") or {}).get("rows") or []
    return _ratio(rows[0][-1]) if rows and "HF" in str(rows[0][-1]) else None


def speed_by_machine(records: list[dict]) -> list[str]:
    """One row per machine type (CPU model, flags, threads, torch): the newest training and generation records'
    speed against Hugging Face there, with the machine's caches and matmul rates. A ratio measured on one machine
    does not carry to the next, so each machine keeps its own dated row."""
    machines: dict[tuple, dict] = {}
    for record in records:
        if record["benchmark"] not in ("train", "generation") or record.get("quick") \
                or not isinstance(record.get("machine"), dict):
            continue
        m = record["machine"]
        key = (m.get("cpu_model"), tuple(m.get("cpu_flags") or ()), m.get("torch_threads"), m.get("torch"))
        newest = machines.setdefault(key, {})
        if record["benchmark"] not in newest or str(record["started_utc"]) > str(newest[record["benchmark"]]["started_utc"]):
            newest[record["benchmark"]] = record
    if not machines:
        return []
    out = ["## Speed against Hugging Face, by machine {#bench-by-machine}", "",
           "The newest `train` and `generation` records of each machine type: tokens/s of a training step and "
           "of greedy generation (batch 1, fp32) over Hugging Face's, measured side by side in one process; the "
           "fused head + loss over plain autograd at the training step's rows. Blank: not measured there.", "",
           "| measured | machine | caches | fp32 / oneDNN fp32 / bf16 matmul GFLOP/s | training vs HF | "
           "head + loss fused vs plain | generation vs HF |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for newest in machines.values():
        train, gen = newest.get("train"), newest.get("generation")
        some = train or gen
        peak = some.get("peak_matmul") or {}
        rates = " / ".join(cell(x) if x else "" for x in (
            max((peak.get("gflops_by_size") or {}).values(), default=peak.get("peak_gflops")),
            peak.get("onednn_fp32_gflops"), peak.get("bf16_gflops")))
        caches = ", ".join(f"{k} {v}" for k, v in (some["machine"].get("cpu_caches") or {}).items())
        dates = sorted({str(r["started_utc"])[:10] for r in (train, gen) if r})
        ratios = [train_vs_hf(train) if train else None,
                  (train.get("head_loss") or {}).get("fused_vs_plain") if train else None,
                  generation_vs_hf(gen) if gen else None]
        out.append(f"| {', '.join(dates)} | {cell(machine_text(some['machine']))} | {cell(caches)} | {rates} | "
                   + " | ".join(f"{x:.2f}x" if x else "" for x in ratios) + " |")
    return out + [""]


def benchmarks_markdown(folder: Path, readme: Path = ROOT / "README.md") -> str:
    records = benchmark_records(folder)
    out = speed_by_machine(records)
    history, superseded = study_history([r for r in records if r["benchmark"] == "study"],
                                        readme_study_run(readme), records)
    current, shown = None, set()
    for record in records:
        if record["benchmark"] in ELSEWHERE:
            continue
        if record["benchmark"] != current:
            current = record["benchmark"]
            heading = BENCHMARK_SECTIONS.get(current, current)
            out += [f"## {heading} (`{current}`) {{#bench-{current}}}", ""]
            if current == "study":
                out += history
        # a record is folded where a newer one of its benchmark on the same machine type (a study: of its study
        # file) replaces it; the newest of each stays open
        notes = superseded.get(record["_file"])
        machine = (current, machine_text(record["machine"]))
        folded = bool(notes) and all(": superseded" in line for line in notes) if current == "study" \
            else machine in shown
        shown.add(machine)
        out += record_markdown(record, notes, folded=folded)
    return "\n".join(out) if out else "No benchmark records in `docs/benchmarks/`."
