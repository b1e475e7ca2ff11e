"""A finished training is never trained again: its outputs are kept as hard links in <out-dir>/finished/.

Snakemake deletes a job's outputs before it runs the job again, and it runs a finished training job again
when the job's end was not recorded (Ctrl-C or a kill as the job ended: IncompleteFilesException, then
--rerun-incomplete), or when a job upstream reruns (a rebuilt token file). The rolling checkpoint is gone
by then. finished/ holds a second name for each output (no extra space) and the identity of the training
that made them (config, seed, data, tokens, code); a training job whose identity matches links them back
at once instead of training. A changed config, data or training code trains anew. On a file system without
hard links nothing is kept. A second name is no copy: a file damaged in place (truncated, written over) is
damaged under both names, so each kept file's sha256 is recorded beside the identity, and a kept training whose
files no longer match it is trained anew rather than restored.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from picollm import codehash
from picollm.io import sha256_file, tell, write_json
from picollm.model_types import model_type

KEPT, STAGED, IDENTITY, RECORD = "finished", "finished.partial", "identity.json", "record.json"
# The train job's outputs in its folder (workflow/rules/train.smk declares them, picollm.train writes them): four
# files, and a folder of snapshots, step<N>.pt for each of train.snapshot_steps
MODEL, METRICS, SUMMARY, HEALTH = "model.pt", "metrics.csv", "summary.json", "layer_health.csv"
OUTPUTS = (MODEL, METRICS, SUMMARY, HEALTH)
SNAPSHOTS = "snapshots"
TRAINED = {"model": MODEL, "metrics": METRICS, "summary": SUMMARY, "health": HEALTH, "snapshots": SNAPSHOTS}


def code(type_name: str) -> str:
    """The training job's code identity: the hash its rule carries (codehash.type_code, as jobs.model_code)."""
    return codehash.type_code("train", model_type(type_name))


def _files(folder: Path) -> list[Path]:
    """The outputs of a training folder, relative to it: OUTPUTS and every snapshot."""
    snapshots = sorted(p.relative_to(folder) for p in (folder / SNAPSHOTS).glob("step*.pt"))
    return [Path(name) for name in OUTPUTS] + snapshots


def keep(out_dir, identity: str) -> None:
    """Link the finished outputs into out_dir/finished/ with `identity` (replacing what was kept before)."""
    out_dir = Path(out_dir)
    staged, kept = out_dir / STAGED, out_dir / KEPT
    shutil.rmtree(staged, ignore_errors=True)
    try:
        for rel in _files(out_dir):
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(out_dir / rel, staged / rel)
    except OSError:  # no hard links here (or an output missing): nothing kept, a rerun trains again
        shutil.rmtree(staged, ignore_errors=True)
        return
    sums = {str(rel): sha256_file(staged / rel) for rel in _files(out_dir)}
    (staged / IDENTITY).write_text(json.dumps({"identity": identity, "sha256": sums}) + "\n")
    shutil.rmtree(kept, ignore_errors=True)
    os.replace(staged, kept)


def kept_identity(out_dir) -> str | None:
    try:
        return json.loads((Path(out_dir) / KEPT / IDENTITY).read_text())["identity"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def damaged_files(kept: Path) -> list[str]:
    """The kept files that no longer hold what was kept (or are gone, or were never summed): all of them when
    the record is unreadable."""
    try:
        sums = json.loads((kept / IDENTITY).read_text())["sha256"]
        files = [str(rel) for rel in _files(kept)]
        return [rel for rel in sorted(set(files) | set(sums))
                if rel not in sums or not (kept / rel).is_file() or sha256_file(kept / rel) != sums[rel]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [IDENTITY]


def restore(out_dir, identity: str, link: bool = True) -> dict | None:
    """The kept summary when out_dir/finished/ matches `identity`, its outputs linked back into place (with
    `link`; under torchrun rank 0 links, the other ranks only learn that there is nothing to train)."""
    out_dir = Path(out_dir)
    kept = out_dir / KEPT
    if kept_identity(out_dir) != identity:
        return None
    if damage := damaged_files(kept):
        tell(f"{out_dir} finished training before, but its kept outputs have changed since ({', '.join(damage)} "
             f"in {kept}); training it anew")
        return None
    if link:
        for rel in _files(kept):
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)
            os.link(kept / rel, tmp)
            os.replace(tmp, target)
            os.utime(target)  # newer than the inputs, as a freshly made output is
        (out_dir / SNAPSHOTS).mkdir(exist_ok=True)  # a workflow output, also when no step is kept
        tqdm.write(f"{out_dir} finished training before (its outputs are kept in {kept}); restored them, nothing "
                   f"to train", file=sys.stderr)
    return json.loads((kept / SUMMARY).read_text())


def keep_record(out_dir, rec: dict) -> None:
    """The provenance record of the job that trained what is kept (its commit, code and cost), kept with it."""
    kept = Path(out_dir) / KEPT
    if kept.is_dir():
        write_json(kept / RECORD, rec)


def restored_record(out_dir, rec: dict) -> dict | None:
    """The kept record of the training that a restore put back, with `rec` (the restoring job's) as when and by
    what it was restored; None where none was kept."""
    try:
        kept = json.loads((Path(out_dir) / KEPT / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return {**kept, "restored": {key: rec[key] for key in ("created_utc", "command", "git")}}


