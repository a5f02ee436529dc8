"""Imported first by every command: until run_cli takes over, a Ctrl-C while the command loads its libraries
(torch's import takes seconds) ends it at once with run_cli's one line, not an import's traceback; nothing is
written before run_cli. Imported by anything else (a test, a script of the user's), or where Ctrl-C is ignored
(a background job), it does nothing."""
import os
import signal
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
COMMANDS = ("train.py", "sample.py", "eval.py", "attention.py", "export.py", "params.py", "bench.py", "compare.py",
            "data/prepare.py")


def interrupted(signum, frame) -> None:
    print("\ninterrupted", file=sys.stderr, flush=True)
    os._exit(130)


a_command = Path(sys.argv[0]).resolve() in {REPOSITORY / name for name in COMMANDS}
if a_command and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, interrupted)
