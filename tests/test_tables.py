"""Tables: whitespace shown rather than collapsed, newline counts, and parameter counts that add up."""
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from picollm import evaluate, tables
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


def test_the_key_names_each_sign_the_text_holds(tmp_path):
    """⏎ and ␣ always; �, tab and escapes only where a sample holds them, so no reader meets an unexplained glyph."""
    assert tables.sign_key(["Once upon"]) == "⏎ newline, ␣ extra space"
    assert tables.sign_key(["a→b", "12\ufffd6"]) == "⏎ newline, ␣ extra space, → tab, \ufffd bytes that are not UTF-8"
    assert tables.sign_key(["\\x1d\\x1d"]).endswith("\\xNN control character")
    write_samples(tmp_path / "s.jsonl", {"lstm": " 12\ufffd6"})
    tables.samples_table([tmp_path / "s.jsonl"], tmp_path / "samples.csv", tmp_path / "samples.md", "exp")
    assert "\ufffd bytes that are not UTF-8" in (tmp_path / "samples.md").read_text()


def test_samples_name_the_training_seed_their_path_names_beside_the_sampling_seed(tmp_path):
    """Tables and figures of one seed say which trained model they show (a record's `seed` is its sampling seed)."""
    path = tmp_path / "samples" / "lstm" / "seed1337.jsonl"
    path.parent.mkdir(parents=True)
    write_samples(path, {"lstm": " upon"})
    tables.samples_table([path], tmp_path / "samples.csv", tmp_path / "samples.md", "exp")
    csv = pd.read_csv(tmp_path / "samples.csv")
    assert csv.loc[0, "train_seed"] == 1337 and csv.loc[0, "seed"] == 1
    assert (tmp_path / "samples.md").read_text().startswith("# Samples: experiment `exp`, 512 training tokens per "
                                                            "model, training seed 1337")
    assert tables.seed_note([1338, 1337.0, "", None]) == "training seeds 1337, 1338"
    from picollm.plots import sample_comparison
    sample_comparison.plot(tmp_path / "samples.csv", tmp_path / "samples.png", "exp")
    assert "training seed 1337" in (tmp_path / "samples.svg").read_text()


def test_an_empty_sample_says_the_model_ended_at_once(tmp_path):
    """Sampling cuts a sample at its first end-of-text: an empty one is a story ended at once, not "(empty)"."""
    write_samples(tmp_path / "s.jsonl", {"lstm": ""})
    tables.samples_table([tmp_path / "s.jsonl"], tmp_path / "samples.csv", tmp_path / "samples.md", "exp")
    csv = pd.read_csv(tmp_path / "samples.csv", keep_default_na=False).set_index("model")
    assert csv.loc["lstm", "text"] == "" and csv.loc["lstm", "shown"] == "ended at once (end-of-text)"
    assert "| greedy | lstm | 4 | 0 | ended at once (end-of-text) |" in (tmp_path / "samples.md").read_text()


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


def test_models_table_says_which_seed_and_which_validation_loss(tmp_path):
    """One row per run, of its first seed: the heading names the seed, and the text which validation loss."""
    path = tmp_path / "models" / "lstm" / "seed1337" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"model": "lstm", "type": "lstm", "tokens_seen": 5120, "final_val_loss": 2.5}))
    tables.models_table([path], tmp_path / "models.md", "exp")
    text = (tmp_path / "models.md").read_text()
    assert text.startswith("# Models: experiment `exp`, training seed 1337, 5,120 training tokens per model\n")
    assert "final_val_loss is training's last validation loss, on its train.eval_batches fixed batches" in text


def test_models_table_names_each_runs_optimizer_and_learning_rates(tmp_path):
    """Runs given recipes of their own (a model's `train:`) say so beside their numbers."""
    paths = []
    for name, train in [("lstm", {"optimizer": "adamw", "lr": 0.006, "muon_lr": 0.02}),
                        ("transformer", {"optimizer": "muon", "lr": 0.002, "muon_lr": 0.02}), ("old", None)]:
        summary = {"model": name, "type": "lstm", "tokens_seen": 5120}
        if train:
            summary["provenance"] = {"config": {"train": train}}
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(summary))
    frame = tables.models_table(paths, tmp_path / "models.md", "exp", out_csv=tmp_path / "models.csv")
    assert list(frame["optimizer"][:2]) == ["adamw lr 0.006", "muon lr 0.02, adamw lr 0.002"]
    assert pd.isna(frame["optimizer"][2])  # a summary without its job's config: blank, not a guess
    assert "muon lr 0.02, adamw lr 0.002" in (tmp_path / "models.md").read_text()


