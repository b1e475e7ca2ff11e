"""Which models have an exact Hugging Face `transformers` form, which picollm.export writes: config logic alone,
no torch, so that the workflow's target check can refuse an export target at parse time, before any job."""
from __future__ import annotations


def unexportable(model_cfg: dict) -> str | None:
    """Why a model of this config (a study's model entry, or a checkpoint's model_cfg) has no exact
    `transformers` form, naming what to train instead, in one line; None when it exports."""
    if model_cfg.get("type") != "transformer":
        return (f"only Transformer models can be exported to Hugging Face format, not {model_cfg.get('type')!r}; "
                f"export a transformer: pos_encoding: rope and norm: rmsnorm (a Llama), or pos_encoding: learned and "
                f"norm: layernorm (a GPT-2)")
    learned = model_cfg.get("pos_encoding", "learned") == "learned"
    layernorm = model_cfg.get("norm", "rmsnorm") == "layernorm"
    if learned and not layernorm:
        return ("a Transformer with learned positions and RMSNorm has no exact Hugging Face equivalent; "
                "train it with pos_encoding: rope (a Llama) or with norm: layernorm (a GPT-2)")
    if learned and model_cfg.get("mlp", "gelu") == "swiglu":
        return ("GPT-2 (learned positions, LayerNorm) has no gated MLP; train it with mlp: gelu or silu, "
                "or with pos_encoding: rope and norm: rmsnorm (a Llama)")
    if not learned and layernorm:
        return ("a Transformer with rotary positions and LayerNorm has no exact Hugging Face equivalent; "
                "train it with norm: rmsnorm (a Llama) or with pos_encoding: learned (a GPT-2)")
    return None


def refusals(models: dict) -> dict[str, str]:
    """{run: why it does not export} of `models` ({run: model config dict}); a run that exports is left out."""
    return {run: why for run, cfg in models.items() if (why := unexportable(cfg))}
