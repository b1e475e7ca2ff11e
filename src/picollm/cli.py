"""`picollm <stage> ...`: the commands the Snakemake rules call (and a user can run by hand).

Every stage takes explicit input and output paths and its slice of the config as JSON, writes its
outputs atomically, and a provenance record. Bad input ends with one line, `error: ...`, and exit 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from picollm.errors import PicoError


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None


def _pairs(items) -> dict:
    """['name=path', ...] -> {name: path}."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise PicoError(f"expected NAME=PATH, got {item!r}")
        out[name] = path
    return out


def cmd_validate_config(args):
    from picollm.config import load_config
    cfg = load_config(args.config)
    print(json.dumps(cfg, indent=2) if args.show else f"{args.config}: valid ({len(cfg['models'])} models)")


def cmd_download(args):
    from picollm import provenance
    from picollm.data.sources import download
    counts = download(args.source, args.seed, args.val_fraction, args.train, args.val)
    provenance.write(args.provenance, provenance.record("download", config=args.source, seed=args.seed,
                                                        outputs=[args.train, args.val], counts=counts,
                                                        val_fraction=args.val_fraction))
    print(f"{args.source['name']}: {counts}")


def cmd_tokenize(args):
    from picollm import provenance
    from picollm.data.tokens import tokenize
    from picollm.device import use_threads
    use_threads(args.threads)
    raw = {name: {s: str(Path(args.raw_dir) / name / f"{s}.txt") for s in ("train", "val")} for name in args.sources}
    rec = provenance.record("tokenize", config={"tokenizer": args.tokenizer, "sources": args.sources},
                            inputs=[p for r in raw.values() for p in r.values()])
    meta = tokenize(args.tokenizer, raw, args.out_dir, args.threads, provenance=rec)
    provenance.write(args.provenance, rec)
    print(json.dumps({s: v["tokens"] for s, v in meta["splits"].items()}))


def cmd_train(args):
    from picollm import provenance
    from picollm.device import use_threads
    from picollm.train import train
    use_threads(args.threads)
    tokens = Path(args.tokens_dir)
    rec = provenance.record("train", seed=args.seed, inputs=[tokens / "meta.json"],
                            config={"model": args.model, "train": args.train, "block_size": args.block_size,
                                    "device": args.device, "weights": args.weights, "compact_vocab": args.compact_vocab})
    summary = train(args.name, args.model, args.train, tokens_dir=tokens, out_dir=args.out_dir, seed=args.seed,
                    block_size=args.block_size, device=args.device, weights=args.weights,
                    compact_vocab=args.compact_vocab, provenance=rec)
    provenance.write(args.provenance, rec)
    print(json.dumps({k: v for k, v in summary.items() if k != "provenance"}))


