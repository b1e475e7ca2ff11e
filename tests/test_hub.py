"""The tinystories download through the real `datasets` streaming code, against a local stand-in of the
Hugging Face Hub (tests/hub_standin.py): what arrives, what is asked for, and how failures end."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from hub_standin import (NEWER, PINNED, Fault, ForwardingProxy, SilentServer, closed_port, hub_env,
                         run_download, tinystories_hub)

SOURCE = {"kind": "tinystories", "name": "ts", "train_stories": 30, "val_stories": 5,
          "dataset": "roneneldan/TinyStories", "revision": PINNED}
ALTERNATIVES = ("config/tinystories-local.yaml", "tokenizer: byte", "config/offline.yaml")
# What datasets' streaming asks the Hub for (see hub_standin's docstring); nothing else may be requested.
STREAMING_ENDPOINTS = re.compile(r"/(datasets/[^/]+/[^/]+/resolve|api/datasets/[^/]+/[^/]+/(revision|tree))/")


def documents(path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [d.strip() for d in text.split("<|endoftext|>\n") if d.strip()]


def error_line(proc) -> str:
    """The stage's own error: the last stderr line (the libraries log their retries above it)."""
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), proc.stderr[-2000:]
    return line


def assert_nothing_written(out_dir):
    assert not out_dir.exists() or list(out_dir.iterdir()) == [], list(out_dir.iterdir())


@pytest.fixture
def hub():
    with tinystories_hub() as h:
        yield h


def test_download_streams_the_pinned_revision_and_reads_only_what_it_needs(hub, tmp_path):
    """Through the real CLI: the stories of the pinned commit arrive, and only the first train shard is read."""
    out = tmp_path / "raw"
    cmd = [sys.executable, "-m", "picollm", "download", "--config", json.dumps({"data": {"sources": [SOURCE]}}),
           "--train", str(out / "train.txt"), "--val", str(out / "val.txt")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=hub_env(hub.url, tmp_path / "hf"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train, val = documents(out / "train.txt"), documents(out / "val.txt")
    assert train == [f"Once upon a time, in train story {i} of commit pinned, a little dog found a red ball.\n"
                     f"The end." for i in range(30)]
    assert len(val) == 5 and all("validation story" in d and "commit pinned" in d for d in val)
    asked = [r.path for r in hub.requests]
    # The requested revision, never the branch head ("main" -> NEWER), in every repository request.
    assert asked and all(PINNED in p for p in asked if STREAMING_ENDPOINTS.search(p)), asked
    assert not any(NEWER in p or "/main/" in p for p in asked)
    # Only the endpoints streaming needs (plus huggingface_hub's best-effort agent registry, answered 404).
    assert all(STREAMING_ENDPOINTS.search(p) or p == "/api/agent-harnesses" for p in asked), asked
    # 30 of 400 train stories: the first of the 4 parquet shards only; the raw .txt release files never.
    assert hub.served("train-00000-of-00004") and not any(hub.served(f"train-0000{s}-of") for s in (1, 2, 3))
    assert not hub.served(".txt") and not hub.served(".tar.gz")


def test_wrong_revision_is_one_line(hub, tmp_path):
    proc = run_download({**SOURCE, "revision": "0" * 40}, tmp_path / "raw", hub_env(hub.url, tmp_path / "hf"))
    line = error_line(proc)
    assert "0" * 40 in line and "doesn't exist" in line and "revision" in line
    assert_nothing_written(tmp_path / "raw")


def test_missing_split_is_one_line(hub, tmp_path):
    proc = run_download({**SOURCE, "dataset": "someone/TinyStories-train-only"}, tmp_path / "raw",
                        hub_env(hub.url, tmp_path / "hf"))
    line = error_line(proc)
    assert "no 'validation' split" in line and "Available splits: ['train']" in line
    assert_nothing_written(tmp_path / "raw")  # train streamed fine, but no train.txt without its val.txt


@pytest.mark.parametrize("fault", [Fault("validation-00000", "drop"), Fault("train-00000", 429),
                                   Fault("validation-00000", 503)], ids=["dropped", "429", "503"])
def test_failing_stream_ends_in_one_line_after_the_retries(hub, tmp_path, fault):
    hub.faults.append(fault)
    start = time.perf_counter()
    proc = run_download(SOURCE, tmp_path / "raw", hub_env(hub.url, tmp_path / "hf"))
    line = error_line(proc)
    assert f"streaming roneneldan/TinyStories (revision {PINNED}) failed" in line
    assert all(a in line for a in ALTERNATIVES), line
    assert len(hub.served(fault.path)) > 1  # datasets / huggingface_hub retried before giving up
    assert_nothing_written(tmp_path / "raw")  # not even the complete train.txt when validation failed
    assert time.perf_counter() - start < 60


def test_download_goes_through_a_proxy(hub, tmp_path):
    """Behind a proxy, the Hub is reachable only through it: the pre-check and the stream both use it."""
    port = int(hub.url.rsplit(":", 1)[1])
    endpoint = f"http://127.0.0.1:{closed_port()}"  # direct connections are refused, like a firewall
    with ForwardingProxy(("127.0.0.1", port)) as proxy:
        proc = run_download(SOURCE, tmp_path / "raw", hub_env(endpoint, tmp_path / "hf", HTTP_PROXY=proxy.url))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(documents(tmp_path / "raw" / "train.txt")) == 30
    assert any(r.startswith(f"GET {endpoint}/datasets/roneneldan/TinyStories/resolve/{PINNED}/data/train-00000")
               for r in proxy.requests), proxy.requests


@pytest.mark.parametrize("route", ["refused", "dead proxy", "silent"])
def test_unreachable_hub_fails_fast_naming_the_alternatives(tmp_path, route):
    extra = {"HTTP_PROXY": f"http://127.0.0.1:{closed_port()}"} if route == "dead proxy" else {}
    start = time.perf_counter()
    with SilentServer() as silent:
        endpoint = silent.url if route == "silent" else f"http://127.0.0.1:{closed_port()}"
        proc = run_download(SOURCE, tmp_path / "raw", hub_env(endpoint, tmp_path / "hf", **extra))
    line = error_line(proc)
    assert f"cannot reach the Hugging Face Hub at {endpoint}" in line
    assert ("through the proxy" in line) == (route == "dead proxy")
    assert all(a in line for a in ALTERNATIVES), line
    assert_nothing_written(tmp_path / "raw")
    assert time.perf_counter() - start < 20  # the probe's 5 s timeout, not datasets' retries
