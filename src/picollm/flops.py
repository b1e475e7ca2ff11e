"""Training FLOPs per token of each model type, counted from its architecture (its parts by its module in
picollm.model_types, the output layer here), and the steps a `train.flops` budget buys.

Only matrix multiplications count, at 2 FLOPs per multiply-add; embeddings (lookups), biases, activations,
norms, softmax and the loss add a few per element, far below a matmul's, and are left out. Training costs
3 x the forward pass: the backward pass multiplies every matrix twice, once for the gradient of its input
and once for that of its weight (every matmul's input here comes from learned parameters, an embedding table
at least, so needs a gradient). tests/test_flops.py checks each type against torch.utils.flop_counter on real steps.

Pure Python (no torch): the study config checks a budget with it when the workflow is parsed.
"""
from __future__ import annotations

from picollm.config.validation import model_config
from picollm.errors import PicoError
from picollm.model_types import matmul, model_type

TRAIN_FACTOR = 3  # forward + backward (grad of input and of weight) per matmul


def forward_flops(model_cfg, vocab_size: int, block_size: int, output_vocab: int | None = None) -> dict:
    """{part: forward FLOPs per token}: `input` (k-gram first layer, LSTM input projections), `recurrent`
    (LSTM), `core` (hidden layers; a Transformer's qkv, projections and MLPs), `attention` and `head`.

    The head is output_vocab wide: the vocabulary (vocab_size, the default), or with compact_vocab the kept ids
    + 1; a head tied to the token table multiplies all the same. Attention is counted over the full window,
    not the causal half: every query of a block_size window against all block_size keys, as attention's plain
    math runs (the causal mask blanks the upper half of the product; a fused kernel may skip some of it) and
    as nanoGPT's and PaLM's MFU count it (benchmarks/ too); the causal half is what the tokens use. Training
    windows are always block_size long, so every token has the same share.
    """
    cfg = model_config(model_cfg)
    kind = model_type(cfg.type)  # its module's flops_parts and head_width
    parts = {"input": 0, "recurrent": 0, "core": 0, "attention": 0, **kind.flops_parts(cfg, block_size)}
    parts["head"] = matmul(kind.head_width(cfg), vocab_size if output_vocab is None else output_vocab)
    return parts


def flops_per_token(model_cfg, vocab_size: int, block_size: int, output_vocab: int | None = None) -> int:
    """Training FLOPs per token (forward + backward = 3 x forward_flops), matmuls only; see forward_flops."""
    return TRAIN_FACTOR * sum(forward_flops(model_cfg, vocab_size, block_size, output_vocab).values())


def compact_width(compact_ids) -> int:
    """The head's width of a compact vocabulary: its kept ids, and one row shared by every unseen id. Here, in a
    torch-free module picollm.models already imports, so that the model, its memory check and its FLOPs
    share it."""
    return len(set(compact_ids)) + 1


def output_vocab(meta, compact_vocab: bool) -> int:
    """The head's width for a token folder's meta.json (a picollm.data.meta.TokenMeta, left unimported so that
    module stays out of the code hash of every stage that counts FLOPs): the vocabulary, or its training ids +
    one shared row."""
    return compact_width(meta.compact_ids()) if compact_vocab else meta.vocab_size


def budget_steps(train_cfg, flops_per_token: int, block_size: int, run: str, lower_bound: bool = False) -> int:
    """The steps train.flops pays for: the most whose FLOPs stay within it, floor(flops / FLOPs per step).

    PicoError when it pays for no step, for no more than the warm-up, or a snapshot step lies beyond them.
    `lower_bound`: flops_per_token leaves out what is not known yet (the head, before tokenizing), so only a
    budget that is surely too small stops here; the train job checks again with the exact count.
    """
    per_step = flops_per_token * train_cfg.batch_size * block_size
    steps = int(train_cfg.flops) // per_step if per_step else 0  # int: exact for any integral budget
    of_run = f" of run {run}" if run else ""
    more, at_most = ("more than ", "at most ") if lower_bound else ("", "")
    if steps < 1:
        raise PicoError(
            f"config key 'train.flops'{of_run} is {train_cfg.flops:g}, less than one step: {train_cfg.batch_size} "
            f"x {block_size} tokens x {more}{flops_per_token:,} FLOPs per token = {more}{per_step:,} FLOPs; "
            f"raise train.flops to {more or 'at least '}that (or lower train.batch_size)")
    if steps <= train_cfg.warmup_steps:  # a derived run this short would stop before its lr peaks or decays
        raise PicoError(
            f"config key 'train.flops'{of_run} is {train_cfg.flops:g}, which pays for {at_most}{steps} steps, no more "
            f"than train.warmup_steps ({train_cfg.warmup_steps}): the learning rate would never finish warming up; "
            f"raise train.flops to {'more than ' if lower_bound else 'at least '}"
            f"{(train_cfg.warmup_steps + 1) * per_step:,} ({train_cfg.warmup_steps + 1} steps) or lower "
            f"train.warmup_steps")
    late = [s for s in train_cfg.kept_steps if s > steps]
    if late:
        raise PicoError(f"config key 'train.snapshot_steps'{of_run}: step {late[0]} is past the end, as train.flops "
                        f"({train_cfg.flops:g}) pays for {at_most}{steps} steps; drop it or raise train.flops")
    return steps
