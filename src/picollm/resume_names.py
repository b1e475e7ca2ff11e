"""The names of a training folder's resume points, which picollm.resume_points moves. Standard library only:
picollm.models, which says why such a file is no model, reads them without the trainer's modules (a stage's code
identity holds every module it imports, picollm.codehash)."""
from __future__ import annotations

import re
from pathlib import Path

LAST = "last.pt"  # the rolling checkpoint of the training whose folder it is
DAMAGED = "last.damaged.pt"  # a last.pt that cannot be resumed, kept for a look
FINGERPRINT_DIGITS = 12  # of a run's fingerprint, in the names of what is set aside for it (aside_name)
_ASIDE = re.compile(rf"last\.[0-9a-f]{{{FINGERPRINT_DIGITS}}}\.pt")  # aside_name's


def aside_name(run_id: str) -> str:
    """The name of the run `run_id`'s last.pt, set aside by a training of another config in its folder."""
    return f"last.{run_id[:FINGERPRINT_DIGITS]}.pt"


def kind_of(path: Path) -> str | None:
    """Which resume point a file is, by its name: "own" (last.pt, its folder's training's), "aside" (another
    config's, set aside until it trains here again), "damaged" (kept for a look), or None (no resume point)."""
    if path.name == LAST:
        return "own"
    if path.name == DAMAGED:
        return "damaged"
    if _ASIDE.fullmatch(path.name):
        return "aside"
    return None