def test_models_table_marks_timings_as_machine_dependent(tmp_path):
    summary = {"model": "lstm", "type": "lstm", "tokens_seen": 5120, "wall_s": 1.2, "tokens_per_s": 4149.3}
    (tmp_path / "lstm.json").write_text(json.dumps(summary))
    tables.models_table([tmp_path / "lstm.json"], tmp_path / "models.md", "exp", out_csv=tmp_path / "models.csv")
    md = (tmp_path / "models.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    assert "wall_s (machine-dependent)" in header and "tokens_per_s (machine-dependent)" in header
    assert md.index(tables.TIMING_NOTE) > md.index("| lstm")  # the note under the table
    assert {"wall_s", "tokens_per_s"} <= set(pd.read_csv(tmp_path / "models.csv").columns)  # names code reads


# --- evaluation over seeds -------------------------------------------------------------------------------

T_975_2 = 4.302652729749462  # Student t, 97.5% quantile, 2 degrees of freedom


def write_evals(tmp_path, bpb: dict, sources=("s",), sweep=None, **extra) -> dict:
    """{run: {seed: eval/<run>/seed<k>.json}} as the evaluate stage writes them, bpb = {run: {seed: value}};
    val_loss is bpb * 2 and each source's numbers are the whole split's times 1, 2, ..."""
    paths = {}
    for run, by_seed in bpb.items():
        for seed, value in by_seed.items():
            loss = 2 * value
            ev = {"model": run, "run": run, "seed": seed, "type": run.split(".")[0], "params": 1000,
                  "params_embedding": 300, "params_head": 200, "params_core": 500, "params_non_embedding": 500,
                  "head_tied": False, "tokens_seen": 5120, "tokenizer": "byte", "val_loss": loss,
                  "perplexity": math.exp(loss), "bpb": value, "val_tokens_scored": 100, "val_tokens_in_split": 100,
                  "val_capped": False, "val_bytes": 100,
                  "sources": {s: {"loss": loss * (i + 1), "perplexity": math.exp(loss * (i + 1)),
                                  "bpb": value * (i + 1), "tokens": 50, "bytes": 50} for i, s in enumerate(sources)},
                  "sweep": (sweep or {}).get(run), **extra}
            path = tmp_path / "eval" / run / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(ev))
            paths.setdefault(run, {})[str(seed)] = str(path)  # as JSON from the command line: string seeds
    return paths


def test_eval_table_means_and_t_intervals_over_seeds(tmp_path):
    evals = write_evals(tmp_path, {"lstm": {1: 1.0, 2: 2.0, 3: 3.0}, "transformer": {1: 1.5, 2: 1.5, 3: 1.5},
                                   "kgram_mlp": {7: 2.5}})
    frame = tables.eval_table(evals, tmp_path / "eval.csv", tmp_path / "eval.md", "exp")
    csv = pd.read_csv(tmp_path / "eval.csv").set_index("run")
    for name in ["val_loss", "perplexity", "bpb"]:
        assert {f"{name}_{k}" for k in ("mean", "std", "ci_low", "ci_high")} <= set(csv.columns)
    assert {"type", "n_seeds", "params", "train_tokens", "source"} <= set(csv.columns)
    assert list(frame["source"]) == ["all"] * 3  # a single data source is the whole split: no rows of its own
    lstm = csv.loc["lstm"]
    assert lstm["n_seeds"] == 3 and lstm["bpb_mean"] == 2 and lstm["bpb_std"] == pytest.approx(1)
    assert lstm["bpb_ci_low"] == pytest.approx(2 - T_975_2 / math.sqrt(3))
    assert lstm["bpb_ci_high"] == pytest.approx(2 + T_975_2 / math.sqrt(3))
    assert lstm["val_loss_mean"] == 4 and lstm["val_loss_std"] == pytest.approx(2)
    assert csv.loc["transformer", "bpb_ci_low"] == csv.loc["transformer", "bpb_ci_high"] == 1.5
    assert csv.loc["kgram_mlp", "n_seeds"] == 1 and np.isnan(csv.loc["kgram_mlp", "bpb_std"])
    assert np.isnan(csv.loc["kgram_mlp", "bpb_ci_low"])
    md = (tmp_path / "eval.md").read_text()
    assert "95% Student-t confidence interval" in md and "5,120 training tokens per model" in md
    assert f"| 2.0 ± {T_975_2 / math.sqrt(3):.1f} " in md  # lstm's bpb, the half-width to two digits
    body = md[md.index("| run"):]
    assert body.index("transformer") < body.index("lstm") < body.index("kgram_mlp")  # sorted by bpb
    assert "| 2.5 " in md and "1.500 ± 0.000" in md  # one seed: the value alone; no spread: a zero half-width
    header = next(line for line in md.splitlines() if line.startswith("| run"))
    for name in ["val_loss", "perplexity", "bpb"]:  # which ± it is, unlike loss_curves.png's legend (1 std)
        assert f"{name} (mean ± 95% CI)" in header
    assert "loss_curves.png's legend gives another ±: 1 standard deviation" in md


