"""`picollm tokenize`: every source's raw text -> {train,val}.bin + meta.json."""
import json
from pathlib import Path

from picollm import provenance
from picollm.config import TokenizerJob, parse
from picollm.data.tokens import tokenize


def run(args):
    job = parse(TokenizerJob, args.config)
    raw = {name: {s: str(Path(args.raw_dir) / name / f"{s}.txt") for s in ("train", "val")} for name in args.sources}
    inputs = [p for r in raw.values() for p in r.values()] + ([args.tokenizer_json] if args.tokenizer_json else [])
    outputs = [Path(args.out_dir) / name for name in ("train.bin", "val.bin", "meta.json")]
    rec = provenance.record("tokenize", config={**args.config, "sources": args.sources}, inputs=inputs,
                            outputs=outputs)
    meta = tokenize(job.tokenizer, raw, args.out_dir, args.threads, provenance=rec,
                    tokenizer_json=args.tokenizer_json)
    provenance.write(args.provenance, rec)
    print(json.dumps({s: v["tokens"] for s, v in meta["splits"].items()}))
