"""Run export.py with a Ctrl-C (SIGINT) sent the moment its folder has been swapped in, as a user's
Ctrl-C could land: the export is complete by then and must say so, exit status 0."""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import export  # noqa: E402
from config.errors import run_cli  # noqa: E402

swap_in = export.swap_in


def swap_then_interrupt(staging: Path, target: Path) -> None:
    swap_in(staging, target)
    print("sending SIGINT", file=sys.stderr, flush=True)  # for the test to see that it came
    os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    export.swap_in = swap_then_interrupt
    run_cli(export.main, sys.argv[1:])
