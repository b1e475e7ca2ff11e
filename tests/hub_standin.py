"""A local stand-in for the Hugging Face Hub, and a tiny forwarding HTTP proxy, for the Hub tests.

The stand-in serves dataset repositories over plain HTTP on 127.0.0.1 and answers only the endpoints that
`datasets.load_dataset(name, split=..., streaming=True, revision=...)` calls (datasets 5.2.0 with
huggingface_hub 2.4.0; read from their sources and confirmed by the request log):

  HEAD /datasets/<repo>/resolve/<rev>/<path>        file metadata: X-Repo-Commit, ETag, size (hf_hub_download)
  GET  /datasets/<repo>/resolve/<rev>/<path>        file bytes, whole or a Range (README.md, the parquet files)
  GET  /api/datasets/<repo>/revision/<rev>          repository info (HfFileSystem checks repo and revision)
  GET  /api/datasets/<repo>/tree/<rev>[/<dir>]      file listing (datasets matches split patterns against it)

Anything else gets a 404 and stays in the log, so a test can assert that nothing else was asked. Faults can
be injected per file: a connection dropped in the middle of the body, or an HTTP status (429, 503, ...).
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

# The revision config.schema.yaml pins for roneneldan/TinyStories.
PINNED = "f54c09fd23315a6f9c86f9dc80f725de7d8f9c64"
NEWER = "0123456789abcdef0123456789abcdef01234567"  # a later commit that "main" points to

# The dataset card: license and task metadata, and the dataset_info that push_to_hub writes. It has no
# `configs:` block, so datasets infers the data files from the repository layout (split names in file names).
README = """---
license: cdla-sharing-1.0
task_categories:
- text-generation
language:
- en
dataset_info:
  features:
  - name: text
    dtype: string
  splits:
  - name: train
    num_bytes: {train_bytes}
    num_examples: {n_train}
  - name: validation
    num_bytes: {val_bytes}
    num_examples: {n_val}
