"""What a command changes in a study since its last build, key by key: the reason its jobs rerun, in one line.

The last build's study is `provenance/study.json` (the study_config rule writes it, scheduling keys left out);
Snakemake's own reason for each job is that job's whole config slice before and after, which hides the key.
"""
from __future__ import annotations

import json
from pathlib import Path

SHOWN = 6  # changes listed in the line; the rest are counted
WIDTH = 40  # characters of one value shown
ABSENT = object()


def shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= WIDTH else text[:WIDTH - 3] + "..."


def changes(before, now, key: str = "") -> list[str]:
    """Each changed key as "key: old -> new", "key: added (value)" or "key: removed", in key order; a section
    or model added or removed whole is one entry, and a list of mappings (data.sources) is compared by index."""
    if isinstance(before, dict) and isinstance(now, dict):
        pairs = {name: (before.get(name, ABSENT), now.get(name, ABSENT)) for name in sorted(before.keys() | now.keys())}
        inner = {f"{key}.{name}" if key else name: pair for name, pair in pairs.items()}
    elif is_records(before) and is_records(now) and len(before) == len(now):
        inner = {f"{key}[{i}]": pair for i, pair in enumerate(zip(before, now))}
    else:
        return [] if before == now else [f"{key}: {shown(before)} -> {shown(now)}"]
    found = []
    for name, (old, new) in inner.items():
        if new is ABSENT:
            found.append(f"{name}: removed")
        elif old is ABSENT:
            found.append(f"{name}: added" + ("" if isinstance(new, dict) else f" ({shown(new)})"))
        else:
            found += changes(old, new, name)
    return found


def is_records(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def since_last_build(study_json: Path, now: dict) -> str | None:
    """One line naming what differs from the study's last build, or None (no build yet, or nothing differs)."""
    try:
        before = json.loads(study_json.read_text())
    except (OSError, ValueError):  # no build yet, or a damaged record: there is nothing to compare with
        return None
    found = changes(before, now)
    if not found:
        return None
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return (f"the study differs from its last build ({study_json}), so the jobs that read these keys rerun: "
            + "; ".join(found[:SHOWN]) + more)
