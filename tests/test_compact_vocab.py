"""The compact output vocabulary defines a full distribution, and its loss equals the full-vocabulary loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from picollm.models import build_model, checkpoint_dict, load_model
from picollm.sampling import generate
from picollm.loss import lm_loss

V, KEPT = 40, [0, 3, 5, 7, 11, 39]


@pytest.mark.parametrize("cfg", [{"type": "lstm", "embed_dim": 8, "hidden_dim": 16},
                                 {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1},
                                 {"type": "kgram_mlp", "k": 2, "embed_dim": 4, "hidden_dim": 8}])
def test_full_distribution_and_equal_loss(cfg, tmp_path):
    torch.manual_seed(0)
    model = build_model(cfg, V, 16, compact_ids=KEPT)
    assert model.other == len(KEPT) and model.inner.vocab_size == len(KEPT) + 1
    x = torch.randint(0, V, (3, 10))
    y = torch.tensor(KEPT)[torch.randint(0, len(KEPT), (3, 10))]
    y[0, :4] = torch.tensor([1, 2, 4, 38])  # unseen ids as targets too
    logits = model(x)
    assert logits.shape == (3, 10, V)
    probs = logits.softmax(-1)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 10), atol=1e-5)
    unseen = [i for i in range(V) if i not in KEPT]
    assert torch.allclose(probs[..., unseen], probs[..., unseen[:1]].expand(-1, -1, len(unseen)), atol=1e-7)
    full_ce = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    assert torch.allclose(lm_loss(model, x, y), full_ce, atol=1e-5)
    # the unseen ids share one row, so each one's logit is that row's: the model starts near uniform over all V
    assert torch.equal(logits[..., unseen], logits[..., unseen[:1]].expand(-1, -1, len(unseen)))
    assert abs(probs[0, 0, unseen].sum().item() - len(unseen) / V) < 0.1

    torch.save(checkpoint_dict(model, cfg, V, 16), tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    assert torch.allclose(loaded(x), logits.detach(), atol=1e-6)
    out = generate(loaded, [0, 3], max_new_tokens=5, p=0.9, seed=0)
    assert out.shape == (7,)


def test_uniform_other_mass_gives_log_unseen_penalty():
    model = build_model({"type": "lstm", "embed_dim": 4, "hidden_dim": 4}, V, 8, compact_ids=KEPT)
    assert model.log_unseen == pytest.approx(math.log(V - len(KEPT)))


def test_evaluation_losses_equal_the_full_logits_cross_entropy():
    """evaluate's chunked head (the compact columns, log(n) on the shared one) scores as the full logits do."""
    from picollm.evaluate import token_losses
    torch.manual_seed(0)
    model = build_model({"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1}, V, 16, compact_ids=KEPT)
    x, y = torch.randint(0, V, (2, 12)), torch.randint(0, V, (2, 12))
    with torch.no_grad():
        want = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1), reduction="none").view(2, 12)
        assert torch.allclose(token_losses(model, x, y, chunk=5), want, atol=1e-5)


def test_a_compact_checkpoint_of_another_form_is_refused_in_one_line(tmp_path):
    from picollm.errors import PicoError
    cfg = {"type": "lstm", "embed_dim": 4, "hidden_dim": 4}
    ckpt = checkpoint_dict(build_model(cfg, V, 8, compact_ids=KEPT), cfg, V, 8)
    del ckpt["compact_form"]  # a checkpoint saved without its compact form
    torch.save(ckpt, tmp_path / "model.pt")
    with pytest.raises(PicoError, match="older pico-llm.*rerun training"):
        load_model(tmp_path / "model.pt")
