"""Tables: whitespace shown rather than collapsed, newline counts, and parameter counts that add up."""
import json

import pandas as pd
import pytest

from picollm import tables
from picollm.models import build_model, count_parameters

VOCAB, BLOCK = 50, 16


def test_whitespace_is_shown_not_collapsed():
    assert tables.show_whitespace("\n\n\nThe") == "⏎⏎⏎The"
    assert tables.show_whitespace("a\tb\r\nc") == "a→b⇤⏎c"
    assert tables.show_whitespace("two  spaces") == "two␣␣spaces"
    assert tables.show_whitespace(" one space") == " one space"  # a continuation's leading space stays
    assert tables.show_whitespace(" ") == "␣"  # ... unless it is all there is


def write_samples(path, texts: dict) -> None:
    """samples/<model>.jsonl as the sample stage writes it, one greedy sample per model."""
    with open(path, "w", encoding="utf-8") as fh:
        for model, text in texts.items():
            fh.write(json.dumps({"model": model, "train_tokens": 512, "prompt": "Once", "decoding": "greedy",
                                 "p": None, "sample": 0, "seed": 1, "text": text, "new_tokens": 4}) + "\n")


def test_samples_table_shows_and_counts_newlines(tmp_path):
    write_samples(tmp_path / "s.jsonl", {"lstm": "\n\n\nThe", "transformer": " upon a time"})
    frame = tables.samples_table([tmp_path / "s.jsonl"], tmp_path / "samples.csv", tmp_path / "samples.md", "exp")
    csv = pd.read_csv(tmp_path / "samples.csv", keep_default_na=False).set_index("model")
    assert csv.loc["lstm", "newlines"] == 3 and csv.loc["lstm", "shown"] == "⏎⏎⏎The"
    assert csv.loc["lstm", "text"] == "\n\n\nThe"  # the sample itself, exactly
    assert csv.loc["transformer", "newlines"] == 0
    md = (tmp_path / "samples.md").read_text()
    assert "| greedy | lstm | 4 | 3 | ⏎⏎⏎The |" in md
    assert len(frame) == 2


def models():
    """Every model type, with the head untied and (for the Transformer) tied, full and compact vocabulary."""
    cfgs = [{"type": "kgram_mlp"}, {"type": "kgram_mlp", "input": "onehot"}, {"type": "lstm"},
            {"type": "transformer", "tie_weights": True}, {"type": "transformer", "tie_weights": False},
            {"type": "transformer", "pos_encoding": "rope"}]
    return [(cfg, compact) for cfg in cfgs for compact in (None, range(0, VOCAB, 3))]


@pytest.mark.parametrize("cfg,compact", models())
def test_parameter_columns_add_up(cfg, compact):
    model = build_model(cfg, VOCAB, BLOCK, compact_ids=compact)
    counts = count_parameters(model)
    assert counts["params"] == sum(p.numel() for p in model.parameters())
    assert counts["params"] == counts["params_embedding"] + counts["params_head"] + counts["params_core"]
    assert counts["params_non_embedding"] == counts["params_core"] > 0
    tied = cfg["type"] == "transformer" and cfg.get("tie_weights", True)
    assert counts["head_tied"] == tied
    assert (counts["params_head"] == 0) == tied


def test_core_parameters_do_not_depend_on_the_vocabulary():
    """The point of the split: the head and tables grow with the vocabulary, the core does not."""
    for cfg in [{"type": "kgram_mlp"}, {"type": "lstm"}, {"type": "transformer", "tie_weights": False}]:
        small, large = (count_parameters(build_model(cfg, v, BLOCK)) for v in (50, 500))
        assert small["params_core"] == large["params_core"]
        assert small["params_head"] < large["params_head"]


def test_models_table_writes_csv_and_markdown(tmp_path):
    paths = []
    for name, cfg in [("lstm", {"type": "lstm"}), ("transformer", {"type": "transformer"})]:
        summary = {"model": name, "type": cfg["type"], **count_parameters(build_model(cfg, VOCAB, BLOCK)),
                   "tokens_seen": 5120, "wall_s": 1.234, "tokens_per_s": 4149.27, "device": "cpu",
                   "final_train_loss": 2.345678, "final_val_loss": 2.456789}
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(summary))
    tables.models_table(paths, tmp_path / "models.md", "exp", out_csv=tmp_path / "models.csv")
    csv = pd.read_csv(tmp_path / "models.csv").set_index("model")
    assert list(csv.columns[:6]) == ["type", "params", "params_embedding", "params_head", "head_tied", "params_core"]
    assert csv.loc["transformer", "head_tied"] and csv.loc["transformer", "params_head"] == 0
    assert csv.loc["lstm", "tokens_per_s"] == 4149 and csv.loc["lstm", "final_val_loss"] == 2.4568
    assert "params_embedding" in (tmp_path / "models.md").read_text()
