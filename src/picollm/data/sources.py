"""Raw-text sources. Each writes data/raw/<name>/{train,val}.txt in one format: documents separated by
lines holding only `<|endoftext|>`, which `iter_documents` reads back. A `text` source's own files are cut
into documents by its `split_on` (at end-of-text lines, blank lines, every line, or not at all).
"""
from __future__ import annotations

import itertools
import os
import random
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlsplit

from tqdm import tqdm

from picollm.config.sections import Source
from picollm.errors import PicoError, first_line
from picollm.io import atomic_path, note

# end-of-text: a line of its own between the documents of a raw text file, and every tokenizer's special token
EOT_TEXT = "<|endoftext|>"
SPLIT_WORDS = {"eot": "<|endoftext|> lines", "blank_line": "blank lines", "line": "every line",
               "none": "nothing (a file is one document)"}


def has_eot_line(path) -> bool:
    with open(path, "rb") as fh:
        return any(line.strip() == EOT_TEXT.encode() for line in fh)


def detect_split(paths) -> str:
    """`eot` when a file holds an end-of-text line, else `line`: how a text source's files are cut when its
    split_on is not given (decided once, on its train files, for its validation files too)."""
    return "eot" if any(has_eot_line(p) for p in paths if Path(p).is_file()) else "line"


def check_local_files(sources) -> None:
    """Every file a `text` source names exists, else one line naming it (Snakemake would otherwise stop at the
    download job's missing input, in a block of its own)."""
    for src in sources:
        if src.kind != "text":
            continue
        for key in ("train_files", "val_files"):
            for path in getattr(src, key):
                if not Path(path).is_file():
                    raise PicoError(f"data file {path} does not exist (a relative path starts at {Path.cwd()}); "
                                    f"fix the path in the study's data.sources ({key} of source '{src.name}')")


def iter_documents(path, split_on: str | None = None) -> Iterator[str]:
    """Documents of a local UTF-8 text file, streamed (constant memory for any file size), cut at
    end-of-text lines (`eot`), blank lines (`blank_line`), every line (`line`) or not at all (`none`);
    None: as detect_split finds for this file alone."""
    path = Path(path)
    if not path.is_file():
        raise PicoError(f"data file {path} does not exist; fix the path in data.sources")
    split_on = split_on or detect_split([path])
    if split_on == "line":
        yield from (line.rstrip("\n") for line in _lines(path) if line.strip() and line.strip() != EOT_TEXT)
        return
    doc = []
    for line in _lines(path):
        if (split_on in ("eot", "blank_line") and line.strip() == EOT_TEXT) or (
                split_on == "blank_line" and not line.strip()):
            if text := "".join(doc).strip():
                yield text
            doc = []
        elif line.strip() != EOT_TEXT:
            doc.append(line)
    if text := "".join(doc).strip():
        yield text


def _lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 file, a byte that is not UTF-8 named by its offset."""
    with open(path, "rb") as fh:
        offset = 0
        for raw in fh:
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                made = path.parent.parent.name == "raw"  # results/<experiment>/data/raw/<source>/: download's
                fix = "delete it and rerun: download makes it again" if made else "convert it (e.g. iconv -t UTF-8)"
                raise PicoError(f"data file {path} is not UTF-8: invalid byte at offset {offset + exc.start}; "
                                f"{fix}") from None
            offset += len(raw)


def write_documents(path, documents: Iterable[str], desc: str = "") -> int:
    """Write documents separated by `<|endoftext|>` lines, atomically; return how many were written.

    (`with a, b:` closes the file before atomic_path renames it.)
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for doc in tqdm(documents, desc=desc or str(path), unit="doc", mininterval=2):
            fh.write(doc.strip() + "\n" + EOT_TEXT + "\n")
            count += 1
    return count


# --- 3seqs: generated number sequences -------------------------------------------------------------

def three_seqs(num_sequences: int, max_terms: int, seed: int) -> Iterator[str]:
    """Counting from a random start, Fibonacci-like, squares, powers of two and zeros: one per line.

    A generator, so a 200 MB corpus never sits in memory.
    """
    rng = random.Random(seed)
    kinds = ["count", "fib", "squares", "powers", "zeros"]
    for _ in range(num_sequences):
        kind, n = rng.choice(kinds), rng.randint(2, max_terms)
        if kind == "count":
            start = rng.randint(0, 100)
            seq = range(start, start + n)
        elif kind == "fib":
            a, b = rng.randint(0, 9), rng.randint(1, 9)
            seq = []
            for _ in range(n):
                seq.append(a)
                a, b = b, a + b
        elif kind == "squares":
            start = rng.randint(0, 20)
            seq = [i * i for i in range(start, start + n)]
        elif kind == "powers":
            start = rng.randint(0, 5)
            seq = [2 ** i for i in range(start, start + n)]
        else:
            seq = [0] * n
        yield " ".join(map(str, seq))


# --- TinyStories through HF datasets (streamed) -----------------------------------------------------

WITHOUT_HUB = ("or work without the Hub: snakemake --cores all all --configfile config/tinystories-local.yaml (a "
               "'text' source over local TinyStories files; its GPT-2 tokenizer is a download too, which "
               "TIKTOKEN_CACHE_DIR=<a folder holding its BPE files> replaces) or --configfile config/offline.yaml "
               "(generated '3seqs' text, tokenizer: byte: nothing to download)")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_unreachable(dataset: str, revision: str, timeout: float = 5.0) -> str | None:
    """Why the Hub cannot be reached (None if it answers), in seconds rather than after `datasets`' retries.

    One HEAD of the dataset card, the first file `datasets` asks for, through huggingface_hub's own HTTP
    client: it honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY exactly as the streaming that follows does.
    Any HTTP answer, even an error status, means the Hub (or the proxy in front of it) is there.
    """
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var} is set"
    from huggingface_hub.utils import get_session, httpx  # huggingface_hub's HTTP client library (httpx2)
    url = f"{hub_endpoint()}/datasets/{dataset}/resolve/{revision}/README.md"
    try:
        get_session().head(url, timeout=timeout)
    except httpx.TransportError as exc:  # refused, timed out, no DNS, proxy down...
        return f"{type(exc).__name__}: {first_line(exc, 'no answer')}"
    return None


