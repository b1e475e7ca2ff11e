"""`picollm lm-eval-task`: the study's validation text -> an lm-evaluation-harness task (YAML + JSONL)."""
import json
from pathlib import Path

from picollm import provenance
from picollm.config import LmEvalTaskJob, parse
from picollm.harness import check_exportable, task_name, write_task


def run(args):
    job = parse(LmEvalTaskJob, args.config)
    runs = check_exportable(job.experiment, {r: m.model_dump() for r, m in job.models.items()})
    val_files = [Path(args.raw_dir) / source / "val.txt" for source in args.sources]
    rec = provenance.record("lm_eval_task", config={**args.config, "sources": args.sources}, inputs=val_files,
                            outputs=[args.out_dir])
    summary = write_task(task_name(job.experiment), val_files, args.out_dir)
    provenance.write(args.provenance, rec)
    print(json.dumps({**summary, "exportable_runs": runs}))