def test_eval_table_per_source_rows_and_capped_note(tmp_path):
    evals = write_evals(tmp_path, {"lstm": {1: 1.0, 2: 2.0, 3: 3.0}}, sources=("3seqs", "tinystories"),
                        val_capped=True)
    frame = tables.eval_table(evals, tmp_path / "eval.csv", tmp_path / "eval.md", "exp")
    assert list(frame["source"]) == ["all", "3seqs", "tinystories"]
    stories = frame.set_index("source").loc["tinystories"]
    assert stories["bpb_mean"] == 4 and stories["bpb_std"] == pytest.approx(2)
    md = (tmp_path / "eval.md").read_text()
    assert "## Per data source" in md and "Capped by evaluate.max_tokens: lstm 100 of 100 tokens" in md


def test_eval_markdown_says_how_the_split_was_scored_as_the_evaluations_say(tmp_path):
    method = evaluate.scoring_method(32, None, False)
    evals = write_evals(tmp_path, {"lstm": {1: 1.0, 2: 2.0}}, method=method)
    tables.eval_table(evals, tmp_path / "eval.csv", tmp_path / "eval.md", "exp")
    assert f"Scored: {method}." in (tmp_path / "eval.md").read_text()
    assert tables.MULTIPLE_NOTE in (tmp_path / "eval.md").read_text()  # many pairs, each at 95%: said
    assert "every token but each source's first scored once" in method


def test_eval_markdown_says_what_share_of_the_loss_is_end_of_text(tmp_path):
    """bpb counts the cost of predicting end-of-text, a token of 0 bytes: eval.md gives its share over every run
    and seed, and nothing where the evaluations do not count it (an older eval JSON)."""
    evals = write_evals(tmp_path / "a", {"lstm": {1: 1.0}}, val_eot_share=0.121)
    evals |= write_evals(tmp_path / "b", {"transformer": {1: 1.0}}, val_eot_share=0.163)
    tables.eval_table(evals, tmp_path / "eval.csv", tmp_path / "eval.md", "exp")
    assert ("Predicting end-of-text (0 bytes of text) takes 12% to 16% of the nats (val_eot_share in each eval "
            "JSON), a cost val_loss and bpb include.") in (tmp_path / "eval.md").read_text()
    tables.eval_table(write_evals(tmp_path / "c", {"lstm": {1: 1.0}}), tmp_path / "eval.csv", tmp_path / "eval.md",
                      "exp")
    assert "end-of-text" not in (tmp_path / "eval.md").read_text()
    # a validation text that marks no story ends (its one closing end-of-text): said so, not as "0% of the nats"
    tables.eval_table(write_evals(tmp_path / "d", {"lstm": {1: 1.0}}, val_eot_share=2e-5), tmp_path / "eval.csv",
                      tmp_path / "eval.md", "exp")
    assert ("The validation text marks (almost) no story ends: predicting end-of-text takes under 0.5% of the nats"
            in (tmp_path / "eval.md").read_text())