def tinystories(split: str, num_stories: int, dataset: str, revision: str) -> Iterator[str]:
    """Stream the first `num_stories` stories of a split; never downloads the whole dataset."""
    if (why := hub_unreachable(dataset, revision)) is not None:
        proxy = _proxy_for(hub_endpoint())
        route = f"through the proxy {proxy}" if proxy else "directly (no HTTPS_PROXY / HTTP_PROXY set)"
        raise PicoError(f"cannot reach the Hugging Face Hub at {hub_endpoint()} {route} to stream {dataset} ({why}); "
                        f"fix the network or proxy settings, {WITHOUT_HUB}")
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.utils import httpx
    count = 0
    try:
        stream = datasets.load_dataset(dataset, split=split, streaming=True, revision=revision)
        for row in itertools.islice(stream, num_stories):  # islice: not one row more than asked
            if "text" not in row:
                raise PicoError(f"{dataset} has no 'text' column (it has {sorted(row)}); tinystories sources need "
                                f"one story per row in 'text'")
            yield row["text"]
            count += 1
    except DatasetNotFoundError as exc:  # a wrong dataset id or revision
        raise PicoError(f"{first_line(exc, 'no message')} Fix the source's dataset / revision (a commit, tag or "
                        f"branch of the dataset repository)") from None
    except ValueError as exc:
        if "split" not in str(exc).lower():
            raise
        raise PicoError(f"{dataset} (revision {revision}) has no {split!r} split ({first_line(exc, 'no message')}); "
                        f"tinystories sources need a dataset with 'train' and 'validation' splits") from None
    except (OSError, httpx.HTTPError) as exc:  # the connection dropped, HTTP 429/5xx after datasets' retries
        raise PicoError(f"streaming {dataset} (revision {revision}) failed after {count} {split} stories: "
                        f"{type(exc).__name__}: {first_line(exc, 'no message')}; rerun the download later, "
                        f"{WITHOUT_HUB}") from None


def _proxy_for(url: str) -> str | None:
    """The proxy a request to `url` goes through, by the environment rules httpx and requests follow."""
    import urllib.request
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):  # NO_PROXY
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


# --- one entry point per source kind ----------------------------------------------------------------

def download(src: Source, seed: int, val_fraction: float, train_out, val_out) -> dict:
    """Fetch or generate one source's raw text; return counts for the provenance record."""
    return DOWNLOADS[src.kind](src, seed, val_fraction, train_out, val_out)


def _download_tinystories(src, seed, val_fraction, train_out, val_out) -> dict:
    # Both files appear together or not at all: a stream that fails in validation leaves no train.txt.
    with atomic_path(train_out) as train_tmp, atomic_path(val_out) as val_tmp:
        args = src.dataset, src.revision
        n_train = write_documents(train_tmp, tinystories("train", src.train_stories, *args), "tinystories train")
        n_val = write_documents(val_tmp, tinystories("validation", src.val_stories, *args), "tinystories validation")
    return {"train_documents": n_train, "val_documents": n_val}


def _generate_3seqs(src, seed, val_fraction, train_out, val_out) -> dict:
    lines = three_seqs(src.num_sequences, src.max_terms, seed)
    n_held = max(1, round(src.num_sequences * val_fraction))  # the first sequences are held out
    n_val = write_documents(val_out, itertools.islice(lines, n_held), desc="3seqs val")
    n_train = write_documents(train_out, lines, desc="3seqs train")
    return {"train_documents": n_train, "val_documents": n_val}


def _copy_text(src, seed, val_fraction, train_out, val_out) -> dict:
    split = src.split_on or detect_split(src.train_files)
    if src.split_on is None:
        note(f"source {src.name!r}: split_on not given; its files are cut at {SPLIT_WORDS[split]} "
             f"(split_on: {split}), the validation files alike")
    # streamed in two passes (count, then write) so a file of any size needs constant memory
    n_docs = sum(1 for _ in _documents(src.train_files, src.max_documents, split))
    n_held = 0 if src.val_files else max(1, round(n_docs * val_fraction))
    if n_docs - n_held < 1:
        raise PicoError(f"source {src.name!r} has {n_docs} document(s), too few to hold out validation "
                        f"text; add text or give val_files")
    docs = _documents(src.train_files, src.max_documents, split)
    n_train = write_documents(train_out, itertools.islice(docs, n_docs - n_held), desc="text train")
    # no val_files: hold out the last documents (deterministic; no story is split across the two)
    n_val = write_documents(val_out, docs if n_held else _documents(src.val_files, None, split), desc="text val")
    return {"train_documents": n_train, "val_documents": n_val, "split_on": split}


# the schema's source kinds (config.sections) and how each one's text is made
DOWNLOADS = {"tinystories": _download_tinystories, "3seqs": _generate_3seqs, "text": _copy_text}


def _documents(paths, limit, split_on: str) -> Iterator[str]:
    docs = itertools.chain.from_iterable(_non_empty(path, split_on) for path in paths)
    return itertools.islice(docs, limit)


def _non_empty(path, split_on: str) -> Iterator[str]:
    found = False
    for doc in iter_documents(path, split_on):
        found = True
        yield doc
    if not found:
        raise PicoError(f"data file {path} is empty; give a file with text in it")
