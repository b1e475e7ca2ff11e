"""One model, both ways (docs/lm-eval.md): a GPT-2-token Llama scored by the evaluate stage with `scoring: windows`
and `scoring: per_document`, and by EleutherAI's lm-evaluation-harness (`lm_eval`) with three --model_args.

A study of one rope + swiglu Transformer on the local TinyStories heads (../shared/tinystories; its validation text
the first lines of the valid head, cut per line) runs through Snakemake to the model's Hugging Face export and the
harness task (`snakemake ... results/<experiment>/hf/<run>/seed<k> results/<experiment>/hf/lm_eval_task`); the
workflow's evaluate stage (`python -m picollm evaluate`, its config as the workflow gives it) scores the trained
model both ways, and `lm_eval` in its own environment (PICOLLM_LMEVAL_VENV, else .lmeval-venv) scores the export
on the task. The target is tests/test_lm_eval.py's: the harness with logits_cache=False,add_bos_token=False within
1e-4 (relative) of per_document.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.common import REPO, Sizes, child_environ
from benchmarks.study import TINYSTORIES_TRAIN, TINYSTORIES_VALID, _env

TITLE = "One model, both ways: evaluate's two scorings and lm_eval's bits per byte"
AGREEMENT = 1e-4  # relative, on bits per byte: float32 kernels of two libraries differ by ~1e-7
REQUIREMENTS = REPO / "tests" / "lm-eval-requirements.txt"
EXPERIMENT, RUN, SEED = "lmeval", "llama", 1337
MODEL = {"type": "transformer", "d_model": 64, "n_heads": 4, "n_layers": 2, "pos_encoding": "rope", "mlp": "swiglu"}
AGREED = "logits_cache=False,add_bos_token=False"  # the arguments docs/lm-eval.md gives the harness
# lm_eval's --model_args after pretrained=<export>, each with what it changes (docs/lm-eval.md says why)
VARIANTS = {AGREED: "", "add_bos_token=False": " (default logits cache)",
            "logits_cache=False": " (two end-of-text tokens before each document)"}
SCORINGS = {"windows": " (end-of-text tokens included)", "per_document": ""}


# --- the harness's environment, shared with tests/test_lm_eval.py ---------------------------------------------

def harness_venv() -> Path:
    """The harness's own environment (it pins packages differently): PICOLLM_LMEVAL_VENV, else .lmeval-venv."""
    return Path(os.environ.get("PICOLLM_LMEVAL_VENV") or REPO / ".lmeval-venv")


def make_venv_command(venv: Path) -> str:
    """docs/lm-eval.md's commands that make `venv`: torch first, so that nothing else resolves another torch."""
    shown = venv.relative_to(REPO) if venv.is_relative_to(REPO) else venv
    return (f"python3.11 -m venv {shown} && {shown}/bin/pip install torch==2.13.0 && "
            f"{shown}/bin/pip install -r tests/lm-eval-requirements.txt")


def harness_python(create: bool = False) -> Path:
    """The harness environment's python; with `create`, that environment is made from the pinned requirements
    when it is missing."""
    venv = harness_venv()
    python = venv / "bin" / "python"
    if create and not python.exists():
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        pip = [python, "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, "-r", REQUIREMENTS], check=True)
    return python


def harness_scores(python: Path, export: Path, task_dir: Path, task: str, out: Path, model_args: str = AGREED,
                   batch_size: int = 16) -> dict:
    """docs/lm-eval.md's command, run from another folder (the task names its data file absolutely): the task's
    results (`bits_per_byte,none`, ...) and the documents it scored."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={export},{model_args}",
           "--include_path", task_dir, "--tasks", task, "--device", "cpu", "--batch_size", str(batch_size),
           "--output_path", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=out.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"lm_eval --model_args pretrained=...,{model_args} failed: {proc.stderr[-3000:]}")
    record = json.loads(next(out.rglob("results*.json")).read_text())
    return {**record["results"][task], "documents": record["n-samples"][task]["effective"]}


def harness_versions(python: Path) -> dict:
    """The versions of the harness environment that scored the export."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({p: m.version(p) for p in ('lm_eval', 'transformers', 'torch')}))")
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)


# --- what this machine lacks ------------------------------------------------------------------------------------

def gpt2_ready() -> bool:
    """Whether the GPT-2 BPE files load (the local tiktoken cache, as the study benchmark finds it)."""
    from picollm.data.tokenizer import get_tokenizer
    from picollm.errors import PicoError
    os.environ.update({k: v for k, v in _env().items() if k == "TIKTOKEN_CACHE_DIR"})
    try:
        get_tokenizer("gpt2")
        return True
    except PicoError:
        return False


def unavailable(sz: Sizes) -> tuple[str, bool] | None:
    """One line naming what is missing and how to make it; none of it is a failure of the code measured."""
    missing = [f for f in (TINYSTORIES_TRAIN, TINYSTORIES_VALID) if not f.is_file()]
    if missing:
        return f"lm_eval: skipped, {missing[0]} is absent (the model trains and is scored on the local heads)", False
    if not gpt2_ready():
        return ("lm_eval: skipped, the GPT-2 BPE files do not load: set TIKTOKEN_CACHE_DIR to a folder holding "
                "tiktoken's cache of them"), False
    venv = harness_venv()
    if not harness_python().exists():
        return (f"lm_eval: skipped, no lm-evaluation-harness environment at {venv} (PICOLLM_LMEVAL_VENV, else "
                f".lmeval-venv); make it with: {make_venv_command(venv)}"), False
    return None