def cmd_sample(args):
    import torch

    from picollm import provenance
    from picollm.data.tokenizer import get_tokenizer
    from picollm.device import resolve_device, use_threads
    from picollm.io import atomic_path
    from picollm.models import load_model
    from picollm.sampling import sample_records
    use_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_model(args.model_path, resolve_device(args.device))
    tokenizer = get_tokenizer(model.checkpoint["tokenizer"])
    records = sample_records(model, tokenizer, args.name, args.sampling, args.seed)
    for rec in records:  # so every table and figure built from samples can state the training tokens
        rec["train_tokens"] = model.checkpoint["summary"]["tokens_seen"]
    with atomic_path(args.out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    provenance.write(args.provenance, provenance.record("sample", config=args.sampling, seed=args.seed,
                                                        inputs=[args.model_path], outputs=[args.out]))
    print(f"{len(records)} samples -> {args.out}")


def cmd_tables(args):
    from picollm import provenance, tables
    if args.samples:
        tables.samples_table(args.samples, args.samples_csv, args.samples_md, args.experiment)
    if args.summaries:
        tables.models_table(args.summaries, args.models_md, args.experiment)
    if args.evals:
        tables.eval_table(args.evals, args.eval_csv, args.eval_md, args.experiment)
    if args.sampling_inputs:
        tables.sampling_table(args.sampling_inputs, args.sampling_csv, args.experiment)
    provenance.write(args.provenance, provenance.record("tables", inputs=[*args.samples, *args.summaries, *args.evals,
                                                                          *args.sampling_inputs]))


def cmd_figure(args):
    from picollm import provenance
    inputs = list(_pairs(args.inputs).values()) if args.figure not in ("sample-comparison", "p-sweep") else args.inputs
    rec = provenance.record(f"figure {args.figure}", inputs=inputs, outputs=[args.out])
    if args.figure == "loss-curves":
        from picollm.plots import loss_curves
        loss_curves.plot(_pairs(args.inputs), args.out, args.experiment, provenance=rec)
    elif args.figure == "sample-comparison":
        from picollm.plots import sample_comparison
        sample_comparison.plot(args.inputs[0], args.out, args.experiment, provenance=rec)
    elif args.figure == "attention-heads":
        from picollm.plots import attention_heads
        attention_heads.plot(_pairs(args.inputs), args.out, args.experiment, prompt=args.prompt, provenance=rec)
    elif args.figure == "p-sweep":
        from picollm.plots import p_sweep
        p_sweep.plot(args.inputs[0], args.out, args.experiment, provenance=rec)
    elif args.figure == "grad-norms":
        from picollm.plots import grad_norms
        grad_norms.plot(_pairs(args.inputs), args.out, args.experiment, provenance=rec)
    provenance.write(args.provenance, rec)


def cmd_evaluate(args):
    import pandas as pd
    import torch

    from picollm import provenance
    from picollm.device import use_threads
    from picollm.evaluate import evaluate_model
    from picollm.io import atomic_path, write_json
    use_threads(args.threads)
    torch.manual_seed(args.seed)
    tokens = Path(args.tokens_dir)
    rec = provenance.record("evaluate", seed=args.seed, config={"sampling": args.sampling, "sweep_p": args.sweep_p},
                            inputs=[args.model_path, tokens / "meta.json", tokens / "val.bin",
                                    *([args.samples] if args.samples else [])],
                            outputs=[args.out, *([args.sampling_out] if args.sampling_out else [])])
    result, rows = evaluate_model(args.name, args.model_path, tokens, device=args.device, batch_size=args.batch_size,
                                  samples_path=args.samples, sampling_cfg=args.sampling, seed=args.seed,
                                  sweep_p=args.sweep_p or ())
    write_json(args.out, {**result, "provenance": rec})
    if args.sampling_out:
        with atomic_path(args.sampling_out) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    provenance.write(args.provenance, rec)
    print(json.dumps({k: result[k] for k in ("model", "val_loss", "perplexity", "bpb", "val_tokens_scored")}))


def cmd_report(args):
    from picollm import provenance, report
    config = args.config
    figures, tables = _pairs(args.figures), _pairs(args.tables)
    report.build(args.out, config=config, config_files=args.config_files, figures=figures, tables=tables,
                 summaries=args.summaries, evals=args.evals, meta=args.meta, provenance_files=args.provenance_files)
    provenance.write(args.provenance, provenance.record(
        "report", config=config, seed=config.get("seed"), outputs=[args.out],
        inputs=[*figures, *figures.values(), *tables, *tables.values(), *args.summaries, *args.evals,
                *([args.meta] if args.meta else []), *args.provenance_files]))
    print(f"report -> {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picollm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate-config", help="check a config file against the schema")
    p.add_argument("config")
    p.add_argument("--show", action="store_true", help="print the config with every default filled in")
    p.set_defaults(func=cmd_validate_config)

    p = sub.add_parser("download", help="fetch or generate one data source's raw train/val text")
    p.add_argument("--source", type=_json, required=True, help="the source's config entry as JSON")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--train", required=True, help="output train.txt")
    p.add_argument("--val", required=True, help="output val.txt")
    p.add_argument("--provenance")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("tokenize", help="raw text of every source -> {train,val}.bin + meta.json")
    p.add_argument("--tokenizer", default="gpt2")
    p.add_argument("--raw-dir", required=True, help="folder holding <source>/{train,val}.txt")
    p.add_argument("--sources", nargs="+", required=True, help="source names, in config order")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--provenance")
    p.set_defaults(func=cmd_tokenize)

    p = sub.add_parser("train", help="train one model; resumes from <out-dir>/last.pt if present")
    p.add_argument("--name", required=True)
    p.add_argument("--model", type=_json, required=True, help="the model's config entry as JSON")
    p.add_argument("--train", type=_json, required=True, help="the train section as JSON (defaults filled)")
    p.add_argument("--weights", type=_json, default=None, help='{"source name": weight} as JSON')
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--block-size", type=int, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--compact-vocab", action="store_true", help="output layer over the training split's tokens only")
    p.add_argument("--tokens-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--provenance")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="greedy and nucleus samples of one model -> JSONL")
    p.add_argument("--name", required=True)
    p.add_argument("--model-path", required=True)
    p.add_argument("--sampling", type=_json, required=True, help="the sampling section as JSON (defaults filled)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--provenance")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("tables", help="samples.csv/.md and models.md from the stage outputs")
    p.add_argument("--experiment", required=True)
    p.add_argument("--samples", nargs="*", default=[])
    p.add_argument("--samples-csv")
    p.add_argument("--samples-md")
    p.add_argument("--summaries", nargs="*", default=[])
    p.add_argument("--models-md")
    p.add_argument("--evals", nargs="*", default=[], help="eval/<model>.json files -> --eval-csv, --eval-md")
    p.add_argument("--eval-csv")
    p.add_argument("--eval-md")
    p.add_argument("--sampling-inputs", nargs="*", default=[], help="eval/sampling/<model>.csv files -> --sampling-csv")
    p.add_argument("--sampling-csv")
    p.add_argument("--provenance")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("figure", help="rebuild one figure from files on disk")
    p.add_argument("figure", choices=["loss-curves", "sample-comparison", "attention-heads", "p-sweep", "grad-norms"])
    p.add_argument("--experiment", required=True)
    p.add_argument("--inputs", nargs="+", required=True,
                   help="NAME=PATH pairs (a CSV path for sample-comparison and p-sweep)")
    p.add_argument("--prompt", default="Once upon a time there was a little girl")
    p.add_argument("--out", required=True)
    p.add_argument("--provenance")
    p.set_defaults(func=cmd_figure)

    p = sub.add_parser("evaluate", help="whole-split validation loss, perplexity, bits per byte and sampling "
                                        "measures of one model")
    p.add_argument("--name", required=True)
    p.add_argument("--model-path", required=True)
    p.add_argument("--tokens-dir", required=True, help="folder holding val.bin and meta.json")
    p.add_argument("--samples", help="samples/<model>.jsonl: diversity, repetition and self-likelihood per decoding")
    p.add_argument("--sampling", type=_json, default=None, help="the sampling section as JSON (for --sweep-p)")
    p.add_argument("--sweep-p", type=float, nargs="*", default=[],
                   help="extra nucleus p values to sample and measure (a denser p sweep)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default: by memory)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="eval/<model>.json")
    p.add_argument("--sampling-out", help="eval/sampling/<model>.csv")
    p.add_argument("--provenance")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="one self-contained HTML report of a study")
    p.add_argument("--config", type=_json, required=True, help="the validated config as JSON")
    p.add_argument("--config-files", nargs="*", default=[], help="the config file(s) it came from")
    p.add_argument("--figures", nargs="*", default=[], help="PNG=CAPTION.rst pairs")
    p.add_argument("--tables", nargs="*", default=[], help="TABLE(.csv|.md)=CAPTION.rst pairs")
    p.add_argument("--summaries", nargs="*", default=[], help="models/<model>/summary.json files")
    p.add_argument("--evals", nargs="*", default=[], help="eval/<model>.json files")
    p.add_argument("--meta", help="data/tokens/meta.json")
    p.add_argument("--provenance-files", nargs="*", default=[], help="provenance records to list")
    p.add_argument("--out", required=True)
    p.add_argument("--provenance")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PicoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
