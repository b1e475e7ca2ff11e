"""The one exception type for bad input (the CLI prints its message as a single line and exits 1), and the
one for a stage stopped by a signal."""


class PicoError(Exception):
    """A problem with the user's input (config, data, checkpoint, arguments) and how to fix it."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached a stage: it stops (training after a checkpoint) and a rerun continues.

    A BaseException, as KeyboardInterrupt is, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