---
Dataset containing synthetically generated (by GPT-3.5 and GPT-4) short stories that only use a small
vocabulary. (A small local stand-in for tests.)
"""


def story(split: str, i: int, tag: str) -> str:
    return f"Once upon a time, in {split} story {i} of commit {tag}, a little dog found a red ball.\nThe end."


def parquet_bytes(texts: list[str], row_group_size: int = 25) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf, row_group_size=row_group_size)
    return buf.getvalue()


def tinystories_files(tag: str, n_train: int = 400, n_val: int = 40, train_shards: int = 4,
                      splits=("train", "validation")) -> dict[str, bytes]:
    """The roneneldan/TinyStories layout: parquet shards under data/ (what datasets reads) beside the raw
    text files and archive of the original release (which it must not read)."""
    train = [story("train", i, tag) for i in range(n_train)]
    val = [story("validation", i, tag) for i in range(n_val)]
    card = README.format(n_train=n_train, n_val=n_val, train_bytes=sum(len(t.encode()) for t in train),
                         val_bytes=sum(len(t.encode()) for t in val))
    files = {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n", "README.md": card.encode(),
             "Evaluation prompts.yaml": b"- Once upon a time\n"}
    # The first shard names are the real ones; the other hash suffixes are made up.
    suffixes = ["2d5a1467fff1081b", "5852b56a2bd28fd9", "a26307300439e943", "d243063613e5a057"]
    per_shard = n_train // train_shards
    if "train" in splits:
        for s in range(train_shards):
            name = f"data/train-{s:05d}-of-{train_shards:05d}-{suffixes[s]}.parquet"
            files[name] = parquet_bytes(train[s * per_shard:(s + 1) * per_shard])
    if "validation" in splits:
        files["data/validation-00000-of-00001-869c898b519ad725.parquet"] = parquet_bytes(val)
    for name in ("TinyStories-train.txt", "TinyStories-valid.txt", "TinyStoriesV2-GPT4-train.txt",
                 "TinyStoriesV2-GPT4-valid.txt"):
        files[name] = b"raw release text: the parquet files are the ones to stream\n<|endoftext|>\n"
    files["TinyStories_all_data.tar.gz"] = b"\x1f\x8b not a real archive"
    return files


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]]  # commit sha -> {path: bytes}
    refs: dict[str, str]  # branch name -> commit sha

    def resolve(self, rev: str) -> str | None:
        return rev if rev in self.commits else self.refs.get(rev)


@dataclass
class Fault:
    path: str  # a substring of the request path
    kind: str | int  # "drop" (close the connection halfway through the body) or an HTTP status code
    times: int | None = None  # how many requests it hits (None: all of them)


@dataclass
class Request:
    method: str
    path: str
    query: str
    range: str | None
    status: int
    body_bytes: int = 0


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _entry(path: str, data: bytes) -> dict:
    entry = {"type": "file", "oid": _git_oid(data), "size": len(data), "path": path}
    if path.endswith(".parquet"):  # stored with git LFS on the Hub
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


class _StandinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every response has a Content-Length
    hub: "HubStandin"

    def log_message(self, *args):  # quiet: the tests read hub.requests instead
        pass

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        url = urlsplit(self.path)
        self._send(404, b"", record=Request("POST", url.path, url.query, None, 404))

    def _serve(self, body: bool):
        # A proxy client sends the absolute form (GET http://host/path); HTTP/1.1 servers accept both.
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        rec = Request(self.command, url.path, url.query, self.headers.get("Range"), 200)
        if (fault := self.hub.take_fault(path)) is not None and fault.kind != "drop":
            rec.status = fault.kind
            return self._send(fault.kind, b"", record=rec)
        if m := re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(*m.groups(), body=body, rec=rec, drop=fault is not None)
        if m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/revision/([^/]+)", path):
            return self._revision(*m.groups(), rec=rec)
        if m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
            return self._tree(m[1], m[2], (m[3] or "/").strip("/"), query.get("recursive") == ["true"], rec=rec)
        rec.status = 404
        self._send(404, b"not served by the stand-in", record=rec)

    def _lookup(self, repo_id: str, rev: str, rec: Request):
        """(commit, files), or None after answering the error the Hub gives."""
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            rec.status = 401  # the Hub answers 401 for a missing (or private) repository
            self._send(401, b"", {"X-Error-Code": "RepoNotFound"}, record=rec)
            return None
        commit = repo.resolve(rev)
        if commit is None:
            rec.status = 404
            self._send(404, b"", {"X-Error-Code": "RevisionNotFound",
                                  "X-Error-Message": "Invalid rev id: " + rev}, record=rec)
            return None
        return commit, repo.commits[commit]

    def _resolve(self, repo_id, rev, file, body, rec, drop):
        found = self._lookup(repo_id, rev, rec)
        if found is None:
            return
        commit, files = found
        if file not in files:
            rec.status = 404
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, record=rec)
        data = files[file]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{_entry(file, data).get("lfs", {}).get("oid", _git_oid(data))}"',
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        status = 200
        if (m := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))) is not None:
            start, end = int(m[1]), min(int(m[2] or len(data) - 1), len(data) - 1)
            if start >= len(data):
                rec.status = 416
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, record=rec)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        rec.status = status
        self._send(status, data if body else b"", headers, length=len(data), record=rec, drop=drop and body)

    def _revision(self, repo_id, rev, rec):
        found = self._lookup(repo_id, rev, rec)
        if found is not None:
            commit, files = found
            info = {"id": repo_id, "sha": commit, "private": False, "gated": False, "disabled": False,
                    "siblings": [{"rfilename": p} for p in sorted(files)]}
            self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, record=rec)

    def _tree(self, repo_id, rev, folder, recursive, rec):
        found = self._lookup(repo_id, rev, rec)
        if found is None:
            return
        _, files = found
        prefix = folder + "/" if folder else ""
        entries, dirs = [], set()
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way to the file
                if recursive or depth == 1:
                    dirs.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(_entry(path, files[path]))
        if folder and not entries and not dirs:
            rec.status = 404
            return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, record=rec)
        entries += [{"type": "directory", "oid": _git_oid(d.encode()), "size": 0, "path": d} for d in sorted(dirs)]
        self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, record=rec)

    def _send(self, status, data, headers=None, length=None, record=None, drop=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        self.end_headers()
        if drop:
            # Announce the whole body, send half of it, then cut the connection: a dropped stream.
            data = data[:len(data) // 2]
            self.close_connection = True
        self.wfile.write(data)
        self.wfile.flush()
        if drop:
            self.connection.shutdown(socket.SHUT_RDWR)
        if record is not None:
            record.body_bytes = len(data)
            self.hub.requests.append(record)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _OnLoopback:
    """A context manager serving `handler` (a subclass given this object as `attribute`) on 127.0.0.1."""

    def _serve(self, handler: type, attribute: str):
        bound = type("Handler", (handler,), {attribute: self})
        self._server = _Server(("127.0.0.1", 0), bound)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


@dataclass
class HubStandin(_OnLoopback):
    repos: dict[str, Repo]
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.path in path and f.times != 0:
                    if f.times is not None:
                        f.times -= 1
                    return f
        return None

    def __enter__(self) -> "HubStandin":
        self._lock = threading.Lock()
        return self._serve(_StandinHandler, "hub")

    def served(self, fragment: str) -> list[Request]:
        """The requests whose path contains `fragment` (URL-quoted as sent)."""
        return [r for r in self.requests if fragment in r.path]


def tinystories_hub(**kwargs) -> HubStandin:
    """roneneldan/TinyStories at the pinned commit and a newer "main" with other stories, plus a copy whose
    only split is train."""
    ts = Repo({PINNED: tinystories_files("pinned", **kwargs), NEWER: tinystories_files("newer", **kwargs)},
              {"main": NEWER})
    train_only = Repo({PINNED: tinystories_files("pinned", splits=("train",))}, {"main": PINNED})
    return HubStandin({"roneneldan/TinyStories": ts, "someone/TinyStories-train-only": train_only})


# --- a forwarding proxy -----------------------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards every request to one upstream, whatever host it names: a gateway that is the only route to
    the Hub. Plain HTTP only (a client sends it absolute-form requests; no CONNECT tunnels)."""
    protocol_version = "HTTP/1.1"
    proxy: "ForwardingProxy"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._forward()

    do_HEAD = do_POST = do_GET

    def _forward(self):
        self.proxy.requests.append(f"{self.command} {self.path}")
        url = urlsplit(self.path)
        target = url.path + (f"?{url.query}" if url.query else "")
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=30)
        try:
            upstream.request(self.command, target, body=body, headers=headers)
            resp = upstream.getresponse()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                while chunk := resp.read1(1 << 16):
                    self.wfile.write(chunk)
                if resp.length:  # the upstream closed before the announced end of the body
                    self.close_connection = True  # so drop the client too, as a real proxy does
        except (OSError, http.client.HTTPException):
            self.close_connection = True
        finally:
            upstream.close()


