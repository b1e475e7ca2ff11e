"""`picollm train`: one model, resuming from <out-dir>/last.pt when present."""
import json
from pathlib import Path

from picollm import distributed, finished, launch, provenance
from picollm.config import TrainJob, parse
from picollm.device import resolve_device, use_threads
from picollm.io import write_json
from picollm.models import model_class
from picollm.train import TrainSpec, run_training


def with_watch_and_save(args) -> dict:
    """--config with --loggers and --checkpoint-interval put in: they come apart from it, which holds what the run's
    results depend on (picollm.jobs), since neither changes a number."""
    train = dict(args.config.get("train", {}))
    if args.loggers is not None:
        train["loggers"] = [name.strip() for name in args.loggers.split(",") if name.strip()]
    if args.checkpoint_interval is not None:
        train["checkpoint_interval"] = args.checkpoint_interval
    return {**args.config, "train": train}


def run(args):
    job = parse(TrainJob, with_watch_and_save(args))
    model_class(job.model.type)  # imported now, so the provenance record's code identity holds it
    if args.devices * args.nodes > 1 and not distributed.under_torchrun():
        launch.relaunch(args.argv, args.devices, args.nodes, args.threads, resolve_device(job.device),
                        job.train.batch_size)
        provenance.count_children(args.provenance)  # rank 0 wrote the record: the job's cost is every rank's
        return
    use_threads(distributed.threads_per_rank(args.threads))
    tokens = Path(args.tokens_dir)
    # the threads too, which the config slice leaves out (they change no result) and a rerun by hand should match
    rec = provenance.record("train", seed=job.seed, config=args.config, inputs=[tokens / "meta.json"],
                            outputs=[Path(args.out_dir) / name for name in finished.OUTPUTS], threads=args.threads)
    summary = run_training(TrainSpec.of(job), tokens_dir=tokens, out_dir=args.out_dir, provenance=rec,
                           tracking_dir=args.tracking_dir)
    if not distributed.is_main():  # under torchrun, rank 0 wrote the outputs and reports them
        return
    # a restore's record is the training's (its commit, code and cost), with when it was restored
    if summary.get("restored") and (kept := finished.restored_record(args.out_dir, rec)):
        if args.provenance:
            write_json(args.provenance, kept)
    else:
        provenance.write(args.provenance, rec)
        if not summary.get("restored"):  # (a folder kept with no record is restored with the restore's own)
            finished.keep_record(args.out_dir, rec)
    print(json.dumps({k: v for k, v in summary.items() if k != "provenance"}))
