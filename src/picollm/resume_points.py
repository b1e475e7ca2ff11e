"""A training folder's resume points: last.pt, and those of other configs set aside beside it.

last.pt belongs to one training (its fingerprint: config, seed, data). A training of another config in the same
folder never writes over it: it sets it aside, with the snapshots staged with it and its trackers' run ids,
under the fingerprint's first 12 hex digits, and a training of that config brings them back and resumes. Each
move is a rename on the same disk, checkpoint last on the way out and first on the way back: a kill between two
of them leaves files under one name or the other, and the training whose last.pt it is gathers them (merge). A
last.pt that cannot be resumed becomes last.damaged.pt, kept for a look. (The names: picollm.resume_names.)
"""
from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path

from picollm import tracking
from picollm.io import size, tell
from picollm.resume_names import DAMAGED, FINGERPRINT_DIGITS, LAST, aside_name, kind_of

SNAPSHOTS_STAGED = "snapshots.partial"  # snapshots staged beside last.pt until the training ends


def aside_paths(ckpt_path: Path, run_id: str) -> tuple[Path, Path, Path]:
    """Where another run's last.pt, the snapshots staged with it and its trackers' run ids wait until a training
    with its config, seed and data comes back to this folder: last.<fp>.pt, snapshots.partial.<fp>/ and
    tracking.<fp>.json (fp: the first 12 hex digits of its fingerprint)."""
    fp = run_id[:FINGERPRINT_DIGITS]
    return (ckpt_path.with_name(aside_name(run_id)), ckpt_path.with_name(f"{SNAPSHOTS_STAGED}.{fp}"),
            ckpt_path.with_name(f"{Path(tracking.IDS).stem}.{fp}.json"))


def merge(source: Path, target: Path) -> None:
    """Move every file of the folder `source` into `target` (over a file of the same name), then remove it: a
    step's snapshot of the run that staged it, never lost to a rename refused over a folder with files."""
    if not source.exists():
        return
    target.mkdir(exist_ok=True)
    for item in source.iterdir():
        os.replace(item, target / item.name)
    source.rmdir()


def set_aside(path: Path, run_id: str) -> Path:
    """Move last.pt, its staged snapshots and (when they are its run's) its trackers' ids to aside_paths; returns
    where last.pt went. Checkpoint last: until it moves, the next run sets it aside again, and what moved before
    it waits under its fingerprint, where its run looks first."""
    ckpt, staged, ids = aside_paths(path, run_id)
    merge(path.parent / SNAPSHOTS_STAGED, staged)
    kept_ids = path.parent / tracking.IDS
    if tracking.kept_fingerprint(kept_ids) == run_id:
        os.replace(kept_ids, ids)
    os.replace(path, ckpt)
    return ckpt


def bring_back(path: Path, run_id: str) -> None:
    """set_aside undone, checkpoint first: a kill after it leaves this run's last.pt in place, and gather, which
    a training calls whenever last.pt is its own, brings the rest."""
    os.replace(aside_paths(path, run_id)[0], path)
    gather(path, run_id)


def gather(path: Path, run_id: str) -> None:
    """The staged snapshots and trackers' ids that wait under `run_id`'s fingerprint, back beside last.pt (its
    own): what set_aside moved before a kill stopped it, or bring_back before it moved them. Staged snapshots of
    another run that are left (none were set aside with this checkpoint) are steps this run has not reached: it
    stages its own over them."""
    _, staged, ids = aside_paths(path, run_id)
    merge(staged, path.parent / SNAPSHOTS_STAGED)
    if ids.exists():
        os.replace(ids, path.parent / tracking.IDS)


def keep_damaged(path: Path, line: str) -> None:
    """Move a last.pt that cannot be resumed to last.damaged.pt (over an older one) for a look, not write over it."""
    os.replace(path, path.with_name(DAMAGED))
    tell(f"{line}; moved it to {path.with_name(DAMAGED)}")


def claim(path: Path, run_id: str, then: str) -> dict | None:
    """The checkpoint in `path` (last.pt) when it is the run `run_id`'s. Otherwise None, and the file moved
    where no training writes over it, in a line that ends with `then`, what training does next: a damaged one
    (or one that names no run) to last.damaged.pt, another run's aside for that run to resume."""
    import torch  # here, not above: the Snakefile reads `waiting` (end of a run) without loading torch

    from picollm.models import damaged

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        keep_damaged(path, f"ignoring unreadable checkpoint {path} ({type(exc).__name__}); {then}")
        return None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("run_id"), str):
        keep_damaged(path, f"ignoring {path}: it is no training checkpoint (it names no run); {then}")
        return None
    if damaged(ckpt, {k: v for k, v in ckpt.items() if k != "sha256"}):
        keep_damaged(path, f"ignoring damaged checkpoint {path} (its tensors do not match their checksum); {then}")
        return None
    if ckpt["run_id"] == run_id:
        return ckpt
    aside = set_aside(path, ckpt["run_id"])
    tell(f"ignoring {path}: it is from a different config, data or training code; {then}; moved it to {aside}: "
         f"running with that config again resumes from it")
    return None


def waiting(results: Path) -> str | None:
    """The line that ends a run which left resume points that no training of this study reads: other configs'
    checkpoints set aside (with the snapshots and tracker ids set aside beside them), and damaged ones kept for a
    look. Each can be as large as three models (the optimizer's state), and only the user knows whether that
    config will run again."""
    models = Path(results, "models")
    files = sorted(f for f in models.glob("*/*/last.*.pt") if f.is_file() and kind_of(f) in ("aside", "damaged"))
    if not files:
        return None
    damaged_ones = [f for f in files if kind_of(f) == "damaged"]
    aside = len(files) - len(damaged_ones)
    fingerprint = {f: f.name.removeprefix("last.").removesuffix(".pt") for f in files}
    held = sum(_bytes(p) for f in files
               for p in ([f] if f in damaged_ones else aside_paths(f.with_name(LAST), fingerprint[f])))
    kinds = [f"{aside} of {'another config' if aside == 1 else 'other configs'}, set aside (a run of its config "
             f"resumes from it)" * bool(aside), f"{len(damaged_ones)} damaged, kept for a look" * bool(damaged_ones)]
    shown = ", ".join(str(f.relative_to(models)) for f in files[:3]) + ", ..." * (len(files) > 3)
    where = shlex.quote(str(models))
    return (f"{len(files)} resume point{' is' if len(files) == 1 else 's are'} left in {models} ({size(held)}): "
            f"{' and '.join(filter(None, kinds))}: {shown}; delete those you will not use (rm -r {where}/*/*/last.*.pt "
            f"{where}/*/*/{SNAPSHOTS_STAGED}.* {where}/*/*/{Path(tracking.IDS).stem}.*.json deletes every one)")


def _bytes(path: Path) -> int:
    """The bytes of a file, or of the files in a folder; 0 for one that is gone."""
    with contextlib.suppress(OSError):
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return 0
