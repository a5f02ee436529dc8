"""Imported first by every command: until run_cli takes over, a Ctrl-C while the command loads its libraries
(torch's import takes seconds) ends it at once with run_cli's one line, not an import's traceback; nothing is
written before run_cli. Imported by anything but a command of this repository (a test), it does nothing."""
import os
import signal
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def _interrupted(signum, frame) -> None:
    print("\ninterrupted", file=sys.stderr, flush=True)
    os._exit(130)


program = Path(sys.argv[0]).resolve()
if program.suffix == ".py" and program.parent in (REPOSITORY, REPOSITORY / "data"):  # train.py, data/prepare.py, ...
    signal.signal(signal.SIGINT, _interrupted)