# --- the run ------------------------------------------------------------------------------------------------

def head(src: Path, lines: int | None, dst: Path) -> Path:
    """The first `lines` lines of `src` in `dst` (None: `src` itself)."""
    if lines is None:
        return src
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[:lines]), encoding="utf-8")
    return dst


def study_config(sz: Sizes, work: Path) -> dict:
    """One seed of one Llama, GPT-2 tokens, on the CPU; training validates only at its first and last step (the
    evaluations after it are what the record compares). fp32 on every machine: `precision: auto` would train in
    bf16 where the CPU has it, and the record would then measure a different model on each machine type."""
    train = head(TINYSTORIES_TRAIN, sz.lmeval_train_lines, work / "text" / "train.txt")
    val = head(TINYSTORIES_VALID, sz.lmeval_val_lines, work / "text" / "valid.txt")
    steps = sz.lmeval_steps
    return {"experiment": EXPERIMENT, "seeds": [SEED], "device": "cpu", "tokenizer": "gpt2",
            "block_size": sz.lmeval_block,
            "data": {"sources": [{"kind": "text", "name": "tinystories", "train_files": [str(train)],
                                  "val_files": [str(val)], "split_on": "line"}]},
            "train": {"max_steps": steps, "batch_size": sz.lmeval_batch, "lr": 0.002, "warmup_steps": min(50, steps),
                      "eval_interval": steps, "eval_batches": 4, "checkpoint_interval": steps, "log_interval": 10,
                      "threads": sz.threads, "precision": "fp32"},
            "models": {RUN: MODEL}}


def export_and_task(studyfile: Path, work: Path, threads: int) -> Path:
    """Snakemake trains and exports the model and writes the harness task; results/<experiment>."""
    results = Path("results") / EXPERIMENT
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(work),
           "--cores", str(threads), str(results / "hf" / RUN / f"seed{SEED}"), str(results / "hf" / "lm_eval_task"),
           "--configfile", str(studyfile), "-q"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {log.name}: {log.read_text(errors='replace')[-1500:]}"
                         for log in sorted((work / results / "logs").rglob("*.log")))
        raise RuntimeError(f"snakemake failed ({proc.returncode}): {(proc.stderr + logs)[-4000:]}")
    return work / results


