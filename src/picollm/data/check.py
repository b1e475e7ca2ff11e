"""Token files checked against their meta.json before anything uses them.

tokenize records each split's token count and sha256 in meta.json. A .bin of another size (truncated,
empty, an odd number of bytes) or another checksum (bytes changed in place), or a meta.json that is not
JSON, stops the workflow at parse time (workflow/rules/common.smk) and the stages that read the tokens
(train, evaluate) with one line naming the file and the fix, before a job starts or a model is touched.
The Snakefile runs this at every parse: standard library and pydantic only (picollm.data.meta), no torch.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from picollm.data.meta import TokenMeta
from picollm.errors import PicoError
from picollm.io import sha256_file

REBUILD = "delete it and rerun: tokenize rebuilds it (models trained on it are kept)"


def read_meta(path) -> TokenMeta:
    """A token folder's meta.json as a TokenMeta; a missing, garbled or incomplete file is one line."""
    path = Path(path)
    if not path.exists():
        nearby = path.parent / "tokens" / path.name  # results/<experiment>/data given for data/tokens
        if nearby.is_file():
            raise PicoError(f"{path} does not exist; the token folder is {nearby.parent}: give that")
        raise PicoError(f"{path} does not exist; run the tokenize stage first")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PicoError(f"{path} is not valid JSON ({getattr(exc, 'msg', exc)}); {REBUILD}") from None
    try:
        return TokenMeta.model_validate(data)
    except ValidationError as exc:
        raise PicoError(invalid_meta(path, exc.errors())) from None


def invalid_meta(path: Path, errors: list[dict]) -> str:
    """One line for a meta.json that is JSON but no TokenMeta: another file (no object, no known dtype), or
    one without every key the stages read, each named by its place (splits.val.sources)."""
    # a list's bad items are named by the list: train_vocab, not each of its thousands of ids
    places = list(dict.fromkeys(".".join(str(p) for p in error["loc"] if not isinstance(p, int)) for error in errors))
    if "" in places or "dtype" in places:
        return f"{path} is not a token folder's meta.json (no known dtype); {REBUILD}"
    shown = ", ".join(places[:3]) + ", ..." * (len(places) > 3)
    return f"{path} is not a whole meta.json (no valid {shown}); {REBUILD}"


def check_split(path, meta: TokenMeta, checksum: bool = True) -> None:
    """`path` ({split}.bin) holds what meta.json says: its token count in meta's dtype and, with `checksum`,
    the recorded sha256 (where meta.json has one). A .bin of no split meta.json names is checked for its size
    in tokens."""
    path = Path(path)
    if not path.exists():
        raise PicoError(f"{path} does not exist; run the tokenize stage first")
    size, itemsize, dtype = path.stat().st_size, meta.itemsize, meta.dtype
    split = meta.splits.by_name().get(path.stem)
    expected = split.tokens * itemsize if split is not None else None
    if size == 0 or size % itemsize or (expected is not None and size != expected):
        says = f"meta.json says {split.tokens:,} {dtype} tokens ({expected:,} bytes)" if expected is not None else \
            f"{dtype} tokens take {itemsize} bytes each"
        raise PicoError(f"{path} is damaged: {size:,} bytes where {says}; {REBUILD}")
    if checksum and split is not None and split.sha256 and sha256_file(path) != split.sha256:
        raise PicoError(f"{path} is damaged: its sha256 is not the one meta.json records; {REBUILD}")


def check_folder(folder, checksum_up_to: int | None = None) -> None:
    """Every split of a token folder whose meta.json exists (nothing to check otherwise: tokenize makes them).
    Missing .bin files are left to the workflow to rebuild; checksums only of files up to `checksum_up_to`
    bytes (None: all), so that a parse stays cheap: larger ones are checked by the jobs that read them."""
    folder = Path(folder)
    if not (folder / "meta.json").exists():
        return
    meta = read_meta(folder / "meta.json")
    for split in meta.splits.by_name():
        path = folder / f"{split}.bin"
        if path.exists():
            small = checksum_up_to is None or path.stat().st_size <= checksum_up_to
            check_split(path, meta, checksum=small)
