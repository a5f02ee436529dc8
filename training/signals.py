"""Ctrl-C and SIGTERM during training: finish the step, save, stop."""

import os
import signal
import sys


class StopSignals:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the next step it checks;
    a second one exits at once (checkpoint writes are atomic, so that is safe).
    A context manager: the earlier handlers come back when the loop is left."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "StopSignals":
        self.received: int | None = None
        self._earlier = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._earlier.items():
            # None: the earlier handler was not set from Python, and cannot be put back from it
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            os._exit(128 + signum)
        self.received = signum
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
              f"(press Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
