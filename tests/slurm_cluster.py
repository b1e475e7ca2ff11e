"""A throwaway single-node SLURM cluster on localhost, for tests/test_slurm.py.

Made for a Debian 12 machine where the tests run as root without systemd (CI's machines):
Debian's `slurmctld slurmd slurm-client munge` (22.05) are installed with apt-get when missing, a
slurm.conf for one node (this machine, CPUs and memory as `slurmd -C` reports them) is written, and
munged (as user munge), slurmctld and slurmd are started by hand.

- Idempotent: a daemon that already answers (left by an earlier run, or started by someone else) is
  reused, not started twice; the config file is rewritten only when its content changes.
- `Cluster.stop()` stops exactly the daemons this `Cluster` started (by the PIDs it recorded) and
  nothing else.
- The config is /etc/slurm/slurm.conf, the path compiled into Debian's SLURM: snakemake's
  slurm-jobstep plugin drops every SLURM_* variable (SLURM_CONF included) before its `srun`, so
  the job steps only find the default path. A slurm.conf there that this module did not write
  belongs to a real installation: `why_unavailable()` then refuses to touch it.
- State, spool, pid and log files live in STATE_DIR.
- Opt-in: tests/test_slurm.py uses the cluster only when PICOLLM_SLURM_TESTS=1 (`opt_in_missing()`);
  `python tests/slurm_cluster.py` starts it by hand, which is asking for it.
- No accounting (no slurmdbd): `sacct` does not work, so snakemake must query job states with
  `squeue` (`slurm-status-command: squeue`), which sees finished jobs for MinJobAge seconds.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
COMMANDS = ["munged", "munge", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo"]
CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# Written by pico-llm tests/slurm_cluster.py: a single-node test cluster on localhost."
STATE_DIR = Path("/var/tmp/picollm-slurm")
MUNGE_RUN = Path("/run/munge")
MUNGE_PID = MUNGE_RUN / "munged.pid"
MUNGE_KEY = Path("/etc/munge/munge.key")
# seconds a finished job stays visible to squeue and scontrol: the plugin needs >= 3 x its initial wait,
# the tests read the finished jobs after a run of several minutes
MIN_JOB_AGE = 3600
PARTITION = "debug"


class ClusterError(RuntimeError):
    """The test cluster could not be installed or started; the message says which step and shows its log."""


# The tests set up the cluster only when this is "1": doing so apt-installs packages and starts root daemons
# on the machine running the tests, which a plain `pytest` must not do behind the user's back.
OPT_IN = "PICOLLM_SLURM_TESTS"


def opt_in_missing() -> str | None:
    """The skip reason of the cluster tests when they were not asked for, or None when they were."""
    if os.environ.get(OPT_IN) == "1":
        return None
    return (f"real-cluster SLURM tests are opt-in: set {OPT_IN}=1 to run them (as root they apt-install "
            f"{' '.join(PACKAGES)} and start a single-node cluster on this machine)")


def why_unavailable() -> str | None:
    """Why a test cluster cannot be set up here (a pytest skip reason), or None when it can."""
    if not sys.platform.startswith("linux"):
        return "the SLURM test cluster needs Linux (Debian's slurm packages)"
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (it installs Debian's slurm packages and starts munged/slurmctld/slurmd)"
    if _missing_commands() and not shutil.which("apt-get"):
        return f"SLURM is not installed and apt-get is unavailable to install it ({' '.join(PACKAGES)})"
    if CONF.exists() and MARKER not in CONF.read_text(errors="replace"):
        return f"{CONF} exists and was not written by tests/slurm_cluster.py: not touching a real SLURM installation"
    return None


SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])


def _which(command: str) -> str | None:
    return shutil.which(command, path=SEARCH_PATH)


def _missing_commands() -> list[str]:
    return [c for c in COMMANDS if not _which(c)]


def _run(cmd, *, timeout=60, check=True, **kwargs) -> subprocess.CompletedProcess:
    cmd = [_which(cmd[0]) or cmd[0], *cmd[1:]]  # daemons live in /usr/sbin, which a PATH may lack
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise ClusterError(f"`{' '.join(map(str, cmd))}` exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def install() -> None:
    """apt-get install the SLURM packages if any command is missing (apt-get update first, once)."""
    if not _missing_commands():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], timeout=600, env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], timeout=900, env=env)
    if missing := _missing_commands():
        raise ClusterError(f"apt-get installed {PACKAGES} but these commands are still missing: {missing}")


def _alive(pid: int | None, name: str) -> bool:
    """Is process `pid` alive and named `name` (so a recycled PID is never mistaken for a daemon)?"""
    if not pid:
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name[:15]
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    tail = ""
    if log and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


class Cluster:
    def __init__(self, state_dir: Path = STATE_DIR):
        self.dir = Path(state_dir)
        self.started: dict[str, int] = {}  # daemon name -> PID, for the daemons this object started
        self.last_ping = ""  # what `scontrol ping` last said, for the error of a controller that never answers
        self.node = self.cpus = self.memory_mb = None

    # --- configuration ---------------------------------------------------------------------------
    def node_line(self) -> str:
        """This machine as a NodeName line, from `slurmd -C` (its first line: NodeName=... RealMemory=...)."""
        first = _run(["slurmd", "-C"]).stdout.splitlines()[0]
        fields = dict(item.split("=", 1) for item in first.split())
        self.node, self.cpus, self.memory_mb = fields["NodeName"], int(fields["CPUs"]), int(fields["RealMemory"])
        return f"{first} NodeAddr=127.0.0.1 State=UNKNOWN"

    def config(self) -> str:
        d = self.dir
        host = socket.gethostname().split(".")[0]
        return "\n".join([
            MARKER,
            f"# State, logs and pid files: {d}. Started by hand (no systemd); see tests/slurm_cluster.py.",
            "ClusterName=picollm-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={d}/state",
            f"SlurmdSpoolDir={d}/spool",
            f"SlurmctldPidFile={d}/slurmctld.pid",
            f"SlurmdPidFile={d}/slurmd.pid",
            f"SlurmctldLogFile={d}/slurmctld.log",
            f"SlurmdLogFile={d}/slurmd.log",
            # no cgroups without systemd: track job processes by their parent PIDs, bind no tasks
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            # cores and memory are consumable: a job gets the CPUs it asks for (--cpus-per-task), no more
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",
            f"MinJobAge={MIN_JOB_AGE}",
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=10",
            "Waittime=0",
            self.node_line(),
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def write_config(self) -> bool:
        """Write slurm.conf (and the state dirs); True when the file changed."""
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        text = self.config()
        if CONF.exists() and CONF.read_text() == text:
            return False
        CONF.parent.mkdir(parents=True, exist_ok=True)
        tmp = CONF.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(CONF)
        return True

    # --- daemons ---------------------------------------------------------------------------------
    @staticmethod
    def munge_ok() -> bool:
        try:
            return subprocess.run([_which("munge") or "munge", "-n"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def start_munge(self) -> None:
        if self.munge_ok():
            return
        munge = pwd.getpwnam("munge")
        if not MUNGE_KEY.exists():
            _run(["mungekey", "--create", f"--keyfile={MUNGE_KEY}"])
            os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
            MUNGE_KEY.chmod(0o400)
        MUNGE_RUN.mkdir(parents=True, exist_ok=True)
        os.chown(MUNGE_RUN, munge.pw_uid, munge.pw_gid)
        MUNGE_RUN.chmod(0o755)
        # munged forks into the background once it is ready; the pid file names the daemon
        _run(["runuser", "-u", "munge", "--", _which("munged") or "munged"], timeout=30)
        _wait(self.munge_ok, 20, "munged", Path("/var/log/munge/munged.log"))
        pid = _read_pid(MUNGE_PID)
        if not _alive(pid, "munged"):
            raise ClusterError(f"munged answers but {MUNGE_PID} names no munged process")
        self.started["munged"] = pid

    def ctld_ok(self) -> bool:
        proc = _run(["scontrol", "ping"], check=False, timeout=20)
        self.last_ping = (proc.stdout + proc.stderr).strip()
        return proc.returncode == 0 and "UP" in proc.stdout

    def start_slurmctld(self, config_changed: bool) -> None:
        pid = _read_pid(self.dir / "slurmctld.pid")
        if _alive(pid, "slurmctld") and self.ctld_ok():
            if config_changed:
                _run(["scontrol", "reconfigure"])
            return
        # A controller that recovers an earlier run's state (on a loaded 2-core machine) can take a minute to
        # answer; one that started and still never answers is stopped and started once more.
        for attempt in (1, 2):
            # -c: a fresh cluster, without the jobs and node states of an earlier run
            _run(["slurmctld", "-c"], timeout=30)
            pid = _read_pid(self.dir / "slurmctld.pid")
            if _alive(pid, "slurmctld"):  # ours from now on: stop() ends it even if it never answers
                self.started["slurmctld"] = pid
            try:
                _wait(self.ctld_ok, 90, f"slurmctld to answer `scontrol ping` (attempt {attempt} of 2)",
                      self.dir / "slurmctld.log")
                break
            except ClusterError as exc:
                if attempt == 2:
                    raise ClusterError(f"{exc}\nlast `scontrol ping`: {self.last_ping}") from None
                self.stop_daemon("slurmctld")
        pid = _read_pid(self.dir / "slurmctld.pid")
        if not _alive(pid, "slurmctld"):
            raise ClusterError("slurmctld answers but its pid file names no slurmctld process")
        self.started["slurmctld"] = pid

    def node_state(self) -> str:
        proc = _run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T"], check=False, timeout=20)
        return proc.stdout.strip().lower() if proc.returncode == 0 else ""

    def start_slurmd(self) -> None:
        pid = _read_pid(self.dir / "slurmd.pid")
        if not _alive(pid, "slurmd"):
            _run(["slurmd"], timeout=30)
            _wait(lambda: _alive(_read_pid(self.dir / "slurmd.pid"), "slurmd"), 20, "slurmd to start",
                  self.dir / "slurmd.log")
            self.started["slurmd"] = _read_pid(self.dir / "slurmd.pid")
        # a node left DOWN/DRAINED by an earlier run is resumed; an idle (or mixed/allocated) node is ready
        if self.node_state().rstrip("*~#") in ("down", "drained", "draining", "drain"):
            _run(["scontrol", "update", f"NodeName={self.node}", "State=RESUME"], check=False)
        _wait(lambda: self.node_state().rstrip("*~#") in ("idle", "mixed", "allocated", "completing"), 60,
              f"node {self.node} to become idle", self.dir / "slurmd.log")

    def start(self) -> "Cluster":
        install()
        changed = self.write_config()
        self.start_munge()
        self.start_slurmctld(changed)
        self.start_slurmd()
        return self

    # --- teardown --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop exactly the daemons this object started, newest first (jobs first, if the controller is ours)."""
        if "slurmctld" in self.started and self.ctld_ok():
            _run(["scancel", "--quiet", f"--partition={PARTITION}"], check=False)
        for name in ("slurmd", "slurmctld", "munged"):
            self.stop_daemon(name)

    def stop_daemon(self, name: str) -> None:
        """Stop the daemon `name` if this object started it: SIGTERM, then SIGKILL after 30 s."""
        pid = self.started.pop(name, None)
        if pid is None or not _alive(pid, name):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid, name) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid, name):
            os.kill(pid, signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # `python tests/slurm_cluster.py`: start the cluster by hand and leave it running
    if reason := why_unavailable():
        sys.exit(f"unavailable: {reason}")
    cluster = Cluster().start()
    print(f"SLURM up: node {cluster.node} ({cluster.cpus} CPUs, {cluster.memory_mb} MB), partition {PARTITION}; "
          f"started {cluster.started or 'nothing (already running)'}; logs in {cluster.dir}")
