"""The one exception type for bad input: the CLI prints its message as a single line and exits 1."""


class PicoError(Exception):
    """A problem with the user's input (config, data, checkpoint, arguments) and how to fix it."""
