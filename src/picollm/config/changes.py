"""What a command changes in a study since its last build, key by key: the reason its jobs rerun, in one line.

The last build's study is `provenance/study.json` (the study_config rule writes it, scheduling keys left out);
Snakemake's own reason for each job is that job's whole config slice before and after, which hides the key.
"""
from __future__ import annotations

import json
from pathlib import Path

SHOWN = 6  # changes listed in the line; the rest are counted
# top-level keys whose change retrains runs in place (their models/<run>/seed<k>/ folders), where adding a model,
# a seed or a sweep point trains a run of its own beside the others
RETRAIN = {"models", "train", "block_size", "tokenizer", "data", "data_seed", "compact_vocab", "device"}
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
        if new is ABSENT:  # a model's own train: section removed says what it held
            found.append(f"{name}: removed" + ("" if whole(name) else f" (was {shown(old)})"))
        elif old is ABSENT:
            found.append(f"{name}: added" + ("" if isinstance(new, dict) and whole(name) else f" ({shown(new)})"))
        else:
            found += changes(old, new, name)
    return found


def whole(key: str) -> bool:
    """A top-level key or a whole model: said added or removed by name alone (a sweep run or section of its own)."""
    return "." not in key or (key.startswith("models.") and key.count(".") == 1)


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
    line = (f"the study differs from its last build ({study_json}), so the jobs that read these keys rerun: "
            + "; ".join(found[:SHOWN]) + more)
    if any(retrains(change) for change in found):
        line += (f". The runs they retrain replace their models in {study_json.parent.parent / 'models'} (to keep "
                 f"those, run the change as a study of its own: --config experiment=NAME)")
    keys = {change.split(":", 1)[0] for change in found}
    if {"seeds", "data_seed"} <= keys:  # data_seed follows the first seed unless the study sets it
        line += (". The data follow the first seed unless the study sets data_seed: set it to the old first seed to "
                 "keep the data; the folders of seeds no longer listed stay as they are")
    return line


def retrains(change: str) -> bool:
    """Whether a change ("models.lstm.hidden_dim: 32 -> 48") retrains runs in place: not a model added or removed
    whole, nor a key outside RETRAIN (seeds, sweep points: runs of their own; sampling, figures)."""
    key = change.split(":", 1)[0]
    whole_model = key.startswith("models.") and whole(key)
    return key.split(".")[0].split("[")[0] in RETRAIN and not whole_model