def test_compare_table_pairs_runs_by_seed(tmp_path):
    evals = write_evals(tmp_path, {"a": {1: 1.0, 2: 1.2, 3: 1.1, 4: 9.0}, "b": {1: 1.5, 2: 1.6, 3: 1.65},
                                   "c": {1: 1.5, 2: 1.6, 3: 1.6}})
    frame = tables.compare_table(evals, tmp_path / "compare.csv", "exp")
    csv = pd.read_csv(tmp_path / "compare.csv")
    assert list(csv.columns) == ["experiment", "a", "b", "n", "flops_budget", "a_train_flops", "b_train_flops",
                                 "bpb_diff_mean", "bpb_diff_ci_low", "bpb_diff_ci_high", "verdict", "statement"]
    assert [(r.a, r.b) for r in csv.itertuples()] == [("a", "b"), ("a", "c"), ("b", "c")]
    ab = frame.iloc[0]
    diffs = np.array([-0.5, -0.4, -0.55])
    half = T_975_2 * diffs.std(ddof=1) / math.sqrt(3)
    assert ab["n"] == 3 and ab["bpb_diff_mean"] == pytest.approx(diffs.mean())
    assert ab["bpb_diff_ci_low"] == pytest.approx(diffs.mean() - half) and ab["verdict"] == "a better"
    assert frame.iloc[2]["verdict"] == "within noise"  # b - c = 0, 0, 0.05
    assert ab["statement"].startswith("a better than b by 0.4833 bpb (95% CI ")  # no budget: no "at ... FLOPs"
    bc = np.array([0.0, 0.0, 0.05])
    low, high = bc.mean() + np.array([-1, 1]) * T_975_2 * bc.std(ddof=1) / math.sqrt(3)
    assert frame.iloc[2]["statement"] == (f"b and c within noise (b - c = +0.0167 bpb, 95% CI {low:+.4f} to "
                                          f"{high:+.4f}, 3 seeds paired)")  # a tie says how wide it may be


def test_compare_table_gives_what_each_run_spent_under_one_budget(tmp_path):
    """A budget pays for whole steps: the FLOPs each run spent show how equal "equal compute" is."""
    evals = write_evals(tmp_path / "a", {"a": {1: 1.0, 2: 1.1}}, flops_budget=1e12, train_flops=0.99e12)
    evals |= write_evals(tmp_path / "b", {"b": {1: 1.2, 2: 1.3}}, flops_budget=1e12, train_flops=0.985e12)
    row = tables.compare_table(evals, tmp_path / "compare.csv", "exp").iloc[0]
    assert (row["a_train_flops"], row["b_train_flops"]) == (0.99e12, 0.985e12)
    unknown = write_evals(tmp_path / "c", {"c": {1: 1.0}, "d": {1: 1.1}}, train_flops=None)  # a summary without it
    row = tables.compare_table(unknown, tmp_path / "compare.csv", "exp").iloc[0]
    assert math.isnan(row["a_train_flops"]) and math.isnan(row["b_train_flops"])
    assert len(tables.compare_table({"a": evals["a"]}, tmp_path / "one.csv", "exp")) == 0
    assert pd.read_csv(tmp_path / "one.csv").columns[1] == "a"  # a header even with nothing to compare


def test_a_pair_at_unequal_compute_says_so_in_its_sentence(tmp_path):
    """Without a budget every pair is compared whatever each spent: the sentence a student quotes says when the
    better run trained with several times the other's FLOPs; runs within UNEQUAL_COMPUTE of each other read as
    before."""
    evals = write_evals(tmp_path / "a", {"big": {1: 1.0, 2: 1.1}}, train_flops=7e12)
    evals |= write_evals(tmp_path / "b", {"small": {1: 1.5, 2: 1.7}}, train_flops=1e12)
    evals |= write_evals(tmp_path / "c", {"alike": {1: 1.6, 2: 1.7}}, train_flops=1.02e12)
    frame = tables.compare_table(evals, tmp_path / "compare.csv", "exp").set_index(["a", "b"])
    assert frame.loc[("big", "small"), "statement"].endswith(
        "; not compute-matched: big trained with 7.0x the FLOPs of small (train.flops sets a budget)")
    assert frame.loc[("big", "alike"), "statement"].endswith("6.9x the FLOPs of alike (train.flops sets a budget)")
    assert "compute-matched" not in frame.loc[("small", "alike"), "statement"]


