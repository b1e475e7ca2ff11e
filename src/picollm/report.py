"""results/<experiment>/report.html: the whole study in one self-contained file.

Every figure (PNG embedded as base64) and table (CSV as an HTML table, Markdown as text) with its caption,
a per-model section (parameters, tokens seen, wall time, tokens/s, device, losses), the validated config as
YAML, the package versions and the run's provenance (git commit, seed, sha256 of the raw data, tokenizer).

Captions come from workflow/report/*.rst, the same files `snakemake --report` uses: their Jinja
expressions `{{ snakemake.config["key"]["sub"] }}` are filled from the config, any other Jinja is dropped,
and ``literals`` become <code>. Each caption is followed by a line naming the experiment, the training
tokens, the config file and the file shown, so a figure cannot be mistaken for one from another run.
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pandas as pd
import yaml

from picollm import provenance as prov
from picollm.io import write_text
from picollm.tables import train_tokens_note

JINJA_CONFIG = re.compile(r"\{\{\s*snakemake\.config((?:\[\s*(['\"])[^'\"]+\2\s*\])+)\s*\}\}")
JINJA_OTHER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.1em;margin-bottom:.3em}
.lead{color:#555;margin-top:0}nav a{margin-right:1em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0 2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption,.caption{font-size:.92em;color:#333;max-width:70em}.source{color:#777;font-size:.85em}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.82em}code{background:#f3f3f3;padding:0 .2em}
.scroll{max-height:32em;overflow:auto;border:1px solid #eee}.wide{overflow-x:auto}details{margin:.4em 0}
"""


def _lookup(config: dict, keys: list[str]):
    value = config
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return ""
        value = value[key]
    return value


def caption_text(rst: str, config: dict) -> str:
    """A caption .rst with its Jinja filled from `config` (plain RST text)."""
    def fill(match):
        keys = re.findall(r"\[\s*['\"]([^'\"]+)['\"]\s*\]", match.group(1))
        return str(_lookup(config, keys))
    return JINJA_OTHER.sub("", JINJA_CONFIG.sub(fill, rst)).strip()


def caption_html(rst: str, config: dict) -> str:
    """The caption as HTML paragraphs (``literal`` -> <code>, *emphasis* -> <em>)."""
    out = []
    for para in re.split(r"\n\s*\n", caption_text(rst, config)):
        text = html.escape(" ".join(para.split()), quote=False)
        text = re.sub(r"``(.+?)``", r"<code>\1</code>", text)
        text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", text)
        if text:
            out.append(f"<p>{text}</p>")
    return "\n".join(out)


def _anchor(path) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(path)).strip("-").lower()


def _fmt(value, column: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, bool) or "seed" in column:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, v in zip(frame.columns, row):
            v = v.item() if hasattr(v, "item") else v
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f"<td{' class=num' if num else ''}>{html.escape(_fmt(v, str(column)))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class=wide><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _dl(items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f"<table>{rows}</table>"


def _rel(path, root) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _source_line(path, root, experiment, tokens_note, config_files) -> str:
    configs = ", ".join(config_files) or "the default config"
    return (f"<p class=source>Experiment <b>{html.escape(experiment)}</b> · {html.escape(tokens_note)} · config: "
            f"<code>{html.escape(configs)}</code> · file: <code>{html.escape(_rel(path, root))}</code></p>")


def figure_section(path, caption_rst: str, config: dict, root, tokens_note, config_files) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    name = Path(path).name
    return (f'<figure id="{_anchor(_rel(path, root))}"><h3>{html.escape(name)}</h3>'
            f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption_html(caption_rst, config)}"
            f"{_source_line(path, root, config['experiment'], tokens_note, config_files)}</figcaption></figure>")


