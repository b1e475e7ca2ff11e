"""Small file helpers shared by every stage: atomic writes, hashing, the full-disk message and notes that
reach the terminal."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from picollm.errors import PicoError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}  # a full disk, or a full quota: the same fix
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}  # a read-only mount, or a folder of another user
# torch.save reports a failed write (a full disk among other causes) as a RuntimeError of its zip writer
TORCH_WRITE_FAILED = ("inline_container.cc", "PytorchStreamWriter failed", "unexpected pos")

terminal = None  # the CLI's terminal stream while stdout and stderr go to a --log file (picollm.cli)


def cache_dir() -> Path:
    """Where what is worth keeping between runs on this machine is kept (measurements, parsed code):
    $PICOLLM_CACHE_DIR, else $XDG_CACHE_HOME/picollm (~/.cache/picollm)."""
    if os.environ.get("PICOLLM_CACHE_DIR"):
        return Path(os.environ["PICOLLM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "picollm"


def size(n: float) -> str:
    """A byte count as people read it: 950 bytes, 1.2 MB, 3.4 GB."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{int(n)} bytes"
        n /= 1000


@contextlib.contextmanager
def held_lock(path):
    """An exclusive flock on the file `path` (created with its folder if need be) for the block: processes that
    take it run the block one at a time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def no_space(path) -> PicoError:
    """The one line for a write that found the disk (or the quota) full."""
    path = Path(path)
    return PicoError(f"no space left on {path.parent} (writing {path.name}); free some space there, then rerun: "
                     f"finished work is kept")


def not_writable(path, exc: OSError) -> PicoError:
    """The one line for a write refused by the file system (read-only, or not ours): the folder, not the
    temporary name the write used."""
    path = Path(path)
    return PicoError(f"cannot write in {path.parent} ({exc.strerror.lower()}; writing {path.name}); make it "
                     f"writable, then rerun: finished work is kept")


def write_stopped(path, why: str) -> PicoError:
    """The one line for a write that stopped short where the disk itself is not full: a quota (which the disk's
    free space does not show), a file-size limit, or space freed again since."""
    path = Path(path)
    return PicoError(f"could not write {path.name} in {path.parent} ({why}): a full quota or a file-size limit "
                     f"(ulimit -f) stops a write too; make room there, then rerun: finished work is kept")


def file_in_the_way(path) -> PicoError | None:
    """The one line for a folder to write in that is a file somewhere along its path; None when none is."""
    path = Path(path)
    blocking = next((p for p in [*reversed(path.parents), path] if p.exists() and not p.is_dir()), None)
    if blocking is None or blocking == path:
        return None
    return PicoError(f"cannot write {path}: {blocking} is a file, not a folder; move it away (or give another "
                     f"path), then rerun: finished work is kept")


def make_parent(path: Path) -> None:
    """The folder `path` goes in, made; one line when a file stands where a folder of it should be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        problem = file_in_the_way(path)
        if problem:
            raise problem from None
        raise


def write_problem(path, exc: OSError) -> PicoError | None:
    """The one line for a failed write to `path` (or read of it) that is the machine's, not a bug: a full disk,
    a file-size limit, a file where a folder should be, a folder that cannot be written, a file that cannot be
    read; None for anything else."""
    path = Path(path)
    if exc.errno in NO_SPACE:
        return no_space(path)
    if exc.errno == errno.EFBIG:
        return write_stopped(path, exc.strerror.lower())
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return file_in_the_way(path)
    if exc.errno not in NOT_WRITABLE:
        return None
    if path.exists() and not os.access(path, os.R_OK):
        return PicoError(f"cannot read {path} ({exc.strerror.lower()}); make it readable, then rerun")
    if exc.errno == errno.EROFS or not os.access(path.parent, os.W_OK):
        return not_writable(path, exc)
    return None


def check_room(folder, needed: int = 1 << 20) -> None:
    """One line when `folder`'s disk has less than `needed` bytes free: Snakemake writes its lock and metadata
    (.snakemake/) before any job, and a full disk there ends in its own long traceback."""
    if disk_full(folder, below=needed):
        raise PicoError(f"no space left on {Path(folder).resolve()} (Snakemake writes its lock and records in "
                        f".snakemake/ there before any job); free some space there, then rerun: finished work is kept")


