"""Two models for the evaluation tests: one whose every next token is equally likely, and a tiny trained-size
model of each type."""
import torch

from picollm import models


class Uniform(torch.nn.Module):
    """Every next token equally likely: loss ln(V) per token, whatever the input."""
    context_limited = False

    def __init__(self, vocab_size=257, block_size=8):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, idx):
        return torch.zeros(*idx.shape, self.vocab_size) + 0 * self.dummy


def tiny(model_type="transformer", vocab=30, block=8):
    cfg = {"transformer": {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1},
           "lstm": {"type": "lstm", "embed_dim": 8, "hidden_dim": 16},
           "kgram_mlp": {"type": "kgram_mlp", "k": 2, "embed_dim": 8, "hidden_dim": 16}}[model_type]
    torch.manual_seed(0)
    return models.build_model(cfg, vocab, block).eval()
