"""Token files checked against their meta.json before anything uses them.

tokenize records each split's token count and sha256 in meta.json. A .bin of another size (truncated,
empty, an odd number of bytes) or another checksum (bytes changed in place), or a meta.json that is not
JSON, stops the workflow at parse time (workflow/rules/common.smk) and the stages that read the tokens
(train, evaluate) with one line naming the file and the fix, before a job starts or a model is touched.
Standard library only: the Snakefile runs this at every parse.
"""
from __future__ import annotations

import json
from pathlib import Path

from picollm.errors import PicoError
from picollm.io import sha256_file

ITEMSIZE = {"uint8": 1, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8}
REBUILD = "delete it and rerun: tokenize rebuilds it (models trained on it are kept)"
REQUIRED = {"vocab_size": int, "splits": dict}  # meta.json's keys every stage reads, and their types
SPLIT_KEYS = {"tokens": int, "sources": dict}  # and each split's (its sha256 is checked where there is one)


def read_meta(path) -> dict:
    """A token folder's meta.json, as a dict; a missing, garbled or non-object file is one line."""
    path = Path(path)
    if not path.exists():
        nearby = path.parent / "tokens" / path.name  # results/<experiment>/data given for data/tokens
        if nearby.is_file():
            raise PicoError(f"{path} does not exist; the token folder is {nearby.parent}: give that")
        raise PicoError(f"{path} does not exist; run the tokenize stage first")
    try:
        meta = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PicoError(f"{path} is not valid JSON ({getattr(exc, 'msg', exc)}); {REBUILD}") from None
    if not isinstance(meta, dict) or meta.get("dtype") not in ITEMSIZE:
        raise PicoError(f"{path} is not a token folder's meta.json (no known dtype); {REBUILD}")
    # what every stage reads: a file without them would fail deep inside a job
    missing = [key for key in REQUIRED if not isinstance(meta.get(key), REQUIRED[key])]
    missing = missing or _missing_split_keys(meta["splits"])
    if missing:
        raise PicoError(f"{path} is not a whole meta.json (no valid {', '.join(missing)}); {REBUILD}")
    return meta


def _missing_split_keys(splits: dict) -> list[str]:
    """The keys of splits.train and splits.val (SPLIT_KEYS) that meta.json lacks or holds as another type."""
    missing = []
    for split in ("train", "val"):
        entry = splits.get(split)
        if not isinstance(entry, dict):
            missing.append(f"splits.{split}")
            continue
        missing += [f"splits.{split}.{key}" for key, kind in SPLIT_KEYS.items() if not isinstance(entry.get(key), kind)]
    return missing


def check_split(path, meta: dict, checksum: bool = True) -> None:
    """`path` ({split}.bin) holds what meta.json says: its token count in meta's dtype and, with `checksum`,
    the recorded sha256. A meta.json without them is checked for what it has."""
    path = Path(path)
    if not path.exists():
        raise PicoError(f"{path} does not exist; run the tokenize stage first")
    size, itemsize, dtype = path.stat().st_size, ITEMSIZE[meta["dtype"]], meta["dtype"]
    split = (meta.get("splits") or {}).get(path.stem) or {}
    tokens = split.get("tokens")
    expected = tokens * itemsize if isinstance(tokens, int) else None
    if size == 0 or size % itemsize or (expected is not None and size != expected):
        says = f"meta.json says {tokens:,} {dtype} tokens ({expected:,} bytes)" if expected is not None else \
            f"{dtype} tokens take {itemsize} bytes each"
        raise PicoError(f"{path} is damaged: {size:,} bytes where {says}; {REBUILD}")
    if checksum and split.get("sha256") and sha256_file(path) != split["sha256"]:
        raise PicoError(f"{path} is damaged: its sha256 is not the one meta.json records; {REBUILD}")


def check_folder(folder, checksum_up_to: int | None = None) -> None:
    """Every split of a token folder whose meta.json exists (nothing to check otherwise: tokenize makes them).
    Missing .bin files are left to the workflow to rebuild; checksums only of files up to `checksum_up_to`
    bytes (None: all), so that a parse stays cheap: larger ones are checked by the jobs that read them."""
    folder = Path(folder)
    if not (folder / "meta.json").exists():
        return
    meta = read_meta(folder / "meta.json")
    for split in meta.get("splits") or {}:
        path = folder / f"{split}.bin"
        if path.exists():
            small = checksum_up_to is None or path.stat().st_size <= checksum_up_to
            check_split(path, meta, checksum=small)