def check_writable(folder, tree: bool = False) -> None:
    """One line when the study's results folder (and with `tree`, any folder in it: a read-only mount inside)
    cannot be written (a read-only mount, another user's folder): Snakemake would call its outputs
    write-protected, or end in a traceback on the first job's log."""
    folder = Path(folder)
    _probe(folder)
    if tree:
        for inner, _, _ in os.walk(folder):
            if not os.access(inner, os.W_OK):  # a read-only mount answers EROFS here, for root too
                _probe(Path(inner))


def _probe(folder: Path) -> None:
    """Make `folder` and a file in it; one line when the file system refuses."""
    probe = folder / f".writable.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        if exc.errno not in NOT_WRITABLE:
            raise
        raise PicoError(f"cannot write in {folder.resolve()} ({exc.strerror.lower()}); make it writable, then "
                        f"rerun: finished work is kept") from None


def disk_full(folder: Path, below: int = 1 << 16) -> bool:
    """Whether `folder`'s disk has less than `below` bytes free: by default, whether a failed write there is
    explained by a full disk (a failed write leaves less than a block)."""
    with contextlib.suppress(OSError):
        return shutil.disk_usage(folder).free < below
    return False


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block finishes.

    Snakemake (and a user) must never see a half-written output as complete: a crash leaves at most a
    `.tmp` file, never a truncated `path`. A full disk ends in one line naming the folder (no_space).
    """
    path = Path(path)
    if path.is_dir():  # the rename would fail naming the temporary file
        raise PicoError(f"{path} is a folder; give the path of the file to write (a name inside it)")
    make_parent(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        problem = write_problem(path, exc)
        if problem:
            raise problem from None
        raise
    except RuntimeError as exc:
        if any(sign in str(exc) for sign in TORCH_WRITE_FAILED):
            raise (no_space(path) if disk_full(path.parent) else write_stopped(path, "the write stopped short")) \
                from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


class FollowedLog:
    """A training's log file that follows its path: when the file is deleted or replaced under it (Snakemake
    deletes a job's log before it starts the job, a second job for the same training folder among them, which
    the folder's lock then refuses), the lines written so far are put back at the path, before any the new file
    holds, and writing goes on there. Reading the file as this process holds it, deleted or not, takes Linux's
    /proc; elsewhere the log stays as it is."""

    EVERY = 1.0  # seconds between two looks at the path

    def __init__(self, path):
        self.path = Path(path)
        self.file = open(self.path, "a", encoding="utf-8")
        self.looked = time.monotonic()

    def write(self, text: str) -> int:
        if time.monotonic() - self.looked >= self.EVERY:
            self.follow()
        return self.file.write(text)

    def __getattr__(self, name):  # flush, close, fileno, isatty, encoding: the file's own
        return getattr(self.file, name)

    def follow(self) -> None:
        self.looked = time.monotonic()
        with contextlib.suppress(OSError, PicoError):
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(self.file.fileno()), os.stat(self.path)):
                    return
            self.file.flush()
            written = Path(f"/proc/self/fd/{self.file.fileno()}").read_bytes()
            newer = self.path.read_bytes() if self.path.exists() else b""
            if written not in newer:  # else another follower (the refused job's) put them there already
                with atomic_path(self.path) as tmp:
                    tmp.write_bytes(written + newer)
            self.file.close()
            self.file = open(self.path, "a", encoding="utf-8")


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(path, frame) -> None:
    """A pandas DataFrame as CSV, without its index, atomically (io.py needs no pandas itself)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def say(line: str, stream) -> None:
    """`line` and its newline in one write: jobs side by side share the terminal, and print's two writes (the
    text, then the newline) let another job's line land between them."""
    stream.write(line + "\n")
    stream.flush()


def tell(text: str, stream=None) -> None:
    """`text` on `stream` (default stderr; the job's log under --log) and on the terminal too: what a job does
    that the user should see as it happens (a training resuming where it stopped), which is no warning."""
    stream = stream or sys.stderr
    say(text, stream)
    if terminal is not None and terminal is not stream:
        with contextlib.suppress(OSError, ValueError):
            say(text, terminal)


def note(text: str) -> None:
    """`note: text` on stdout (the job's log under --log) and on the terminal too: something the user should
    see without opening the log."""
    tell(f"note: {text}", sys.stdout)
