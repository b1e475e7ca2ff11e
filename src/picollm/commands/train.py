"""`picollm train`: one model, resuming from <out-dir>/last.pt when present."""
import json
from pathlib import Path

from picollm import distributed, provenance
from picollm.config import validate_part
from picollm.device import resolve_device, use_threads
from picollm.errors import PicoError
from picollm.models import model_class
from picollm.train import train


def run(args):
    cfg = validate_part(args.config, required=("models",),
                        optional=("seed", "device", "block_size", "compact_vocab", "train"))
    if len(cfg["models"]) != 1:
        raise PicoError(f"--config names {len(cfg['models'])} models; a train job trains exactly one")
    (name, model_cfg), = cfg["models"].items()
    model_class(model_cfg["type"])  # imported now, so the provenance record's code identity holds it
    if args.devices * args.nodes > 1 and not distributed.under_torchrun():
        return distributed.relaunch(args.argv, args.devices, args.nodes, args.threads, resolve_device(cfg["device"]),
                                    cfg["train"]["batch_size"])
    use_threads(distributed.threads_per_rank(args.threads))
    tokens = Path(args.tokens_dir)
    weights = {s["name"]: s["weight"] for s in cfg.get("data", {}).get("sources", [])} or None
    rec = provenance.record("train", seed=cfg["seed"], config=args.config, inputs=[tokens / "meta.json"])
    summary = train(name, model_cfg, cfg["train"], tokens_dir=tokens, out_dir=args.out_dir, seed=cfg["seed"],
                    block_size=cfg["block_size"], device=cfg["device"], weights=weights,
                    compact_vocab=cfg["compact_vocab"], provenance=rec)
    if not distributed.is_main():  # under torchrun, rank 0 wrote the outputs and reports them
        return
    provenance.write(args.provenance, rec)
    print(json.dumps({k: v for k, v in summary.items() if k != "provenance"}))
