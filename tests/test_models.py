"""Model contract tests on tiny CPU models: shapes, causality, cached generation, overfitting one batch,
plus the k-gram one-hot/embedding equivalence and the transformer's RMSNorm and attention paths."""
import re

import pytest
import torch
import torch.nn.functional as F

from picollm import models
from picollm.errors import PicoError
from picollm.model_types import model_types
from picollm.models.kgram import KGramMLP
from picollm.models.transformer import RMSNorm

VOCAB, BLOCK = 50, 16
TINY_TRANSFORMER = {"type": "transformer", "d_model": 32, "n_heads": 4, "n_layers": 2}
CONFIGS = {
    "kgram_embedding": {"type": "kgram_mlp", "k": 3, "embed_dim": 16, "hidden_dim": 64, "input": "embedding"},
    "kgram_onehot": {"type": "kgram_mlp", "k": 3, "hidden_dim": 64, "input": "onehot"},
    "lstm": {"type": "lstm", "embed_dim": 16, "hidden_dim": 64},
    "transformer_defaults": TINY_TRANSFORMER,  # learned positions, GELU MLP
    "transformer_learned_silu": {**TINY_TRANSFORMER, "mlp": "silu"},
    "transformer_learned_swiglu": {**TINY_TRANSFORMER, "mlp": "swiglu"},
    "transformer_rope_silu_untied": {**TINY_TRANSFORMER, "pos_encoding": "rope", "mlp": "silu", "tie_weights": False},
    "transformer_rope_swiglu": {**TINY_TRANSFORMER, "pos_encoding": "rope", "mlp": "swiglu"},
    "transformer_gpt2": {**TINY_TRANSFORMER, "norm": "layernorm", "bias": True, "mlp": "gelu"},
}
TRANSFORMERS = [name for name in CONFIGS if name.startswith("transformer")]


