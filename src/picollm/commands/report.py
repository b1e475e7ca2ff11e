"""`picollm report`: Snakemake's own report of the study (`snakemake --report`), its failure as one line.

The inner run's output goes to this job's log; a failure reaches the terminal as the line that explains it
(a full disk: no_space) instead of Snakemake's bare `message: None`. Snakemake writes the report as it goes: it
writes into a temporary folder beside the output, and the report is moved onto the output only once complete, so
a failure leaves the previous report, or none, never a truncated one.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from picollm.errors import PicoError
from picollm.io import disk_full, no_space, write_problem


def run(args):
    out = Path(args.out)
    with _beside(out) as folder:
        # the same name in the folder: its suffix picks the format (.html or .zip), its stem a .zip's folder
        tmp = Path(folder) / out.name
        said = _report(args, tmp)
        if said is None:
            os.replace(tmp, out)
            return
        # asked while the part written is still there: removing it frees the disk it filled
        if "No space left on device" in said or "Disk quota exceeded" in said or disk_full(out.parent):
            raise no_space(out)
    last = next((line.strip() for line in reversed(said.splitlines()) if line.strip()), "no output")
    raise PicoError(f"snakemake --report failed ({last}); its whole output is in the log")


def _beside(out: Path) -> tempfile.TemporaryDirectory:
    """A temporary folder in `out`'s folder (the same disk, so the report moves onto `out` by a rename), removed
    with whatever it holds when the block ends."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        problem = write_problem(out, exc)  # a full or read-only disk: one line
        if problem:
            raise problem from None
        raise


def _report(args, path: Path) -> str | None:
    """Run `snakemake --report path`, its output into this job's log; None when it succeeded, else its output."""
    # --nolock: the inner run only reads, alongside the run that started this job
    command = [sys.executable, "-m", "snakemake", "-s", args.snakefile, "--directory", ".", "--nolock",
               "--workflow-profile", "none", "--report", str(path), "--configfile", args.configfile,
               *(["--report-stylesheet", args.stylesheet] if args.stylesheet else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout + result.stderr, end="")
    return None if result.returncode == 0 else result.stdout + result.stderr
