"""The one exception type for bad input (the CLI prints its message as a single line and exits 1), and the
one for a stage stopped by a signal."""
import signal
import sys
from contextlib import contextmanager


class PicoError(Exception):
    """A problem with the user's input (config, data, checkpoint, arguments) and how to fix it."""


@contextmanager
def one_line(prefix: str = "error"):
    """A PicoError raised inside ends the workflow's parse (workflow/rules/common.smk) with its one line,
    `<prefix>: <message>`, and exit status 1."""
    try:
        yield
    except PicoError as exc:
        sys.exit(f"{prefix}: {exc}")


# Ctrl-C; Snakemake stopping a job, or SLURM's time limit; the terminal closed (an ssh connection dropped)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def first_line(exc: BaseException, empty: str | None = None) -> str:
    """The first non-blank line of an exception's message, for a one-line error; `empty` (default: the
    exception's type name) when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__ if empty is None else empty


class Interrupted(BaseException):
    """One of STOP_SIGNALS reached a stage: it stops (training after a checkpoint) and a rerun continues.

    A BaseException, as KeyboardInterrupt is, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
