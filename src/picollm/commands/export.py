"""`picollm export`: a Transformer checkpoint -> a Hugging Face folder (config, safetensors, tokenizer)."""
import json

from picollm.export import export_model


def run(args):
    print(json.dumps(export_model(args.model_path, args.out_dir), indent=2))
