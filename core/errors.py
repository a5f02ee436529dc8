"""User-facing errors: one line that says what is wrong and what to do."""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input; shown as one line, never a traceback."""


def run_cli(main: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    """Run a command-line entry point; a UserError exits with status 2 and its message,
    a closed output pipe with 141 and no message."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop, which handles its own
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader left (`python sample.py | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail again
        sys.exit(128 + signal.SIGPIPE)