def table_section(path, caption_rst: str, config: dict, root, tokens_note, config_files) -> str:
    path = Path(path)
    if path.suffix == ".csv":
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        if "token_ids" in frame:
            frame = frame.drop(columns="token_ids")
        body = f"<div class=scroll>{html_table(frame)}</div>"
    else:
        body = f"<pre>{html.escape(path.read_text(encoding='utf-8'))}</pre>"
    return (f'<section id="{_anchor(_rel(path, root))}"><h3>{html.escape(path.name)}</h3>'
            f"<div class=caption>{caption_html(caption_rst, config)}"
            f"{_source_line(path, root, config['experiment'], tokens_note, config_files)}</div>{body}</section>")


def models_frame(summaries: list[dict], evals: dict) -> pd.DataFrame:
    rows = []
    for s in summaries:
        ev = evals.get(s["model"], {})
        rows.append({"model": s["model"], "type": s.get("type"), "params": s.get("params"),
                     "params_non_embedding": s.get("params_non_embedding"), "tokens_seen": s.get("tokens_seen"),
                     "steps": s.get("steps"), "wall_s": s.get("wall_s"), "tokens_per_s": s.get("tokens_per_s"),
                     "device": s.get("device"), "final_train_loss": s.get("final_train_loss"),
                     "final_val_loss (training subset)": s.get("final_val_loss"),
                     "val_loss (whole split)": ev.get("val_loss"), "perplexity": ev.get("perplexity"),
                     "bits_per_byte": ev.get("bpb")})
    return pd.DataFrame(rows)


def provenance_section(records: dict, meta: dict, config: dict, summaries: list[dict]) -> str:
    """Git commit, seed, tokenizer, raw data hashes, versions, and every job's record (collapsed)."""
    commits = {}
    for path, rec in records.items():
        git = rec.get("git") or {}
        key = (git.get("commit"), git.get("dirty"))
        commits.setdefault(key, []).append(rec.get("stage", path))
    now = prov.git_state()

    def commit_text(commit, dirty):
        if not commit:
            return "unknown (not a git checkout when it ran)"
        return f"<code>{html.escape(commit)}</code>" + (" (uncommitted changes in src/ or workflow/)" if dirty else "")

    commit_rows = "".join(f"<li>{commit_text(c, d)}: {html.escape(', '.join(sorted(set(stages))))}</li>"
                          for (c, d), stages in commits.items())
    seeds = sorted({str(r.get("seed")) for r in records.values() if r.get("seed") is not None})
    devices = sorted({str(s.get("device")) for s in summaries})
    items = [("project git commit (per stage)", f"<ul>{commit_rows}</ul>" if commit_rows else "–"),
             ("git commit when the report was built", commit_text(now.get("commit"), now.get("dirty"))),
             ("seed", html.escape(f"{config.get('seed')} (config); recorded by the jobs: {', '.join(seeds) or '–'}")),
             ("tokenizer", html.escape(f"{meta.get('tokenizer')} (vocabulary {meta.get('vocab_size')}, "
                                       f"end-of-text id {meta.get('eot_token')})")),
             ("tokens", html.escape(", ".join(f"{s}: {v['tokens']:,}" for s, v in meta.get("splits", {}).items()))),
             ("training device", html.escape(", ".join(devices)))]
    raw = pd.DataFrame([{"file": f"data/raw/{k}.txt", "bytes": meta.get("raw_bytes", {}).get(k), "sha256": v}
                        for k, v in meta.get("raw_sha256", {}).items()])
    versions_now = prov.versions()
    train_versions = next((r.get("versions") for r in records.values() if r.get("stage") == "train"), None) or {}
    vers = pd.DataFrame([{"package": k, "when the report was built": v, "when the models were trained":
                          train_versions.get(k, "–")} for k, v in versions_now.items()])
    jobs = "".join(
        f"<details><summary><code>{html.escape(path)}</code> — {html.escape(str(rec.get('stage')))}, "
        f"{html.escape(str(rec.get('created_utc')))}</summary>"
        f"<pre>{html.escape(json.dumps(rec, indent=2, default=str))}</pre></details>" for path, rec in records.items())
    platform = next((str(r.get("platform")) for r in records.values()), "–")
    return (_dl(items) + "<h3>Raw data (sha256)</h3>" + html_table(raw) + "<h3>Package versions</h3>"
            + html_table(vers) + f"<p>Platform: <code>{html.escape(platform)}</code></p>"
            "<h3>Provenance record of every job</h3>" + jobs)


