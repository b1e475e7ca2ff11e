"""Optimizers: AdamW for everything, or Muon for the hidden weight matrices with AdamW for the rest.

Muon (torch.optim.Muon) orthogonalises each 2-D update with a few Newton-Schulz iterations, which suits
the square-ish matrices inside the network but not lookup tables or the output layer, so the parameters
are split as modded-nanogpt splits them: Muon for the 2-D weights of the model's core, AdamW for the token
and position tables, the head (tied or not), norm gains and biases.
"""
from __future__ import annotations

import torch

from picollm.config import TrainConfig
from picollm.errors import PicoError
from picollm.models import CompactVocab, table_parameters


def split_parameters(model: torch.nn.Module) -> tuple[list, list]:
    """(hidden 2-D weight matrices, everything else): the parameters Muon may update, and the rest."""
    inner = model.inner if isinstance(model, CompactVocab) else model
    tables = {id(p) for p in table_parameters(model) | set(inner.head.parameters())}
    params = [p for p in model.parameters() if p.requires_grad]
    hidden = [p for p in params if p.dim() == 2 and id(p) not in tables]
    rest = [p for p in params if p.dim() != 2 or id(p) in tables]
    return hidden, rest


def adamw(params: list, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # Decay matrices and embeddings (dim >= 2), not biases and norm gains: the nanoGPT convention.
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    # fused: one kernel for the whole parameter update (torch has it for CUDA and CPU), same numbers
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             fused=device.type in ("cuda", "cpu"))


class Optimizers:
    """Several optimizers stepped as one: one state_dict for checkpoints, one param_groups list for the
    learning-rate schedule (each group keeps its own peak lr in 'peak_lr', which the schedule scales)."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        # read through every time: load_state_dict replaces an optimizer's group dicts
        return [g for opt in self.optimizers for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, name: str = "the model"
                   ) -> Optimizers:
    """train.optimizer: `adamw` (every parameter) or `muon` (hidden matrices; AdamW for the rest).

    Every param group records its peak learning rate as 'peak_lr': Muon's is train.muon_lr, AdamW's train.lr.
    """
    if cfg.optimizer == "adamw":
        opt = adamw([p for p in model.parameters() if p.requires_grad], cfg, device)
        for g in opt.param_groups:
            g["peak_lr"] = cfg.lr
        return Optimizers(opt)
    hidden, rest = split_parameters(model)
    if not hidden:
        raise PicoError(f"train.optimizer: muon needs 2-D hidden weight matrices and {name} has none (only "
                        f"embeddings, head, norms and biases); use train.optimizer: adamw for it")
    # adjust_lr_fn="original" scales each update by sqrt(max(1, rows / cols)) as Keller Jordan's Muon does,
    # so muon_lr means the same for square and rectangular matrices.
    muon = torch.optim.Muon(hidden, lr=cfg.muon_lr, momentum=cfg.muon_momentum,
                            weight_decay=cfg.muon_weight_decay, adjust_lr_fn="original")
    rest_opt = adamw(rest, cfg, device)
    for g in muon.param_groups:
        g["peak_lr"] = cfg.muon_lr
    for g in rest_opt.param_groups:
        g["peak_lr"] = cfg.lr
    return Optimizers(muon, rest_opt)
