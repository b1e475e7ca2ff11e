"""FLOPs per token (picollm.flops) against torch's own count of one training step, and train.flops budgets.

torch.utils.flop_counter.FlopCounterMode counts the aten matmuls a step runs. It has no formula for the
in-place addmm_ with which the fused loss (picollm.loss) accumulates the head's weight gradient, nor for the
oneDNN linear it may multiply the head in, so the tests give it those. On the CPU it sees no scaled_dot_product_attention and has no formula for nn.LSTM,
so those two parts are checked on their own: attention run as explicit matmuls, and the LSTM as an explicit
cell of nn.Linear layers with nn.LSTM's weights (the same numbers, so the same network).
"""
import json
import math
import re

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, mm_flop

from conftest import byte_tokens
from picollm import jobs, tables
from picollm.config import Study, TrainConfig, TrainJob, load_study, parse
from picollm.errors import PicoError
from picollm.evaluate import evaluate_model
from picollm.flops import budget_steps, flops_per_token, forward_flops
from picollm.head_plan import plan_for
from picollm.loss import lm_loss
from picollm.models import build_model
from picollm.plots import sweep
from picollm.train import lr_scale, train, within_budget

B, T, V = 3, 16, 61
KGRAM = {"type": "kgram_mlp", "k": 3, "embed_dim": 8, "hidden_dim": 24, "num_inner_layers": 2}
LSTM = {"type": "lstm", "embed_dim": 12, "hidden_dim": 20, "num_layers": 2}
TRANSFORMER = {"type": "transformer", "d_model": 32, "n_heads": 4, "n_layers": 2}
TOLERANCE = 0.05


def counter() -> FlopCounterMode:
    """With formulas for addmm_ and for oneDNN's linear (x (m, k) times weight (n, k)^T), which the fused loss
    runs where this machine's head plan measured it faster (picollm.head_plan)."""
    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.addmm_: lambda c, a, b, *_, **__: mm_flop(a, b),
        torch.ops.mkldnn._linear_pointwise.default: lambda x, w, *_, **__: mm_flop((math.prod(x[:-1]), x[-1]),
                                                                                   (w[1], w[0]))})


def counted_step(model, vocab_size=V) -> int:
    """FLOPs FlopCounterMode counts in one training step (the trainer's loss, forward and backward)."""
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, vocab_size, (B, T), generator=gen) for _ in range(2))
    if hasattr(model, "head"):  # the head's plan is timed on its first use: not in the count
        plan_for(model.head.out_features, model.head.in_features, torch.device("cpu"))
    with counter() as count:
        lm_loss(model, x, y).backward()
    return count.get_total_flops()


