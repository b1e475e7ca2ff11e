"""A training job owns its model folder: one trainer per folder, and no trainer left without its Snakemake.

folder_lock: `<out-dir>/train.lock` names the host and pid of the job that trains there. A second job for the
same folder (on this machine, or on another node of a shared file system) is refused with one line naming
them; the holder removes the file when it ends. A lock left behind by a process that is gone (SIGKILL) is
taken over when it names a dead pid on this host; one from another host only that host can judge, so the
line says to delete it. Where the file system supports flock, the kernel's lock backs the file (it is
released when its process dies, whatever killed it).

ParentWatch: the rule starts training with PICOLLM_PARENT_PID, the Snakemake that runs the job. When that
process is gone (killed with SIGKILL, so it could stop no job), training stops after a checkpoint as on
SIGTERM, instead of going on beside the trainer a rerun starts.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import socket
import time
from pathlib import Path

import psutil

from picollm.errors import PicoError

LOCK = "train.lock"
PARENT_ENV = "PICOLLM_PARENT_PID"
HOST = socket.gethostname()


def _started(pid: int) -> str | None:
    """When a live process started (psutil's create time, on Linux and macOS alike), None when it is gone or a
    zombie (dead, not yet reaped); "" for a live one the system will not describe (another user's)."""
    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else repr(proc.create_time())
    except (psutil.NoSuchProcess, ValueError):
        return None
    except psutil.AccessDenied:
        return ""


def alive(pid: int) -> bool:
    return pid > 0 and _started(pid) is not None


# --- the lock ---------------------------------------------------------------------------------------------

def _flock(fd: int) -> bool | None:
    """True: this process now holds the kernel lock; False: a live process holds it; None: no flock here."""
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except (ImportError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        return None


def _holder(fd: int) -> dict:
    with contextlib.suppress(ValueError, OSError):
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        if isinstance(holder, dict):
            return holder
    return {}


def _refusal(path: Path, holder: dict) -> PicoError:
    who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
    since = f" since {holder['started']}" if holder.get("started") else ""
    return PicoError(f"{path.parent} is being trained by {who}{since} (lock {path}); wait for that job or stop it, "
                     f"then rerun; if that process is gone, delete {path}")


def _claim(path: Path, fd: int) -> bool:
    """Write this process into the open lock file `fd` (False: `path` names another file than `fd`: open it again)."""
    locked = _flock(fd)
    try:
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # its holder removed the file between our open and our lock
        return False
    holder = _holder(fd)
    mine = holder.get("host") == HOST and holder.get("pid") == os.getpid()
    # on this host a live holder holds the flock too: a pid still running but without it reused the number
    pid = holder.get("pid") if isinstance(holder.get("pid"), int) else 0
    stale = holder.get("host") == HOST and (locked or not alive(pid))
    if locked is False or (holder and not (mine or stale)):
        raise _refusal(path, holder)
    me = {"host": HOST, "pid": os.getpid(), "started": dt.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return True


def _take(path: Path) -> int:
    """An open descriptor of `path` with this process written into it (and flock held where supported)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if _claim(path, fd):
                return fd
        except BaseException:  # a refusal, or an error reading or writing the file: the descriptor goes too
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder):
    """Hold `folder/train.lock` for the block (PicoError naming the holder when another job holds it)."""
    path = Path(folder) / LOCK
    fd = _take(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _holder(fd).get("pid") == os.getpid() and os.fstat(fd).st_ino == os.stat(path).st_ino:
                path.unlink()
        os.close(fd)


# --- the parent -------------------------------------------------------------------------------------------

class ParentWatch:
    """Whether the process in PICOLLM_PARENT_PID (the Snakemake running this job) is gone: checked at most
    once a second, its start time compared so that a reused pid does not pass for it."""

    def __init__(self, interval: float = 1.0):
        value = os.environ.get(PARENT_ENV, "")
        # the pid is one of the first node's (srun's node 0, where the job's command runs): ranks on the other
        # nodes of a multi-node job do not watch it, and stop with the first node's ranks (distributed.any_rank).
        # Without srun, torchrun's GROUP_RANK tells the node (the rendezvous numbers nodes in order of arrival).
        first_node = int(os.environ.get("SLURM_NODEID", os.environ.get("GROUP_RANK", 0))) == 0
        self.pid = int(value) if value.isdigit() and first_node else None
        self.seen = _started(self.pid) if self.pid else None
        self.interval, self.next_check, self.lost = interval, 0.0, False

    def gone(self) -> bool:
        if self.pid is None or self.seen is None or self.lost:
            return self.lost
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + self.interval
            self.lost = _started(self.pid) != self.seen
        return self.lost


# --- the snakemakes of a directory ------------------------------------------------------------------------

def snakemakes_in(directory) -> list[int]:
    """Pids of the snakemake processes on this host (but this one) working in `directory`: what `--unlock`
    must not take the lock from. Another user's processes, which the system will not describe, are none."""
    here, found = Path(directory).resolve(), []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or not _is_snakemake(proc.cmdline()):
                continue
            if Path(proc.cwd()).resolve() == here and alive(proc.pid):
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return sorted(found)


def slurm_job_of(pid: int) -> str | None:
    """The SLURM job a snakemake process runs a job step of (`--mode remote`: the SLURM executor's job steps, on a
    node that is also where the run was started), None for any other."""
    try:
        proc = psutil.Process(pid)
        argv = proc.cmdline()
        if "--mode" not in argv or argv[argv.index("--mode") + 1:][:1] != ["remote"]:
            return None
        return proc.environ().get("SLURM_JOB_ID")
    except (psutil.Error, OSError):
        return None


def _is_snakemake(argv: list[str]) -> bool:
    """`snakemake ...` or `python -m snakemake ...` (a job's own shell command is neither)."""
    return bool(argv) and (Path(argv[0]).name == "snakemake" or argv[1:3] == ["-m", "snakemake"]
                           or (len(argv) > 1 and Path(argv[0]).name.startswith("python")
                               and Path(argv[1]).name == "snakemake"))
