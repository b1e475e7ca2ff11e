"""The one exception type for bad input (the CLI prints its message as a single line and exits 1), and the
one for a stage stopped by a signal."""
import signal


class PicoError(Exception):
    """A problem with the user's input (config, data, checkpoint, arguments) and how to fix it."""


# Ctrl-C; Snakemake stopping a job, or SLURM's time limit; the terminal closed (an ssh connection dropped)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """One of STOP_SIGNALS reached a stage: it stops (training after a checkpoint) and a rerun continues.

    A BaseException, as KeyboardInterrupt is, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
