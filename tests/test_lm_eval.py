"""lm-evaluation-harness: `picollm lm-eval-task` writes a loglikelihood_rolling task of the validation text, and
`lm_eval` itself (pinned in tests/lm-eval-requirements.txt, in its own environment) scores an exported model on
it with the bits per byte that `evaluate.scoring: per_document` gives (slow); a study with no exportable model
is one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks.lm_eval_agreement import AGREEMENT, harness_python, harness_scores
from conftest import needs_gpt2, picollm, snakemake, tiny_offline_config, write_config
from picollm.data.sources import write_documents
from picollm.harness import task_name

UNICODE_DOCS = ["Héllo wörld ✓\nthe second line of one document", "日本語のテキスト 🐶 and ASCII",
                "A longer one. " * 12]


def write_raw(raw_dir: Path, documents: dict) -> None:
    for source, docs in documents.items():
        write_documents(raw_dir / source / "val.txt", docs)


def lm_eval_task(tmp_path, models: dict):
    write_raw(tmp_path / "raw", {"a": ["1 2 3", "4 5"], "b": UNICODE_DOCS})
    config = {"experiment": "exp", "models": models}
    return picollm("lm-eval-task", "--config", json.dumps(config), "--raw-dir", tmp_path / "raw", "--sources", "a", "b",
                   "--out-dir", tmp_path / "task")


ROPE = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 1, "pos_encoding": "rope"}


def test_task_holds_every_validation_document(tmp_path):
    proc = lm_eval_task(tmp_path, {"lstm": {"type": "lstm"}, "llama": ROPE})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["exportable_runs"] == ["llama"] and summary["documents"] == 5
    task = yaml.safe_load((tmp_path / "task" / "picollm_exp_val.yaml").read_text())
    assert task["task"] == task_name("exp") == "picollm_exp_val" and task["output_type"] == "loglikelihood_rolling"
    data = Path(task["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and data == (tmp_path / "task" / "picollm_exp_val.jsonl").resolve()
    docs = [json.loads(line)["text"] for line in data.read_text(encoding="utf-8").splitlines()]
    assert docs == ["1 2 3", "4 5", *[d.strip() for d in UNICODE_DOCS]]
    assert summary["bytes"] == sum(len(d.encode()) for d in docs)


def test_study_without_exportable_models_is_one_line(tmp_path):
    proc = lm_eval_task(tmp_path, {"lstm": {"type": "lstm"}, "gpt": {"type": "transformer"}})
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: study 'exp' has no model that exports")
    assert "lstm: only Transformer models" in proc.stderr
    assert not (tmp_path / "task").exists()


# --- lm_eval itself (slow) -----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["byte", pytest.param("gpt2", marks=needs_gpt2)])
def test_lm_eval_scores_the_export_as_per_document_evaluate(tmp_path, tokenizer):
    """A trained rope Transformer (a Llama) through the workflow: export, task and per-document evaluation; the
    harness's bits per byte on the task equals evaluate's. Documents from 2 to 40 numbers (several windows of 32
    tokens) and a second source of multi-line UTF-8 documents."""
    python = harness_python(create=True)  # PICOLLM_LMEVAL_VENV, else .lmeval-venv, made as docs/lm-eval.md says
    for split in ("train", "val"):
        write_documents(tmp_path / f"{split}.txt", UNICODE_DOCS * (20 if split == "train" else 1))
    cfg = tiny_offline_config(experiment="lmeval", steps=150, tokenizer=tokenizer,
                              models={"llama": {**ROPE, "mlp": "swiglu"}}, evaluate={"scoring": "per_document"})
    cfg["data"] = {"sources": [{"kind": "3seqs", "num_sequences": 400, "max_terms": 40},
                               {"kind": "text", "name": "utf8", "train_files": [str(tmp_path / "train.txt")],
                                "val_files": [str(tmp_path / "val.txt")], "split_on": "eot"}]}
    study = write_config(tmp_path / "study.yaml", cfg)
    results = tmp_path / "results" / "lmeval"
    evaluated = results / "eval" / "llama" / "seed7.json"
    targets = [p.relative_to(tmp_path) for p in (results / "hf/llama/seed7", results / "hf/lm_eval_task", evaluated)]
    proc = snakemake(tmp_path, "--cores", "2", *targets, "--configfile", study)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ours = json.loads(evaluated.read_text())
    assert ours["scoring"] == "per_document" and ours["val_tokens_scored"] == ours["val_tokens_in_split"]
    theirs = harness_scores(python, results / "hf/llama/seed7", results / "hf/lm_eval_task", task_name("lmeval"),
                            tmp_path / "lm_eval", batch_size=8)["bits_per_byte,none"]
    print(f"\n{tokenizer}: lm_eval bits_per_byte {theirs:.8f}, evaluate per_document bpb {ours['bpb']:.8f}")
    assert abs(theirs - ours["bpb"]) <= AGREEMENT * ours["bpb"]