def test_eval_markdown_gives_the_budget_the_flops_and_the_paired_verdicts(tmp_path):
    """eval.md is the table a student opens first: under one train.flops budget its title says so, every run's
    training FLOPs is a column, and it closes with compare.csv's sentences, so that it alone says which run is
    better at what compute."""
    evals = write_evals(tmp_path / "a", {"a": {1: 1.0, 2: 1.1}}, flops_budget=6e8, train_flops=5.9e8)
    evals |= write_evals(tmp_path / "b", {"b": {1: 1.5, 2: 1.7}}, flops_budget=6e8, train_flops=5.95e8)
    compare = tables.compare_table(evals, tmp_path / "compare.csv", "exp")
    tables.eval_table(evals, tmp_path / "eval.csv", tmp_path / "eval.md", "exp", compare=compare)
    md = (tmp_path / "eval.md").read_text()
    assert md.startswith("# Evaluation: experiment `exp`, at a budget of 6e+08 training FLOPs per model, ")
    header = next(line for line in md.splitlines() if line.startswith("| run"))
    assert "train_flops" in header  # three digits: runs ~1% apart under one budget read apart
    assert re.search(r"\| +5\.9e\+08 +\|", md) and re.search(r"\| +5\.95e\+08 +\|", md)
    assert compare["statement"][0].startswith("at 6e+08 FLOPs: a and b within noise")
    said = compare["statement"][0].removeprefix("at 6e+08 FLOPs: ")  # the heading says the budget once
    assert md.rstrip().endswith(f"## Paired by seed (compare.csv), at 6e+08 training FLOPs each\n\n- {said}")
    # runs without a budget: no budget in the title, and no verdict section without comparisons
    plain = write_evals(tmp_path / "c", {"c": {1: 1.0}})
    tables.eval_table(plain, tmp_path / "eval.csv", tmp_path / "eval.md", "exp")
    md = (tmp_path / "eval.md").read_text()
    assert "budget" not in md.splitlines()[0] and "## Paired by seed" not in md


def test_eval_markdown_lists_the_verdicts_that_tell_a_better_run_first():
    statements = ["a and b within noise (a - b = +0.1 bpb, 95% CI -1 to +1, 2 seeds paired)",
                  "c better than a by 0.2 bpb (95% CI 0.1 to 0.3, 2 seeds paired)"]
    compare = pd.DataFrame({"verdict": ["within noise", "b better"], "statement": statements})
    assert tables.verdicts_markdown(compare)[2:4] == [f"- {statements[1]}", f"- {statements[0]}"]
    assert tables.verdicts_markdown(compare.iloc[:0]) == [] and tables.verdicts_markdown(None) == []


def test_sampling_table_adds_run_and_seed(tmp_path):
    inputs = {}
    for run in ["lstm", "lstm.train.lr=0.01"]:
        for seed in [1, 2]:
            path = tmp_path / run / f"seed{seed}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([{"model": run, "decoding": "greedy", "p": None, "samples": 2, "distinct_1": 0.5,
                           "train_tokens": 512}]).to_csv(path, index=False)
            inputs.setdefault(run, {})[str(seed)] = str(path)
    frame = tables.sampling_table(inputs, tmp_path / "sampling.csv", "exp")
    csv = pd.read_csv(tmp_path / "sampling.csv")
    assert list(csv.columns[:3]) == ["experiment", "run", "seed"] and len(csv) == 4
    assert list(zip(csv["run"], csv["seed"])) == [("lstm", 1), ("lstm", 2), ("lstm.train.lr=0.01", 1),
                                                  ("lstm.train.lr=0.01", 2)]
    assert set(frame["train_tokens"]) == {512}
    # the real stories' rows come last, one per seed, run and decoding `reference`
    reference = {}
    for seed in [1, 2]:
        reference[str(seed)] = tmp_path / f"reference{seed}.csv"
        pd.DataFrame([{"model": "reference", "decoding": "reference", "p": None, "samples": 4, "distinct_1": 0.7,
                       "ended_share": 0.25, "seed": seed}]).to_csv(reference[str(seed)], index=False)
    frame = tables.sampling_table(inputs, tmp_path / "sampling.csv", "exp", reference=reference)
    assert list(zip(frame["run"], frame["seed"]))[4:] == [("reference", 1), ("reference", 2)]
    assert list(frame["decoding"].iloc[4:]) == ["reference"] * 2 and frame["train_tokens"].iloc[4:].isna().all()
