"""Ctrl-C and SIGTERM during training: finish the step, save, stop."""
from __future__ import annotations

import os
import signal
import sys


class StopSignals:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the next step it checks;
    a second one exits at once (checkpoint writes are atomic, so that is safe)."""

    def __init__(self) -> None:
        self.received: int | None = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            os._exit(128 + signum)
        self.received = signum
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
              f"(press Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
