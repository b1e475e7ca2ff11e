"""The study's validation text as a task of EleutherAI's lm-evaluation-harness (`lm_eval`), for an exported model.

`write_task` writes <name>.jsonl (one {"text": document} per line: every source's validation documents, cut as
the tokenize stage cuts them, so the harness scores the very text of val.bin) and <name>.yaml, a
`loglikelihood_rolling` task over it with the harness's word perplexity, byte perplexity and bits per byte.
The harness scores each document on its own, from its end-of-text prefix token; `evaluate.scoring:
per_document` scores val.bin the same way (picollm.evaluate.document_windows), so the two bits per byte agree.
docs/lm-eval.md gives the `lm_eval` command.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from picollm.data.sources import iter_documents
from picollm.errors import PicoError
from picollm.hf_form import refusals
from picollm.io import atomic_path, write_text

METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")


def task_name(experiment: str) -> str:
    return f"picollm_{experiment}_val"


def task_config(name: str, data_file: Path) -> dict:
    """The task's YAML: the data file by its absolute path (the harness reads it relative to where it runs)."""
    return {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
            "test_split": "test", "output_type": "loglikelihood_rolling", "doc_to_text": "",
            "doc_to_target": "text", "metric_list": [{"metric": m} for m in METRICS], "metadata": {"version": 1.0}}


def check_exportable(experiment: str, models: dict) -> list[str]:
    """The runs of `models` ({run: model config dict}) that `picollm export` can write; none: one line."""
    refused = refusals(models)
    runs = [run for run in models if run not in refused]
    if not runs:
        run, reason = next(iter(refused.items()))
        raise PicoError(f"study {experiment!r} has no model that exports to Hugging Face format, so lm_eval has "
                        f"nothing to score on its task ({run}: {reason})")
    return runs


def write_task(name: str, val_files: list, out_dir) -> dict:
    """<out_dir>/<name>.jsonl of the documents of `val_files` (in order) and <out_dir>/<name>.yaml; a summary."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data_file = out_dir / f"{name}.jsonl"
    documents = n_bytes = 0
    with atomic_path(data_file) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for path in val_files:
            for doc in iter_documents(path):  # as picollm.data.tokens.tokenize_split cuts them
                fh.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
                documents += 1
                n_bytes += len(doc.encode("utf-8"))
    write_text(out_dir / f"{name}.yaml", yaml.safe_dump(task_config(name, data_file), sort_keys=False))
    return {"task": name, "task_dir": str(out_dir), "documents": documents, "bytes": n_bytes}
