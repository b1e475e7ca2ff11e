import signal
import sys

from picollm.cli import main
from picollm.errors import STOP_SIGNALS

code = main()
# The stage has ended and said how: a signal while the interpreter shuts down (its atexit callbacks: torch's,
# tempfile's) changes nothing, and would only print a KeyboardInterrupt traceback under the job's own line.
for s in STOP_SIGNALS:
    signal.signal(s, signal.SIG_IGN)
sys.exit(code)