@dataclass
class ForwardingProxy(_OnLoopback):
    upstream: tuple[str, int]
    requests: list[str] = field(default_factory=list)

    def __enter__(self) -> "ForwardingProxy":
        return self._serve(_ProxyHandler, "proxy")


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SilentServer:
    """A port that accepts TCP connections (the kernel's backlog) but never answers: a Hub behind a
    firewall that swallows packets, where only a timeout ends the wait."""

    def __enter__(self) -> "SilentServer":
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        return self

    def __exit__(self, *exc):
        self._sock.close()


# --- running the download stage against the stand-in -----------------------------------------------------

# datasets and huggingface_hub read HF_ENDPOINT (and proxies, offline flags) when imported, so the download
# runs in a fresh interpreter. Their retry *counts* stay as shipped; only the waits between retries shrink
# (datasets: 5-60 s per retry, huggingface_hub: 1-8 s backoff), so a failing stream ends in seconds.
FAST_RETRIES = """
import datasets.config as c
c.STREAMING_READ_RETRY_INTERVAL = c.STREAMING_READ_SERVER_UNAVAILABLE_RETRY_INTERVAL = 0.01
c.STREAMING_READ_RATE_LIMIT_RETRY_INTERVAL = c.STREAMING_OPEN_RETRY_INTERVAL = 0.01
import huggingface_hub.utils._http as h
for f in (h.http_backoff, h.http_stream_backoff.__wrapped__):
    f.__kwdefaults__.update(base_wait_time=0.01, max_wait_time=0.02)
"""

# picollm.data.sources.download, as the download stage calls it, with the CLI's one-line error handling.
DOWNLOAD = """
import json, sys
from picollm.config.sections import SOURCE_CLASSES
from picollm.data.sources import download
from picollm.errors import PicoError
src, train, val = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
src = SOURCE_CLASSES[src["kind"]](**src)
try:
    print(json.dumps(download(src, 1337, 0.05, train, val)))
except PicoError as exc:
    sys.exit(f"error: {exc}")
"""


PROXY_VARS = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


def hub_env(endpoint: str, hf_home, **extra) -> dict:
    """The environment of a download against `endpoint`: a fresh HF cache, no proxy unless given."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARS and not k.startswith("HF_")}
    src_dir = str(Path(__file__).resolve().parents[1] / "src")
    return {**env, "HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": src_dir, **extra}


def run_download(src: dict, out_dir, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """Download one source into out_dir/{train,val}.txt in a fresh interpreter (fast retries)."""
    args = [json.dumps(src), str(Path(out_dir) / "train.txt"), str(Path(out_dir) / "val.txt")]
    return subprocess.run([sys.executable, "-c", FAST_RETRIES + DOWNLOAD, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)

