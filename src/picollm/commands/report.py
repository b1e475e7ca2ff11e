"""`picollm report`: Snakemake's own report of the study (`snakemake --report`), its failure as one line.

The inner run's output goes to this job's log; a failure reaches the terminal as the line that explains it
(a full disk: no_space) instead of Snakemake's bare `message: None`.
"""
import subprocess
import sys
from pathlib import Path

from picollm.errors import PicoError
from picollm.io import disk_full, no_space


def run(args):
    # --nolock: the inner run only reads, alongside the run that started this job
    command = [sys.executable, "-m", "snakemake", "-s", args.snakefile, "--directory", ".", "--nolock",
               "--workflow-profile", "none", "--report", args.out, "--configfile", args.configfile,
               *(["--report-stylesheet", args.stylesheet] if args.stylesheet else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout + result.stderr, end="")
    if result.returncode == 0:
        return
    said = result.stdout + result.stderr
    if "No space left on device" in said or "Disk quota exceeded" in said or disk_full(Path(args.out).parent):
        raise no_space(args.out)
    last = next((line.strip() for line in reversed(said.splitlines()) if line.strip()), "no output")
    raise PicoError(f"snakemake --report failed ({last}); its whole output is in the log")
