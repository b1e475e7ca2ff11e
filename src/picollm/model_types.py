"""Model type -> the class that implements it, as "module:Class".

Plain strings, importable without torch: the workflow reads them to give each model's jobs the code
identity of its own type's module (picollm.codehash), and picollm.models imports a type only when built.
"""
MODEL_TYPES = {
    "kgram_mlp": "picollm.models.kgram:KGramMLP",
    "lstm": "picollm.models.lstm:LSTMLM",
    "transformer": "picollm.models.transformer:Transformer",
}


def type_module(model_type: str) -> str:
    return MODEL_TYPES[model_type].split(":")[0]
