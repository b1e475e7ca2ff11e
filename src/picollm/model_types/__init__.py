"""Model type -> the class that implements it, as "module:Class".

Plain strings, importable without torch: the workflow reads them to give each model's jobs the code
identity of its own type's module (picollm.codehash), and picollm.models imports a type only when built.
"""
from picollm.errors import PicoError

MODEL_TYPES = {
    "kgram_mlp": "picollm.models.kgram:KGramMLP",
    "lstm": "picollm.models.lstm:LSTMLM",
    "transformer": "picollm.models.transformer:Transformer",
}


def type_module(model_type: str) -> str:
    if model_type not in MODEL_TYPES:
        raise PicoError(f"model type {model_type!r} has a config class but no entry in "
                        f"picollm.model_types.MODEL_TYPES; add one (docs/extending.md, step 2)")
    return MODEL_TYPES[model_type].split(":")[0]
