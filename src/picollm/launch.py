"""Starting the ranks of a data-parallel job (train.devices x train.nodes > 1), and telling how it ended in one line.

`picollm train --devices N --nodes M` checks the launch (`relaunch`) and runs torchrun through this module's
agent (`python -m picollm.launch <torchrun options> -m picollm -- <argv>`): on one node directly, on M nodes
under srun, one agent per node, meeting at a c10d rendezvous on this (the job's first) node. It waits for them,
passing SIGTERM and SIGINT on, so that a stopped job checkpoints as one process does.

Each agent sends its own output (torch's warnings and failure reports, and whatever the ranks print outside
their logs, rank 0's terminal lines among them) to <log>.node<k>, and adds one line there for a rank of its node
that died of a signal, which wrote no line of its own. When the job fails, the first node's process reads those
files and tells the terminal the one line that explains it (`failure_line`): a rank that died first, then a
rank's own error, then an agent's, then a rank that only lost another. srun's --kill-on-bad-exit ends every node
once one fails, and a rank whose peer is gone fails at its next collective, so a dead rank ends the job at once.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from picollm.cli import LOST
from picollm.errors import Interrupted, PicoError, first_line

DIED = "died of"  # in an agent's line for a rank killed by a signal


def log_path(argv: list) -> str | None:
    """The `--log` of a picollm command line (the one before its stage), if any."""
    return argv[argv.index("--log") + 1] if "--log" in argv[:-1] else None


def node_log(log: str, node: int) -> Path:
    return Path(f"{log}.node{node}")


def free_port() -> int:
    """A TCP port nothing listens on now: the rendezvous of two jobs whose first node is the same machine
    must not share one."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def launch_command(argv: list, devices: int, nodes: int, threads: int, gpus: bool) -> list[str]:
    """This module's agent (torchrun, from this Python) running `python -m picollm <argv>` on `devices`
    processes; on several nodes, under srun in the SLURM job, with a c10d rendezvous on this node. `--` ends
    torchrun's options: its --log-dir would take picollm's --log."""
    torchrun = [sys.executable, "-m", "picollm.launch", "--nproc-per-node", str(devices)]
    script = ["-m", "picollm", "--", *argv]
    if nodes == 1:
        return [*torchrun, "--standalone", *script]
    srun = ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", f"--cpus-per-task={threads}", "--kill-on-bad-exit=1",
            *([f"--gpus-per-node={devices}"] if gpus else [])]
    rendezvous = ["--nnodes", str(nodes), "--rdzv-backend", "c10d", "--rdzv-id", os.environ["SLURM_JOB_ID"],
                  "--rdzv-endpoint", f"{socket.gethostname()}:{free_port()}"]
    return [*srun, *torchrun, *rendezvous, *script]


def relaunch(argv: list, devices: int, nodes: int, threads: int, device, batch_size: int) -> None:
    """Check a data-parallel launch (one line naming the fix), run it to its end, and raise how it failed."""
    import torch

    from picollm import distributed
    if nodes > 1 and "SLURM_JOB_ID" not in os.environ:
        raise PicoError(f"train.nodes is {nodes} but this is not a SLURM job (srun starts one torchrun per node); "
                        f"run snakemake with --profile profiles/slurm (docs/cluster.md), or set train.nodes: 1")
    distributed.check_world(devices * nodes, devices, batch_size, device,
                            torch.cuda.device_count() if device.type == "cuda" else 0)
    # each rank's torch threads come from --threads; OMP_NUM_THREADS set keeps torchrun from warning about it
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // devices))}
    sys.stdout.flush()
    sys.stderr.flush()
    code = wait(subprocess.Popen(launch_command(argv, devices, nodes, threads, device.type == "cuda"), env=env))
    if code:
        log = log_path(argv)
        line = failure_line([node_log(log, k) for k in range(nodes)] if log else [], code)
        if line.startswith("interrupted"):
            raise Interrupted(signal.SIGTERM)
        raise PicoError(line.removeprefix("error: "))


def wait(proc: subprocess.Popen) -> int:
    """proc's exit status; a SIGTERM or SIGINT meanwhile is passed on, and raised once proc has ended."""
    stopped = None
    while True:
        try:
            code = proc.wait()
            break
        except (Interrupted, KeyboardInterrupt) as exc:
            stopped = stopped or exc
            if proc.poll() is None:
                proc.send_signal(getattr(exc, "signum", signal.SIGINT))
    if stopped is not None:
        raise stopped
    return code


def failure_line(node_logs: list, code: int) -> str:
    """The line that explains a failed job, from its agents' node logs (module docstring)."""
    lines = []
    for path in node_logs:
        if Path(path).is_file():
            text = Path(path).read_text(encoding="utf-8", errors="replace")
            lines += [line for line in text.splitlines() if line.startswith(("error: ", "interrupted"))]

    def rank(line: str) -> int:
        if DIED in line:
            return 0
        if line.startswith("interrupted"):
            return 4
        return 3 if line.startswith(f"error: {LOST}") else 2 if line.startswith("error: torchrun") else 1

    if not lines:
        where = f" (see {', '.join(map(str, node_logs))})" if node_logs else ""
        return f"error: the job's ranks failed with exit status {code}{where}"
    return min(lines, key=rank)


# --- the agent on each node ------------------------------------------------------------------------------

def agent(argv: list) -> int:
    """torch.distributed.run with `argv`, its output in <log>.node<k> (k: SLURM_NODEID, 0 without srun)."""
    log = log_path(argv[argv.index("--") + 1:] if "--" in argv else [])
    node = int(os.environ.get("SLURM_NODEID", 0))
    if log:
        with open(node_log(log, node), "w") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run
    try:
        run(parse_args(argv))
        return 0
    except ChildFailedError as exc:
        for rank, failure in exc.failures.items():
            if failure.exitcode < 0 and -failure.exitcode not in (signal.SIGTERM, signal.SIGINT):
                print(f"error: rank {rank} {DIED} {failure.signal_name()} (pid {failure.pid} on "
                      f"{socket.gethostname()}); every rank stopped: rerun to resume from its last checkpoint",
                      file=sys.stderr, flush=True)
        return 1
    except SignalException as exc:  # srun (its --kill-on-bad-exit), Snakemake or SLURM stopped this node
        return 128 + exc.sigval
    except Exception as exc:
        import traceback
        traceback.print_exc()
        print(f"error: torchrun on node {node} failed: {type(exc).__name__}: {first_line(exc, '')}", file=sys.stderr,
              flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(agent(sys.argv[1:]))