def explicit_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
    """scaled_dot_product_attention's math with plain matmuls, which FlopCounterMode sees."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if is_causal:
        scores = scores.masked_fill(~torch.ones(q.size(-2), k.size(-2), dtype=torch.bool).tril(), float("-inf"))
    return scores.softmax(-1) @ v


class ExplicitLSTM(nn.Module):
    """nn.LSTM (batch first) as per-layer input and recurrent nn.Linear projections, with its weights."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        self.hidden = lstm.hidden_size
        self.inputs, self.recurrent = nn.ModuleList(), nn.ModuleList()
        for layer in range(lstm.num_layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
            self.inputs.append(nn.Linear(w_ih.size(1), w_ih.size(0)))
            self.recurrent.append(nn.Linear(w_hh.size(1), w_hh.size(0)))
            with torch.no_grad():
                for linear, w, b in ((self.inputs[-1], w_ih, f"bias_ih_l{layer}"),
                                     (self.recurrent[-1], w_hh, f"bias_hh_l{layer}")):
                    linear.weight.copy_(w)
                    linear.bias.copy_(getattr(lstm, b))

    def forward(self, x, state=None):
        for inp, rec in zip(self.inputs, self.recurrent):
            pre = inp(x)  # every step's input projection at once
            h = c = x.new_zeros(x.size(0), self.hidden)
            outputs = []
            for t in range(x.size(1)):
                i, f, g, o = (pre[:, t] + rec(h)).chunk(4, dim=-1)  # nn.LSTM's gate order
                c = f.sigmoid() * c + i.sigmoid() * g.tanh()
                h = o.sigmoid() * c.tanh()
                outputs.append(h)
            x = torch.stack(outputs, dim=1)
        return x, None


def agreement(counted: int, predicted: int) -> float:
    return abs(counted - predicted) / predicted


@pytest.mark.parametrize("cfg", [KGRAM, {**KGRAM, "input": "onehot"}, {**KGRAM, "num_inner_layers": 0}])
def test_kgram_flops_match_the_counter(cfg):
    model = build_model(cfg, V, T)
    assert agreement(counted_step(model), flops_per_token(cfg, V, T) * B * T) < TOLERANCE


def test_lstm_counter_sees_only_the_head():
    """nn.LSTM has no formula in the counter, hence the explicit cell below."""
    model = build_model(LSTM, V, T)
    assert agreement(counted_step(model), 3 * forward_flops(LSTM, V, T)["head"] * B * T) < 1e-9


@pytest.mark.parametrize("cfg", [LSTM, {**LSTM, "num_layers": 1}, {**LSTM, "embed_dim": 40}])
def test_lstm_flops_match_the_counter_on_an_explicit_cell(cfg):
    model = build_model(cfg, V, T)
    explicit = ExplicitLSTM(model.lstm)
    x = torch.randn(B, T, cfg["embed_dim"])
    torch.testing.assert_close(explicit(x)[0], model.lstm(x)[0])  # the same network
    model.lstm = explicit
    assert agreement(counted_step(model), flops_per_token(cfg, V, T) * B * T) < TOLERANCE


def test_attention_flops_are_its_two_matmuls_over_the_full_window():
    d, heads = TRANSFORMER["d_model"], TRANSFORMER["n_heads"]
    q, k, v = (torch.randn(B, heads, T, d // heads, requires_grad=True) for _ in range(3))
    with counter() as count:
        explicit_attention(q, k, v, is_causal=True).sum().backward()
    per_layer = forward_flops(TRANSFORMER, V, T)["attention"] // TRANSFORMER["n_layers"]
    assert count.get_total_flops() == 3 * per_layer * B * T
    torch.testing.assert_close(explicit_attention(q, k, v, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


@pytest.mark.parametrize("changes", [{}, {"mlp": "swiglu"}, {"mlp": "silu", "mlp_hidden": 40},
                                     {"norm": "layernorm", "bias": True, "tie_weights": False},
                                     {"pos_encoding": "rope", "n_layers": 1}])
def test_transformer_flops_match_the_counter(changes, monkeypatch):
    cfg = {**TRANSFORMER, **changes}
    model = build_model(cfg, V, T)
    parts = forward_flops(cfg, V, T)
    # the fused kernel is invisible to the counter: without it the count is everything but attention
    assert agreement(counted_step(model), 3 * (sum(parts.values()) - parts["attention"]) * B * T) < 1e-9
    monkeypatch.setattr(F, "scaled_dot_product_attention", explicit_attention)
    assert agreement(counted_step(model), flops_per_token(cfg, V, T) * B * T) < TOLERANCE


@pytest.mark.parametrize("cfg", [KGRAM, TRANSFORMER])
def test_compact_head_counts_its_real_width(cfg):
    kept = list(range(0, V, 3))  # 21 ids + "other"
    model = build_model(cfg, V, T, compact_ids=kept)
    predicted = flops_per_token(cfg, V, T, output_vocab=len(kept) + 1)
    assert predicted < flops_per_token(cfg, V, T)
    if cfg["type"] == "transformer":
        predicted -= 3 * forward_flops(cfg, V, T)["attention"]  # the fused kernel the counter does not see
    assert agreement(counted_step(model), predicted * B * T) < TOLERANCE


# --- train.flops: a compute budget --------------------------------------------------------------------

TRAIN = {"batch_size": 8, "lr": 0.003, "min_lr_ratio": 0.1, "warmup_steps": 5, "eval_interval": 20,
         "eval_batches": 4, "checkpoint_interval": 10, "log_interval": 5, "threads": 1}
SMALL = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 1}


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return byte_tokens(tmp_path_factory.mktemp("tokens"))


def step_flops(model=SMALL, block_size=32, vocab=257):
    return flops_per_token(model, vocab, block_size) * TRAIN["batch_size"] * block_size


def test_a_budget_trains_exactly_the_steps_it_pays_for(tokens_dir, tmp_path):
    budget = 12.7 * step_flops()
    summary = train("m", SMALL, {**TRAIN, "flops": budget}, tokens_dir=tokens_dir, out_dir=tmp_path / "budget",
                    seed=3, block_size=32)
    assert summary["steps"] == 12 and summary["stopped_by"] == "flops" and summary["flops_budget"] == budget
    assert summary["flops_per_token"] == flops_per_token(SMALL, 257, 32)
    assert summary["train_flops"] == summary["flops_per_token"] * summary["tokens_seen"]
    assert summary["train_flops"] <= budget < summary["train_flops"] + step_flops()
    assert json.loads((tmp_path / "budget" / "summary.json").read_text())["train_flops"] == summary["train_flops"]
    # step for step the run of max_steps: 12, so its schedule, logging and evaluation follow the derived steps
    train("m", SMALL, {**TRAIN, "max_steps": 12}, tokens_dir=tokens_dir, out_dir=tmp_path / "steps", seed=3,
          block_size=32)
    budgeted, fixed = (pd.read_csv(tmp_path / d / "metrics.csv").drop(columns="elapsed_s") for d in ("budget", "steps"))
    pd.testing.assert_frame_equal(budgeted, fixed)
    assert budgeted["step"].iloc[-1] == 12 and pd.notna(budgeted["val_loss"].iloc[-1])


def test_the_schedule_decays_to_its_floor_at_the_derived_last_step():
    cfg = within_budget(TrainConfig(**TRAIN, flops=40.5 * step_flops()), flops_per_token(SMALL, 257, 32), 32, "m")
    assert cfg.max_steps == 40
    assert lr_scale(40, cfg) == pytest.approx(TRAIN["min_lr_ratio"]) and lr_scale(39, cfg) > lr_scale(40, cfg)
    assert within_budget(TrainConfig(**TRAIN), 123, 32, "m").max_steps == 1000  # no budget: max_steps


def test_a_compact_head_buys_more_steps(tokens_dir, tmp_path):
    budget = 5 * step_flops()
    summary = train("m", SMALL, {**TRAIN, "flops": budget}, tokens_dir=tokens_dir, out_dir=tmp_path, seed=3,
                    block_size=32, compact_vocab=True)
    assert summary["flops_per_token"] == flops_per_token(SMALL, 257, 32, summary["output_vocab"])
    assert summary["steps"] == budget // (summary["flops_per_token"] * TRAIN["batch_size"] * 32) > 5


@pytest.mark.parametrize("changes, message", [
    ({"flops": 1000.0}, "config key 'train.flops' of run m is 1000, less than one step: 8 x 32 tokens x "),
    ({"flops": 10.5 * step_flops(), "snapshot_steps": [11]}, "config key 'train.snapshot_steps' of run m: step 11 "
                                                              "is past the end, as train.flops"),
])
def test_a_budget_that_does_not_fit_stops_the_train_job_in_one_line(tokens_dir, tmp_path, changes, message):
    with pytest.raises(PicoError) as err:
        train("m", SMALL, {**TRAIN, **changes}, tokens_dir=tokens_dir, out_dir=tmp_path, seed=3, block_size=32)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "metrics.csv").exists()


STUDY = {"experiment": "x", "block_size": 32, "models": {"m": SMALL}}


def test_the_budget_a_warm_up_line_names_pays_for_more_steps_than_the_warm_up():
    """The train job's exact count: the budget the line advises is accepted (a rounded one could fall short)."""
    cfg = TrainConfig(**{**TRAIN, "flops": 2e10, "warmup_steps": 50})
    with pytest.raises(PicoError, match=r"raise train.flops to at least ([0-9,]+) \(51 steps\)") as err:
        budget_steps(cfg, 3_019_000, 64, "m")
    advised = int(re.search(r"at least ([0-9,]+)", str(err.value)).group(1).replace(",", ""))
    assert budget_steps(cfg.model_copy(update={"flops": advised}), 3_019_000, 64, "m") == 51


@pytest.mark.parametrize("change, message", [
    ({"train": {"flops": 1e12, "max_steps": 100}}, "config key 'train.flops': the budget sets the number of steps, "
                                                   "and train.max_steps (100) sets it too; drop max_steps"),
    ({"train": {"flops": 1e12, "max_minutes": 5}}, "config key 'train.flops': a budget of FLOPs fixes the steps"),
    ({"train": {"flops": 1e12}, "models": {"m": {**SMALL, "train": {"max_steps": 10}}}},
     "config key 'train.flops' of run m: the budget sets the number of steps"),
    ({"train": {"max_steps": 10}, "sweep": {"m": {"train.flops": [1e12]}}},
     "config key 'train.flops' of run m.train.flops=1000000000000.0: the budget sets"),
    ({"train": {"flops": 0}}, "config key 'train.flops'"),
    # a trained BPE's head width is known only after tokenizing: what the model costs without it already
    # exceeds 1e6
    ({"tokenizer": "bpe:4096", "train": {"flops": 1e6}},
     "config key 'train.flops' of run m is 1e+06, less than one step: 16 x 32 tokens x more than "),
    ({"tokenizer": "bpe:4096", "train": {"flops": 1e9, "warmup_steps": 0, "snapshot_steps": [10 ** 6]}},
     "step 1000000 is past the end"),
    ({"tokenizer": "bpe:4096", "train": {"flops": 1e9}},
     "steps, no more than train.warmup_steps (50): the learning rate would never finish warming up; raise "
     "train.flops to more than "),
    ({"tokenizer": "bpe:4096", "train": {"flops": 1e9}}, " (51 steps) or lower train.warmup_steps"),
    # the byte tokenizer fixes the head's width (257): the steps are exact before tokenizing, 1e10 // (16 x 32
    # x 135,360 FLOPs per token) = 144, where the model without its head would pay for 227
    ({"tokenizer": "byte", "train": {"flops": 1e10, "snapshot_steps": [200]}},
     "step 200 is past the end, as train.flops (1e+10) pays for 144 steps; drop it"),
    ({"train": {"flops": 1e9}}, "of run m is 1e+09, less than one step: 16 x 32 tokens x 9,735,360 FLOPs per token"),
])
def test_bad_budgets_are_one_line(change, message):
    with pytest.raises(PicoError) as err:
        parse(Study, {**STUDY, **change})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_max_steps_from_a_base_file_counts_as_given(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**STUDY, "train": {"max_steps": 50, "lr": 0.02}}))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "train": {"flops": 1e12}}))
    with pytest.raises(PicoError, match=r"config key 'train.flops': the budget sets the number of steps, and "
                                        r"train.max_steps \(50\) sets it too") as err:
        load_study([tmp_path / "study.yaml"])
    # the fix the line names drops the base's max_steps alone: the rest of its training recipe stays
    assert "unless the study says replace: [train.max_steps], which keeps the rest of its train:" in str(err.value)
    (tmp_path / "fixed.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "replace": ["train.max_steps"],
                                                         "train": {"flops": 1e12}}))
    assert load_study([tmp_path / "fixed.yaml"]).train_of("m").lr == 0.02
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(STUDY))  # max_steps left to its default: the budget rules
    assert load_study([tmp_path / "study.yaml"]).train_of("m").flops == 1e12


