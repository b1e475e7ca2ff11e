"""Training levers: Muon on the hidden matrices, torch.compile, bf16 autocast; each checked for what it
changes and that a bad setting fails with one line."""
import pytest
import torch

from picollm.config import TrainConfig
from picollm.device import autocast_for, compile_model
from picollm.errors import PicoError
from picollm.loss import lm_loss
from picollm.models import build_model
from picollm.optim import make_optimizer, split_parameters

CPU = torch.device("cpu")
TRANSFORMER = {"type": "transformer", "d_model": 32, "n_heads": 2, "n_layers": 2}


def one_step(model, optimizer, vocab=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x, y = (torch.randint(0, vocab, (4, 16), generator=gen) for _ in range(2))
    optimizer.zero_grad()
    lm_loss(model, x, y).backward()
    optimizer.step()


@pytest.mark.parametrize("model_cfg", [TRANSFORMER, {"type": "lstm", "embed_dim": 8, "hidden_dim": 16},
                                       {"type": "kgram_mlp", "k": 2, "embed_dim": 8, "hidden_dim": 16}])
def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(model_cfg):
    torch.manual_seed(0)
    model = build_model(model_cfg, 50, 16)
    hidden, rest = split_parameters(model)
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)} | {id(model.head.weight)}
    assert hidden and all(p.dim() == 2 and id(p) not in tables for p in hidden)
    assert {id(p) for p in rest} >= tables and all(p.dim() == 1 for p in rest if id(p) not in tables)
    opt = make_optimizer(model, TrainConfig(**{"optimizer": "muon"}), CPU)
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    one_step(model, opt)
    for p in hidden:  # Muon's state: a momentum buffer, no Adam moments
        assert set(muon.state[p]) == {"momentum_buffer"} and not torch.equal(p, before[id(p)])
    for p in rest:
        assert "exp_avg" in adamw.state[p] and p not in muon.state and not torch.equal(p, before[id(p)])


def test_muon_and_adamw_learning_rates_follow_their_own_keys():
    model = build_model(TRANSFORMER, 50, 16)
    opt = make_optimizer(model, TrainConfig(**{"optimizer": "muon", "lr": 0.001, "muon_lr": 0.05}), CPU)
    assert [g["peak_lr"] for g in opt.param_groups] == [0.05, 0.001, 0.001]
    state = opt.state_dict()  # one checkpoint entry holding both optimizers
    fresh = make_optimizer(model, TrainConfig(**{"optimizer": "muon"}), CPU)
    fresh.load_state_dict(state)
    assert [g["lr"] for g in fresh.param_groups] == [g["lr"] for g in opt.param_groups]


def test_muon_without_hidden_matrices_is_one_line():
    class Bigram(torch.nn.Module):  # a lookup table and a head only
        def __init__(self):
            super().__init__()
            self.tok_emb = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 10)

    with pytest.raises(PicoError, match="muon needs 2-D hidden weight matrices and bigram has none.*optimizer: adamw"):
        make_optimizer(Bigram(), TrainConfig(**{"optimizer": "muon"}), CPU, "bigram")


def test_precision_auto_is_bf16_only_on_cpus_with_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert autocast_for(CPU, "auto") is None and autocast_for(CPU, "fp32") is None
    assert autocast_for(CPU, "bf16") is not None  # asked for: emulated, slower, but what the config says
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert autocast_for(CPU, "auto").fast_dtype == torch.bfloat16 and autocast_for(CPU, "fp32") is None


def test_bf16_autocast_runs_matmuls_in_bf16_with_fp32_weights():
    ctx = autocast_for(CPU, "bf16")
    model = build_model(TRANSFORMER, 50, 16)
    with ctx:  # matmuls run in bf16, the weights stay fp32
        out = model.blocks[0].attn.qkv(torch.randn(1, 32))
    assert out.dtype == torch.bfloat16 and model.blocks[0].attn.qkv.weight.dtype == torch.float32


def test_compiled_model_matches_eager_and_keeps_its_state_dict_keys():
    torch.manual_seed(0)
    eager_model = build_model(TRANSFORMER, 50, 16)
    compiled = build_model(TRANSFORMER, 50, 16)
    compiled.load_state_dict(eager_model.state_dict())
    compile_model(compiled)
    assert list(compiled.state_dict()) == list(eager_model.state_dict())
    x = torch.randint(0, 50, (2, 16))
    torch.testing.assert_close(compiled.features(x), eager_model.features(x), atol=1e-5, rtol=1e-5)


def test_compile_without_a_compiler_is_one_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CXX", "no-such-c++")
    with pytest.raises(PicoError, match="train.compile: true needs a C\\+\\+ compiler.*train.compile: false"):
        compile_model(build_model(TRANSFORMER, 50, 16))
