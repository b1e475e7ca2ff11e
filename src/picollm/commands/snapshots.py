"""`picollm snapshots`: each run's greedy continuation of a prompt at every kept training step."""
import json
from pathlib import Path

from picollm import provenance
from picollm.config import SnapshotsJob, parse
from picollm.device import use_threads
from picollm.errors import PicoError
from picollm.snapshots import snapshot_table


def _snapshot_files(text: str) -> dict:
    """'{"run": "models/<run>/seed<k>/snapshots"}' -> {run: [step files, in step order]}."""
    try:
        folders = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PicoError(f"--inputs is not valid JSON ({exc.msg} at column {exc.colno})") from None
    return {run: sorted(Path(folder).glob("step*.pt"), key=lambda p: int(p.stem.removeprefix("step")))
            for run, folder in folders.items()}


def run(args):
    job = parse(SnapshotsJob, args.config)
    use_threads(args.threads)
    inputs = _snapshot_files(args.inputs)
    prompt, length = job.sampling.prompts[0], job.sampling.max_new_tokens
    rec = provenance.record("snapshots", config=args.config, inputs=[p for ps in inputs.values() for p in ps],
                            outputs=[args.csv, args.md])
    snapshot_table(inputs, args.csv, args.md, job.experiment, prompt, length)
    provenance.write(args.provenance, rec)
    print(f"{sum(map(len, inputs.values()))} snapshots -> {args.csv}")