def evaluate(studyfile: Path, results: Path, scoring: str, threads: int) -> dict:
    """The evaluate stage's JSON for one scoring, its config the workflow's with `evaluate.scoring` overridden (as
    `--config 'evaluate={scoring: ...}'` would)."""
    from picollm import jobs
    from picollm.config import load_study
    config = jobs.evaluate(load_study([studyfile], {"evaluate": {"scoring": scoring}}), RUN, SEED)
    out = results / "eval" / f"{scoring}.json"
    cmd = [sys.executable, "-m", "picollm", "evaluate", "--config", json.dumps(config), "--name", RUN,
           "--model-path", str(results / "models" / RUN / f"seed{SEED}" / "model.pt"),
           "--tokens-dir", str(results / "data" / "tokens"), "--threads", str(threads), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=child_environ(**_env()), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"evaluate ({scoring}) failed: {proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def task_text(task_dir: Path) -> dict:
    """The documents and UTF-8 bytes of the harness task's validation text."""
    from picollm.harness import task_name
    lines = (task_dir / f"{task_name(EXPERIMENT)}.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    return {"documents": len(texts), "bytes": sum(len(t.encode("utf-8")) for t in texts)}


def run(sz: Sizes, peak: dict) -> dict:
    from picollm.harness import task_name
    python = harness_python()
    with tempfile.TemporaryDirectory(prefix="picollm-bench-lmeval-") as tmp:
        work = Path(tmp)
        config = study_config(sz, work)
        studyfile = work / "study.yaml"
        studyfile.write_text(yaml.safe_dump(config, sort_keys=False))
        results = export_and_task(studyfile, work, sz.threads)
        ours = {scoring: evaluate(studyfile, results, scoring, sz.threads) for scoring in SCORINGS}
        export, task_dir = results / "hf" / RUN / f"seed{SEED}", results / "hf" / "lm_eval_task"
        theirs = {args: harness_scores(python, export, task_dir, task_name(EXPERIMENT), work / "lm_eval" / str(i),
                                       args) for i, args in enumerate(VARIANTS)}
        source = config["data"]["sources"][0]
        text = {**task_text(task_dir), "train_read": lines_read(source["train_files"][0], TINYSTORIES_TRAIN),
                "val_read": lines_read(source["val_files"][0], TINYSTORIES_VALID)}
    return report(config, ours, theirs, text, harness_versions(python))


# --- the record -------------------------------------------------------------------------------------------

def nats(result: dict) -> float:
    """An evaluation's total negative log-likelihood (its mean over the tokens scored, times their number)."""
    return result["val_loss"] * result["val_tokens_scored"]


def report(config: dict, ours: dict, theirs: dict, text: dict, versions: dict) -> dict:
    reference = ours["per_document"]["bpb"]
    bpb = {f"evaluate {s}": r["bpb"] for s, r in ours.items()} | \
          {f"lm_eval {a}": r["bits_per_byte,none"] for a, r in theirs.items()}
    relative = {name: (value - reference) / reference for name, value in bpb.items()}
    agreement = abs(relative[f"lm_eval {AGREED}"])
    kept = ("bpb", "val_loss", "val_tokens_scored", "val_tokens_in_split", "val_bytes", "scoring", "method")
    results = {"documents": text["documents"], "bytes": text["bytes"], "bits_per_byte": bpb,
               "relative_to_per_document": relative, "agreement": agreement, "agreement_target": AGREEMENT,
               "evaluate": {s: {k: r[k] for k in kept} for s, r in ours.items()}, "lm_eval": theirs,
               "harness": versions}
    return {"title": TITLE, "results": results, "targets": [agreement_target(agreement)],
            "notes": notes(config, ours, theirs, text, versions),
            "headline": f"per_document {reference:.6f} bpb; lm_eval ({AGREED}) {agreement:.1e} relative from it",
            "table": {"columns": ["scoring", "bits per byte", "tokens scored", "minus per_document",
                                  "relative to per_document"], "rows": table_rows(ours, theirs, bpb, relative)}}


def agreement_target(agreement: float) -> dict:
    threshold = f"{AGREEMENT:.0e}".replace("e-0", "e-")
    return {"target": f"lm_eval ({AGREED}) within {threshold} (relative) of evaluate's per_document bits per byte",
            "value": agreement, "display": f"{agreement:.1e}", "met": agreement <= AGREEMENT}


def table_rows(ours: dict, theirs: dict, bpb: dict, relative: dict) -> list[list]:
    """One row per scoring, in `bpb`'s order: its bits per byte, tokens (evaluate's), and distance from
    per_document's."""
    rows = [[f"`evaluate`, `scoring: {s}`", f"{r['bpb']:.6f}", f"{r['val_tokens_scored']:,}{SCORINGS[s]}"]
            for s, r in ours.items()]
    rows += [[f"`lm_eval`, `{a}`{VARIANTS[a]}", f"{r['bits_per_byte,none']:.6f}", ""] for a, r in theirs.items()]
    reference = bpb["evaluate per_document"]
    for row, name in zip(rows, bpb):
        row += ["", ""] if name == "evaluate per_document" else \
            [f"{bpb[name] - reference:+.2g}", f"{relative[name]:+.1e}"]
    return rows


def lines_read(path: str, whole: Path) -> str:
    """'the first 1,000 lines of `X.txt`', or 'all 11,498 lines of `X.txt`' where the benchmark read the whole file."""
    n = len(Path(path).read_text(encoding="utf-8").splitlines())
    return f"{'all' if Path(path) == whole else 'the first'} {n:,} lines of `{whole.name}`"


def notes(config: dict, ours: dict, theirs: dict, text: dict, versions: dict) -> list[str]:
    from picollm.harness import task_name
    train, model = config["train"], config["models"][RUN]
    scored = sorted({r["documents"] for r in theirs.values()})
    windows, per_document = ours["windows"], ours["per_document"]
    extra = windows["val_tokens_scored"] - per_document["val_tokens_scored"]
    more = nats(windows) - nats(per_document)
    return [f"A GPT-2-token Llama (`pos_encoding: {model['pos_encoding']}`, `mlp: {model['mlp']}`, d_model "
            f"{model['d_model']}, {model['n_heads']} heads, {model['n_layers']} layers, `block_size` "
            f"{config['block_size']}), {train['max_steps']} steps of {train['batch_size']} windows on "
            f"{text['train_read']} (seed {SEED}, fp32, on the CPU).",
            f"Scored on {text['val_read']} cut per line (`split_on: line`): "
            f"{text['documents']:,} documents, {text['bytes']:,} bytes. `evaluate` counted "
            f"{ours['per_document']['val_bytes']:,} bytes with `per_document` and {ours['windows']['val_bytes']:,} "
            f"with `windows` (which never predicts the split's first token, nor counts its bytes); `lm_eval` scored "
            f"{' or '.join(f'{n:,}' for n in scored)} documents.",
            f"`windows` scores {extra:,} tokens more than `per_document` (end-of-text tokens, which add no bytes) and "
            f"{more:,.0f} nats more in all ({more / max(extra, 1):.2f} per extra token); it also reads the previous "
            f"document before each document's first tokens.",
            f"`lm_eval` {versions['lm_eval']} (transformers {versions['transformers']}, torch {versions['torch']}), "
            f"its `bits_per_byte`: `lm_eval --model hf --model_args pretrained=<export>,<arguments> --tasks "
            f"{task_name(EXPERIMENT)} --device cpu --batch_size 16`."]
