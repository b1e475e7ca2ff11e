"""`picollm evaluate`: whole-split validation loss, perplexity, bits per byte and sampling measures."""
import json
import math
from pathlib import Path

import pandas as pd
import torch

from picollm import provenance
from picollm.config import EvaluateJob, parse
from picollm.device import use_threads
from picollm.errors import PicoError
from picollm.evaluate import evaluate_model
from picollm.io import write_csv, write_json


def run(args):
    job = parse(EvaluateJob, args.config)
    use_threads(args.threads)
    torch.manual_seed(job.seed)
    tokens = Path(args.tokens_dir)
    rec = provenance.record("evaluate", seed=job.seed, config=args.config,
                            inputs=[args.model_path, tokens / "meta.json", tokens / "val.bin",
                                    *([args.samples] if args.samples else [])],
                            outputs=[args.out, *([args.sampling_out] if args.sampling_out else [])])
    result, rows = evaluate_model(args.name, args.model_path, tokens, device=job.device,
                                  max_tokens=job.evaluate.max_tokens, samples_path=args.samples,
                                  sampling=job.sampling, seed=job.seed, english=job.data.english,
                                  scoring=job.evaluate.scoring)
    if result["weights_sha256"]:  # what the loaded model.pt holds
        rec["content"][str(args.model_path)] = result["weights_sha256"]
    not_finite = {k: result[k] for k in ("val_loss", "perplexity", "bpb") if not math.isfinite(result[k])}
    if not_finite:  # never a result: a table would average it in
        raise PicoError(f"evaluating {args.name} gave {', '.join(f'{k} {v}' for k, v in not_finite.items())}: the "
                        f"model's outputs are not finite numbers; {args.model_path} is damaged or its training "
                        f"diverged: delete it and rerun training")
    point = job.point.model_dump(mode="json") if job.point else None
    write_json(args.out, {**result, "run": args.name, "seed": job.seed, "sweep": point,
                          "provenance": rec})
    if args.sampling_out:
        write_csv(args.sampling_out, pd.DataFrame(rows).assign(seed=job.seed))
    provenance.write(args.provenance, rec)
    print(json.dumps({k: result[k] for k in ("model", "val_loss", "perplexity", "bpb", "val_tokens_scored")}))
