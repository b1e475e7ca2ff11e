"""`picollm sample`: greedy and nucleus samples of one model -> JSONL."""
import json

from picollm import provenance
from picollm.config import SampleJob, parse
from picollm.data.tokenizer import checkpoint_tokenizer
from picollm.device import resolve_device, use_threads
from picollm.io import atomic_path
from picollm.models import load_model
from picollm.sampling import sample_records


def run(args):
    job = parse(SampleJob, args.config)
    seed = job.seed
    use_threads(args.threads)
    model = load_model(args.model_path, resolve_device(args.device))
    tokenizer = checkpoint_tokenizer(model.checkpoint)
    records = sample_records(model, tokenizer, args.name, job.sampling, seed)
    for rec in records:  # so every table and figure built from samples can state the training tokens
        rec["train_tokens"] = model.checkpoint["summary"]["tokens_seen"]
    with atomic_path(args.out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    provenance.write(args.provenance, provenance.record("sample", config=args.config, seed=seed,
                                                        inputs=[args.model_path], outputs=[args.out],
                                                        content={args.model_path: model.checkpoint.get("sha256")}))
    print(f"{len(records)} samples -> {args.out}")
