"""FLOPs per token (picollm.flops) against torch's own count of one training step, and train.flops budgets.

torch.utils.flop_counter.FlopCounterMode counts the aten matmuls a step runs. It has no formula for the
in-place addmm_ with which the fused loss (picollm.loss) accumulates the head's weight gradient, so the
tests give it addmm's. On the CPU it sees no scaled_dot_product_attention and has no formula for nn.LSTM,
so those two parts are checked on their own: attention run as explicit matmuls, and the LSTM as an explicit
cell of nn.Linear layers with nn.LSTM's weights (the same numbers, so the same network).
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, mm_flop

from conftest import byte_tokens
from picollm.flops import flops_per_token, forward_flops
from picollm.loss import lm_loss
from picollm.models import build_model
from picollm.train import train

B, T, V = 3, 16, 61
KGRAM = {"type": "kgram_mlp", "k": 3, "embed_dim": 8, "hidden_dim": 24, "num_inner_layers": 2}
LSTM = {"type": "lstm", "embed_dim": 12, "hidden_dim": 20, "num_layers": 2}
TRANSFORMER = {"type": "transformer", "d_model": 32, "n_heads": 4, "n_layers": 2}
TOLERANCE = 0.05


def counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: lambda c, a, b, *_, **__: mm_flop(a, b)})


def counted_step(model, vocab_size=V) -> int:
    """FLOPs FlopCounterMode counts in one training step (the trainer's loss, forward and backward)."""
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, vocab_size, (B, T), generator=gen) for _ in range(2))
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


TRAIN = {"batch_size": 8, "lr": 0.003, "min_lr_ratio": 0.1, "warmup_steps": 5, "eval_interval": 20,
         "eval_batches": 4, "checkpoint_interval": 10, "log_interval": 5, "threads": 1}
SMALL = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 1}


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return byte_tokens(tmp_path_factory.mktemp("tokens"))


def test_summary_evaluation_tables_and_sweep_figure_carry_the_counts(tokens_dir, tmp_path):
    from picollm import tables
    from picollm.evaluate import evaluate_model
    from picollm.plots import sweep
    summary = train("m", SMALL, {**TRAIN, "max_steps": 2}, tokens_dir=tokens_dir, out_dir=tmp_path / "m", seed=3,
                    block_size=32)
    assert summary["train_flops"] == flops_per_token(SMALL, 257, 32) * 2 * TRAIN["batch_size"] * 32
    ev, _ = evaluate_model("m", tmp_path / "m" / "model.pt", tokens_dir)
    assert (ev["flops_per_token"], ev["train_flops"]) == (summary["flops_per_token"], summary["train_flops"])
    (tmp_path / "ev.json").write_text(json.dumps(ev))
    evals = {"m": {"3": str(tmp_path / "ev.json")}}
    models = tables.models_table([tmp_path / "m" / "summary.json"], tmp_path / "models.md", "exp")
    evaluated = tables.eval_table(evals, tmp_path / "eval.csv", tmp_path / "eval.md", "exp")
    for frame in (models, evaluated, sweep.read_runs(evals)):
        assert frame["train_flops"].iloc[0] == summary["train_flops"]
    assert models["flops_per_token"].iloc[0] == evaluated["flops_per_token"].iloc[0] == summary["flops_per_token"]