def make(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build_model(CONFIGS[name], VOCAB, BLOCK).eval()


def tokens(B: int = 3, T: int = BLOCK, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def run_in_chunks(model, idx: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Logits from forward_step fed idx in consecutive chunks of the given sizes, carrying the state."""
    logits, state, start = [], None, 0
    for size in sizes:
        out, state = model.forward_step(idx[:, start:start + size], state)
        logits.append(out)
        start += size
    return torch.cat(logits, dim=1)


def test_configs_cover_every_model_type():
    assert {cfg["type"] for cfg in CONFIGS.values()} == set(model_types())


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_shape(name):
    model = make(name)
    for T in (1, 7, BLOCK):
        assert model(tokens(T=T)).shape == (3, T, VOCAB)


@pytest.mark.parametrize("name", CONFIGS)
@torch.no_grad()
def test_causal(name):
    model = make(name)
    idx = tokens()
    base = model(idx)
    for j in range(BLOCK):
        changed = idx.clone()
        changed[:, j] = (changed[:, j] + 1) % VOCAB
        out = model(changed)
        torch.testing.assert_close(out[:, :j], base[:, :j])
        assert not torch.allclose(out[:, j], base[:, j])  # the model does read token j


# A prefix then one token at a time (sampling), and chunks of several new tokens after a cache (which
# needs the transformer's explicit cached-causal mask).
@pytest.mark.parametrize("sizes", [[5] + [1] * (BLOCK - 5), [1] * BLOCK, [4, 5, 3, 1, 3]])
@pytest.mark.parametrize("name", CONFIGS)
@torch.no_grad()
def test_incremental_matches_full(name, sizes):
    model = make(name)
    idx = tokens()
    torch.testing.assert_close(run_in_chunks(model, idx, sizes), model(idx), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", CONFIGS)
def test_overfits_one_batch(name):
    model = make(name).train()
    # All 2 * 17 tokens distinct, so every context (even a k-gram's) determines its next token.
    batch = torch.randperm(VOCAB, generator=torch.Generator().manual_seed(2))[:2 * (BLOCK + 1)].view(2, BLOCK + 1)
    x, y = batch[:, :-1], batch[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_counts(name):
    counts = models.count_parameters(make(name))
    print(f"{name}: {counts}")
    assert 0 < counts["params_non_embedding"] <= counts["params"]


def test_context_limits():
    assert models.model_class("transformer").context_limited
    assert not models.model_class("kgram_mlp").context_limited
    model = make("transformer_rope_swiglu")
    assert model.state_length(None) == 0
    _, state = model.forward_step(tokens(T=BLOCK), None)
    assert model.state_length(state) == BLOCK
    with pytest.raises(ValueError, match="block_size"):
        model.forward_step(tokens(T=1), state)
    with pytest.raises(ValueError, match="block_size"):
        model(tokens(T=BLOCK + 1))


@torch.no_grad()
def test_kgram_onehot_equals_embedding():
    k, E, H = 3, 8, 32
    torch.manual_seed(0)
    emb = KGramMLP(VOCAB, BLOCK, k=k, embed_dim=E, hidden_dim=H, num_inner_layers=1, input="embedding").eval()
    onehot = KGramMLP(VOCAB, BLOCK, k=k, embed_dim=E, hidden_dim=H, num_inner_layers=1, input="onehot").eval()
    # Slot j's pre-activation is W_j e(c_j) = W_j Emb^T one_hot(c_j), with W_j = W1[:, j*E:(j+1)*E]; so the
    # one-hot weight block j is W_j Emb^T (H, V). Padding is the zero embedding row / the zero one-hot.
    table, w1 = emb.embed.weight[:VOCAB], emb.fc_in.weight  # (V, E), (H, k*E)
    onehot.fc_in.weight.copy_(torch.cat([w1[:, j * E:(j + 1) * E] @ table.T for j in range(k)], dim=1))
    shared = {n: p for n, p in emb.state_dict().items() if n != "fc_in.weight" and not n.startswith("embed.")}
    assert not onehot.load_state_dict(shared, strict=False).unexpected_keys

    idx = tokens()
    torch.testing.assert_close(onehot(idx), emb(idx))
    # The column gather is the dense one-hot matmul of the starter, without the (B, T, k*V) tensor.
    padded = F.pad(idx, (k - 1, 0), value=VOCAB)
    dense = F.one_hot(padded.unfold(1, k, 1), VOCAB + 1)[..., :VOCAB].flatten(2).float()  # (B, T, k*V)
    reference = onehot.head(onehot.inner(F.silu(onehot.fc_in(dense))))
    torch.testing.assert_close(onehot(idx), reference)


def test_rmsnorm_matches_torch():
    torch.manual_seed(0)
    norm = RMSNorm(32)
    torch.nn.init.normal_(norm.weight)
    x = 3 * torch.randn(4, 7, 32)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (32,), norm.weight, eps=1e-6))


# The explicit attention (need_weights) equals the fused sdpa path in each of its mask cases: no cache
# (is_causal), one new token after a cache (no mask), several new tokens after a cache (explicit mask).
@pytest.mark.parametrize("cached, new", [(0, BLOCK), (0, 1), (5, 1), (5, 6)])
@pytest.mark.parametrize("name", TRANSFORMERS)
@torch.no_grad()
def test_manual_attention_matches_sdpa(name, cached, new):
    model = make(name)
    idx = tokens(T=cached + new)
    state = model.forward_step(idx[:, :cached], None)[1] if cached else None
    fused, fused_state, _ = model._forward(idx[:, cached:], state, need_weights=False)
    manual, manual_state, maps = model._forward(idx[:, cached:], state, need_weights=True)
    torch.testing.assert_close(manual, fused)
    torch.testing.assert_close(manual_state, fused_state)
    assert [m.shape for m in maps] == [(3, 4, new, cached + new)] * 2


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_attention_maps(name):
    maps = make(name).attention_maps(tokens())
    assert len(maps) == 2
    for weights in maps:
        assert weights.shape == (3, 4, BLOCK, BLOCK)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, BLOCK))
        assert (weights.triu(diagonal=1) == 0).all()


def test_unknown_hyperparameter_is_named():
    with pytest.raises(PicoError, match="'n_head'"):
        models.build_model({**TINY_TRANSFORMER, "n_head": 4}, VOCAB, BLOCK)


@pytest.mark.parametrize("cfg, message", [
    ({**TINY_TRANSFORMER, "d_model": 30}, "divisible"),
    ({**TINY_TRANSFORMER, "mlp": "relu"}, "mlp"),
    ({**TINY_TRANSFORMER, "norm": "batchnorm"}, "norm"),
    ({**TINY_TRANSFORMER, "pos_encoding": "alibi"}, "pos_encoding"),
    ({**TINY_TRANSFORMER, "d_model": 12, "pos_encoding": "rope"}, "even"),
    ({"type": "kgram_mlp", "input": "dense"}, "input"),
])
def test_bad_hyperparameter_values_raise(cfg, message):
    """Checked once, by the model's config class (picollm.config), before any module is built."""
    with pytest.raises(PicoError, match=message):
        models.build_model(cfg, VOCAB, BLOCK)


def test_the_one_hot_first_layer_counts_and_trains_as_a_table():
    """The one-hot k-gram's first layer picks columns (0 FLOPs, picollm.flops): it is embedding in the
    parameter split (not Kaplan's N) and AdamW's under optimizer: muon, like nn.Embedding in the other form."""
    from picollm.optim import split_parameters

    vocab, k, hidden = 50, 3, 16
    onehot = models.build_model({"type": "kgram_mlp", "k": k, "hidden_dim": hidden, "input": "onehot"}, vocab, 16)
    counts = models.count_parameters(onehot)
    assert counts["params_embedding"] == k * vocab * hidden
    assert counts["params_non_embedding"] == counts["params"] - k * vocab * hidden - counts["params_head"]
    muon, adamw = split_parameters(onehot)
    assert any(p is onehot.fc_in.weight for p in adamw) and not any(p is onehot.fc_in.weight for p in muon)


class Sampler:
    """Stands for the training state a resume point holds beside its weights, which weights_only refuses."""


def test_an_undamaged_resume_point_is_never_called_corrupt(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "sampler": Sampler()}, tmp_path / "last.pt")
    with pytest.raises(PicoError, match=r"last.pt is the resume point of an unfinished training, not a model: keep "
                                        r"it; rerun the training \(the same snakemake command\) to continue"):
        models.read_checkpoint(tmp_path / "last.pt")
    for name, says in [("other.pt", "is a whole PyTorch file but no pico-llm model"),
                       ("last.damaged.pt", "is a resume point that training could not resume, kept for a look"),
                       ("last.0123456789ab.pt", "is the resume point of a training of another config, set aside")]:
        (tmp_path / name).write_bytes((tmp_path / "last.pt").read_bytes())
        with pytest.raises(PicoError, match=f"{re.escape(name)} {says}"):
            models.read_checkpoint(tmp_path / name)
    whole = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(whole[: len(whole) - 40])  # its end cut off: damaged after all
    with pytest.raises(PicoError, match="last.pt is truncated or corrupt .*; delete it and rerun training"):
        models.read_checkpoint(tmp_path / "last.pt")


def test_a_model_class_that_lacks_a_member_every_model_offers_stops_where_it_is_built(monkeypatch):
    """A type's class without forward_step would train, then fail in the sample job: it stops at build_model, before
    any training, naming what is missing and where to read what a model offers."""
    class NoStep(torch.nn.Module):
        context_limited = False

        def __init__(self, vocab_size, block_size, **hyperparameters):
            super().__init__()
            self.head = torch.nn.Linear(4, vocab_size)

        def features(self, idx):
            return torch.zeros(*idx.shape, 4)

    monkeypatch.setattr(models, "model_class", lambda model_type: NoStep)
    with pytest.raises(PicoError, match=r"^model type 'lstm' \(picollm.models.lstm:LSTMLM\) has no forward_step, which "
                                        r"every model offers; add it \(docs/extending.md, What a model offers\)$"):
        models.build_model({"type": "lstm"}, 10, 8)