def test_a_budget_reaches_the_train_job_and_changes_it():
    plain = parse(Study, STUDY)
    budgeted = parse(Study, {**STUDY, "models": {"m": {**SMALL, "train": {"flops": 1e12}}},
                             "sweep": {"m": {"train.flops": [2e12]}}})
    job = jobs.train(budgeted, "m", 1)
    assert job != jobs.train(plain, "m", 1)  # a new param: Snakemake reruns the run's training
    assert job["train"]["flops"] == 1e12 and "max_steps" not in job["train"]  # derived, so not given
    assert parse(TrainJob, job).train.flops == 1e12  # the train command reads it back
    assert budgeted.train_of("m.train.flops=2000000000000.0").flops == 2e12
    assert "max_steps" not in jobs.study_file(parse(Study, {**STUDY, "train": {"flops": 1e12}}))["train"]


def test_summary_evaluation_tables_and_sweep_figure_carry_the_counts(tokens_dir, tmp_path):
    summary = train("m", SMALL, {**TRAIN, "max_steps": 2}, tokens_dir=tokens_dir, out_dir=tmp_path / "m", seed=3,
                    block_size=32)
    assert summary["train_flops"] == flops_per_token(SMALL, 257, 32) * 2 * TRAIN["batch_size"] * 32
    assert summary["flops_budget"] is None and summary["stopped_by"] == "max_steps"
    ev, _ = evaluate_model("m", tmp_path / "m" / "model.pt", tokens_dir)
    assert (ev["flops_per_token"], ev["train_flops"]) == (summary["flops_per_token"], summary["train_flops"])
    (tmp_path / "ev.json").write_text(json.dumps(ev))
    evals = {"m": {"3": str(tmp_path / "ev.json")}}
    models = tables.models_table([tmp_path / "m" / "summary.json"], tmp_path / "models.md", "exp")
    evaluated = tables.eval_table(evals, tmp_path / "eval.csv", tmp_path / "eval.md", "exp")
    for frame in (models, evaluated, sweep.read_runs(evals)):
        assert frame["train_flops"].iloc[0] == summary["train_flops"]
    assert models["flops_per_token"].iloc[0] == evaluated["flops_per_token"].iloc[0] == summary["flops_per_token"]