def build(out, *, config: dict, config_files=(), figures: dict, tables: dict, summaries=(), evals=(),
          meta=None, provenance_files=(), root=".") -> str:
    """Write the report. figures/tables: {output path: caption .rst path}. Returns the HTML."""
    experiment = config["experiment"]
    summary_list = [json.loads(Path(p).read_text()) for p in summaries]
    eval_map = {e["model"]: e for e in (json.loads(Path(p).read_text()) for p in evals)}
    meta_dict = json.loads(Path(meta).read_text()) if meta else {}
    records = {_rel(p, root): json.loads(Path(p).read_text()) for p in provenance_files}
    if meta_dict.get("provenance") and not any(r.get("stage") == "tokenize" for r in records.values()):
        records["data/tokens/meta.json"] = meta_dict["provenance"]
    tokens_note = train_tokens_note({s["model"]: s.get("tokens_seen") for s in summary_list})
    config_files = [str(c) for c in config_files]

    def read(caption):
        return Path(caption).read_text(encoding="utf-8") if caption else ""

    common = dict(config=config, root=root, tokens_note=tokens_note, config_files=config_files)
    fig_html = "\n".join(figure_section(p, read(c), **common) for p, c in figures.items())
    tab_html = "\n".join(table_section(p, read(c), **common) for p, c in tables.items())
    toc = " ".join(f'<a href="#{_anchor(_rel(p, root))}">{html.escape(Path(p).name)}</a>'
                   for p in [*figures, *tables])
    per_model = "".join(
        f"<details><summary>{html.escape(s['model'])}: models/{html.escape(s['model'])}/summary.json</summary>"
        f"<pre>{html.escape(json.dumps({k: v for k, v in s.items() if k != 'provenance'}, indent=2))}</pre></details>"
        for s in summary_list)
    commit = next((r.get("git", {}).get("commit") for r in records.values() if r.get("stage") == "train"), None)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pico-llm report — {html.escape(experiment)}</title>
<style>{STYLE}</style></head><body>
<h1>pico-llm report — experiment <code>{html.escape(experiment)}</code></h1>
<p class=lead>{html.escape(tokens_note)} · {len(summary_list)} models
 · tokenizer {html.escape(str(meta_dict.get('tokenizer')))} · seed {html.escape(str(config.get('seed')))}
 · commit <code>{html.escape(str(commit or 'unknown')[:12])}</code>
 · config <code>{html.escape(', '.join(config_files) or 'default')}</code></p>
<nav><a href="#models">Models</a><a href="#figures">Figures</a><a href="#tables">Tables</a>
<a href="#provenance">Provenance</a><a href="#config">Config</a></nav>
<p class=source>Contents: {toc}</p>
<h2 id="models">Models</h2>
<p class=caption>One row per model of experiment <b>{html.escape(experiment)}</b>: parameter counts
(non-embedding excludes token and learned position tables), training tokens, wall time and throughput from
<code>models/&lt;model&gt;/summary.json</code>; the last training-time validation loss (a fixed subset of
windows) and the whole-split validation loss, perplexity and bits per byte from
<code>eval/&lt;model&gt;.json</code>.</p>
{html_table(models_frame(summary_list, eval_map))}
{per_model}
<h2 id="figures">Figures</h2>
{fig_html}
<h2 id="tables">Tables</h2>
{tab_html}
<h2 id="provenance">Provenance</h2>
{provenance_section(records, meta_dict, config, summary_list)}
<h2 id="config">Config</h2>
<p class=caption>The validated config of experiment <b>{html.escape(experiment)}</b> (every default filled in), from
<code>{html.escape(', '.join(config_files) or 'the default config')}</code>.</p>
<pre>{html.escape(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))}</pre>
</body></html>
"""
    write_text(out, page)
    return page
