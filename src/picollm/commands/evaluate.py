"""`picollm evaluate`: whole-split validation loss, perplexity, bits per byte and sampling measures."""
import json
from pathlib import Path

import pandas as pd
import torch

from picollm import provenance
from picollm.config import validate_part
from picollm.device import use_threads
from picollm.evaluate import evaluate_model
from picollm.io import atomic_path, write_json


def run(args):
    cfg = validate_part(args.config, optional=("seed", "device", "sampling", "evaluate"))
    use_threads(args.threads)
    torch.manual_seed(cfg["seed"])
    tokens = Path(args.tokens_dir)
    rec = provenance.record("evaluate", seed=cfg["seed"], config=args.config,
                            inputs=[args.model_path, tokens / "meta.json", tokens / "val.bin",
                                    *([args.samples] if args.samples else [])],
                            outputs=[args.out, *([args.sampling_out] if args.sampling_out else [])])
    result, rows = evaluate_model(args.name, args.model_path, tokens, device=cfg["device"],
                                  max_tokens=cfg["evaluate"]["max_tokens"],
                                  samples_path=args.samples, sampling_cfg=cfg["sampling"], seed=cfg["seed"],
                                  sweep_p=cfg["sampling"]["sweep_p_values"])
    point = next(({"model": m, "key": k, "value": v[0]} for m, grid in cfg.get("sweep", {}).items()
                  for k, v in grid.items()), None)
    write_json(args.out, {**result, "run": args.name, "seed": cfg["seed"], "sweep": point,
                          "provenance": rec})
    if args.sampling_out:
        with atomic_path(args.sampling_out) as tmp:
            pd.DataFrame(rows).assign(seed=cfg["seed"]).to_csv(tmp, index=False)
    provenance.write(args.provenance, rec)
    print(json.dumps({k: result[k] for k in ("model", "val_loss", "perplexity", "bpb", "val_tokens_scored")}))
