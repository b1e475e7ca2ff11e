"""7. Tokenize throughput: our tokenize stage against its tokenizer library's own batch encoder, on ~1 GB of text.

The input is ../shared/tinystories/TinyStories-train-head.txt repeated to PICOLLM_TOKENIZE_BENCH_MB megabytes
(default 1024; --quick: 1), written under the system's temporary folder in the raw format that a `text`
source's download writes, and deleted afterwards. Per tokenizer (GPT-2 through tiktoken; a bpe:4096 trained
on the train head, through `tokenizers`), the same text, the same threads:

  library   the library's batch encoder alone (`encode_ordinary_batch`), on the documents of the file in
            batches of DOCS_PER_BATCH, only the encode calls timed (no reading, no writing): the ceiling;
  ours      picollm.data.tokens.tokenize_split over the file in a child process: reading, encoding and
            writing the .bin, with its progress bar; the child's peak RSS, and its RSS 10% into the run.

A further child trains the bpe:4096 tokenizer on the whole file (picollm.data.bpe.train_bpe), the train_tokenizer
job of a full-size study. Each step runs once (minutes at full size), one after the other, not interleaved:
the load average is recorded.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, Sizes, child_environ

TITLE = "Tokenize throughput: our tokenize stage vs the tokenizer library alone"
SAMPLE = REPO.parent / "shared" / "tinystories" / "TinyStories-train-head.txt"
BPE_SIZE = 4096
TARGET_RATIO = 0.8
FULL_TRAIN_BYTES, FULL_TRAIN_GPT2_TOKENS = 1.9e9, 470e6  # the whole TinyStories train split, as text


def input_mb(sz: Sizes) -> float:
    return 1.0 if sz.quick else float(os.environ.get("PICOLLM_TOKENIZE_BENCH_MB", 1024))


def write_input(path: Path, megabytes: float) -> int:
    """The sample file repeated (whole documents) until it holds `megabytes` MiB; its size in bytes."""
    chunk, size = SAMPLE.read_bytes(), 0
    with open(path, "wb") as fh:
        while size < megabytes * 2 ** 20:
            fh.write(chunk)
            size += len(chunk)
    return size


def library_encode(tokenizer, path: Path, threads: int) -> dict:
    """Seconds the library's batch encoder spends on the file's documents, batches as tokenize_split makes them."""
    from picollm.data.sources import iter_documents
    from picollm.data.tokens import DOCS_PER_BATCH

    docs, seconds, tokens = iter_documents(path), 0.0, 0
    while batch := list(itertools.islice(docs, DOCS_PER_BATCH)):
        t = time.perf_counter()
        encoded = tokenizer.encode_ordinary_batch(batch, num_threads=threads)
        seconds += time.perf_counter() - t
        tokens += sum(map(len, encoded)) + len(batch)  # + one end-of-text per document, as in the .bin
    return {"seconds": seconds, "tokens": tokens}


# The child process: `python -m benchmarks.tokenize_speed tokenize NAME JSON|- FILE OUT THREADS` or
# `... train SIZE FILE OUT THREADS`; prints one JSON line with its wall time and memory.
def _child(argv: list[str]) -> dict:
    import threading

    rss = []  # (seconds since start, RSS MiB), sampled while the work runs

    def sample(stop: threading.Event, t0: float):
        while not stop.wait(0.2):
            rss.append((time.perf_counter() - t0, _status_mib("VmRSS")))

    stop, t0 = threading.Event(), time.perf_counter()
    threading.Thread(target=sample, args=(stop, t0), daemon=True).start()
    out = {}
    if argv[0] == "tokenize":
        from picollm.data.bpe import use_threads
        from picollm.data.tokenizer import get_tokenizer
        from picollm.data.tokens import tokenize_split
        name, tokenizer_json, path, target, threads = argv[1], argv[2], argv[3], argv[4], int(argv[5])
        use_threads(threads)
        tokenizer = get_tokenizer(name, None if tokenizer_json == "-" else tokenizer_json)
        t0 = time.perf_counter()
        ranges = tokenize_split(tokenizer, {"text": path}, target, threads)
        out["tokens"] = ranges["text"]["end"]
    else:
        from picollm.data.bpe import use_threads, write_tokenizer
        size, path, target, threads = int(argv[1]), argv[2], argv[3], int(argv[4])
        use_threads(threads)
        t0 = time.perf_counter()
        out["vocab_size"] = write_tokenizer([path], size, target).n_vocab
    out["seconds"] = time.perf_counter() - t0
    stop.set()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
    out["peak_rss_mib"] = _status_mib("VmHWM")
    early = [m for s, m in rss if s <= 0.1 * out["seconds"]]
    out["rss_at_10pct_mib"] = max(early) if early else None
    return out


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(*args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.tokenize_speed", *map(str, args)], cwd=REPO,
                          env=child_environ(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {args[:2]} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, tokenizer, tokenizer_json, text: Path, n_bytes: int, threads: int, tmp: Path) -> dict:
    lib = library_encode(tokenizer, text, threads)
    ours = child("tokenize", name, tokenizer_json or "-", text, tmp / f"{name.replace(':', '')}.bin", threads)
    if ours["tokens"] != lib["tokens"]:
        raise RuntimeError(f"{name}: tokenize_split wrote {ours['tokens']} tokens, the library gave {lib['tokens']}")
    mb = n_bytes / 1e6
    return {"bytes": n_bytes, "tokens": lib["tokens"],
            "library_s": lib["seconds"], "library_mb_s": mb / lib["seconds"],
            "library_tokens_s": lib["tokens"] / lib["seconds"],
            "ours_s": ours["seconds"], "ours_mb_s": mb / ours["seconds"],
            "ours_tokens_s": ours["tokens"] / ours["seconds"],
            "ratio": lib["seconds"] / ours["seconds"], "peak_rss_mib": ours["peak_rss_mib"],
            "rss_at_10pct_mib": ours["rss_at_10pct_mib"]}


def run(sz: Sizes, peak: dict) -> dict:
    from picollm.data.bpe import train_bpe, use_threads
    from picollm.data.tokenizer import get_tokenizer

    if not SAMPLE.is_file():
        return {"title": TITLE, "results": {}, "targets": [], "notes": [f"skipped: no {SAMPLE}"],
                "table": {"columns": [], "rows": []}}
    threads = sz.threads
    use_threads(threads)  # before `tokenizers` first starts its pool (train_bpe below)
    results = {}
    with tempfile.TemporaryDirectory(prefix="picollm-tokenize-bench-") as tmp:
        tmp = Path(tmp)
        text = tmp / "train.txt"
        n_bytes = write_input(text, input_mb(sz))
        bpe_json = train_bpe([SAMPLE], BPE_SIZE)  # trained on the 1 MB head, as a study on that text would
        (tmp / "tokenizer.json").write_text(bpe_json)
        results["gpt2"] = measure("gpt2", get_tokenizer("gpt2"), None, text, n_bytes, threads, tmp)
        bpe_name = f"bpe:{BPE_SIZE}"
        results[bpe_name] = measure(bpe_name, get_tokenizer(bpe_name, bpe_json), tmp / "tokenizer.json", text,
                                    n_bytes, threads, tmp)
        trained = child("train", BPE_SIZE, text, tmp / "trained.json", threads)
        results["train_bpe"] = {"bytes": n_bytes, "seconds": trained["seconds"],
                                "mb_s": n_bytes / 1e6 / trained["seconds"], "vocab_size": trained["vocab_size"],
                                "peak_rss_mib": trained["peak_rss_mib"]}
    return report(results, threads, n_bytes)


def report(results: dict, threads: int, n_bytes: int) -> dict:
    gpt2 = results["gpt2"]
    rows = []
    for name, r in results.items():
        if name == "train_bpe":
            continue
        library = "tiktoken encode_ordinary_batch" if name == "gpt2" else "tokenizers encode_batch_fast"
        rows.append([f"{name}: {library} alone", round(r["library_mb_s"], 2), round(r["library_tokens_s"]), "", "", ""])
        rows.append([f"{name}: ours (tokenize_split)", round(r["ours_mb_s"], 2), round(r["ours_tokens_s"]),
                     f"{r['ratio']:.2f}", round(r["peak_rss_mib"]),
                     "" if r["rss_at_10pct_mib"] is None else round(r["rss_at_10pct_mib"])])
    t = results["train_bpe"]
    rows.append([f"train bpe:{BPE_SIZE} (train_bpe)", round(t["mb_s"], 2), "", "", round(t["peak_rss_mib"]), ""])
    full_s = {name: FULL_TRAIN_BYTES / 1e6 / r["ours_mb_s"] for name, r in results.items() if name != "train_bpe"}
    notes = [f"{n_bytes / 1e6:,.0f} MB of TinyStories text (the train head repeated), {threads} threads; MB = 10^6 "
             f"bytes of UTF-8 text; tokens include one end-of-text per document.",
             f"Full TinyStories train split (~{FULL_TRAIN_BYTES / 1e9:.1f} GB of text, "
             f"~{FULL_TRAIN_GPT2_TOKENS / 1e6:.0f}M GPT-2 tokens) at these rates: GPT-2 tokenize "
             f"{full_s['gpt2'] / 60:.1f} min "
             f"({FULL_TRAIN_GPT2_TOKENS / gpt2['ours_tokens_s'] / 60:.1f} min by tokens/s), bpe:{BPE_SIZE} tokenize "
             f"{full_s[f'bpe:{BPE_SIZE}'] / 60:.1f} min, bpe:{BPE_SIZE} training "
             f"{FULL_TRAIN_BYTES / 1e6 / t['mb_s'] / 60:.1f} min.",
             "Peak RSS is the child process's (VmHWM), Python and the tokenizer included; 'RSS at 10%' is its RSS a "
             "tenth of the way through: equal numbers mean memory stays flat as the file streams."]
    targets = [{"target": f"our GPT-2 tokenize >= {TARGET_RATIO:.0%} of tiktoken's throughput", "value": gpt2["ratio"],
                "met": gpt2["ratio"] >= TARGET_RATIO, "display": f"{gpt2['ratio']:.0%}"}]
    return {"title": TITLE, "results": results, "targets": targets, "notes": notes,
            "table": {"columns": ["what", "MB/s", "tokens/s", "ours / library", "peak RSS MiB", "RSS at 10% MiB"],
                      "rows": rows}}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1:])))
