"""User-facing errors: one line that says what is wrong and what to do. model/ and data/ raise their own
exception types (ModelError, DataError) with the fix in the message; run_cli shows those as one line too."""

import codecs
import errno
import os
import re
import signal
import sys
from collections.abc import Callable

from data.errors import DataError
from model.config import ModelError  # model/__init__ loads torch only when GPT is asked for

from .interrupt import interrupted


class UserError(Exception):
    """A problem with the user's input; shown as one line, never a traceback."""


USER_ERRORS = (UserError, ModelError, DataError)  # what run_cli shows as one line
_stopped_by = signal.SIGINT  # the signal behind a KeyboardInterrupt: Ctrl-C's, unless stop_on_sigterm's


def _terminated(signum: int, frame) -> None:
    global _stopped_by
    _stopped_by = signum
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM stops the command as Ctrl-C does, so that it cleans up what it was writing; it then exits with
    interrupted_status(), 143 as a terminated process does, not Ctrl-C's 130."""
    signal.signal(signal.SIGTERM, _terminated)


def interrupted_status() -> int:
    return 128 + _stopped_by


def out_of_memory(error: BaseException) -> str | None:
    """"out of memory", with the size that failed where `error` says it, if `error` is a failed allocation (found
    without importing torch: a GPU's OutOfMemoryError, the CPU's or Apple's RuntimeError, a MemoryError); else None."""
    message = str(error)
    if not (type(error).__name__ == "OutOfMemoryError" or isinstance(error, MemoryError)
            or "can't allocate memory" in message or "out of memory" in message):
        return None
    if size := re.search(r"allocate (\d+) bytes", message):  # the CPU allocator's
        n = int(size[1])
        return f"out of memory (an allocation of {n / 1e9:,.1f} GB failed)" if n >= 1e9 else \
            f"out of memory (an allocation of {n / 1e6:,.0f} MB failed)"
    size = re.search(r"allocate ([\d.]+ ?[KMGT]i?B)", message)  # a GPU's, Apple's
    return f"out of memory (an allocation of {size[1]} failed)" if size else "out of memory"


def run_cli(main: Callable[[list[str]], None], argv: list[str] | None = None,
            smaller: str = "smaller settings") -> None:
    """Run a command-line entry point; a UserError (or the libraries' ModelError and
    DataError) exits with status 2 and its message, a closed output pipe with 141.
    smaller: the settings that would need less memory, named when an allocation fails."""
    if signal.getsignal(signal.SIGINT) is interrupted:  # the command's own handling from here
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # text the output's encoding cannot hold (a file written in cp1252, the C locale's ASCII) is escaped, as stderr
    # does it; UTF-8 with surrogateescape holds it all, and writes a path's undecodable bytes back as they came
    errors, encoding = getattr(sys.stdout, "errors", ""), getattr(sys.stdout, "encoding", "")
    if argv is None and (errors == "strict" or errors == "surrogateescape" and codecs.lookup(encoding).name != "utf-8"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        main(sys.argv[1:] if argv is None else argv)
        if argv is None and sys.stdout is not None:  # here, not at exit: a full disk or a gone reader meets the last
            sys.stdout.flush()  # buffered output too (None: started with stdout closed, where print writes nothing)
        return
    except USER_ERRORS as e:
        error = str(e)
    except PermissionError as e:  # a path this user may not reach, wherever a command first met it
        error = (f"{e.filename or 'a path'} cannot be reached ({e.strerror.lower()}); choose a path this user may "
                 f"read and write, or change its permissions")
    except (MemoryError, RuntimeError) as e:
        if (failed := out_of_memory(e)) is None:  # not about memory: a fault to be seen whole
            raise
        error = f"{failed}; run again with {smaller}"
    except KeyboardInterrupt:  # Ctrl-C outside the training loop, which handles its own
        print("\ninterrupted", file=sys.stderr)  # on a line of its own, after any text left unfinished
        sys.exit(interrupted_status())
    except OSError as e:
        if e.errno == errno.ENOSPC or isinstance(e, BrokenPipeError):  # the output's disk may be full
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail again
            if isinstance(e, BrokenPipeError):  # the reader left (`sample.py | head`): stop quietly, as Unix tools do
                sys.exit(128 + signal.SIGPIPE)
            error = f"no space left on the device holding {e.filename or 'the output'}; free some and run again"
        elif e.filename is not None:  # a path given that the OS refuses: a name too long, a loop of links, ...
            error = f"{e.filename} cannot be used ({e.strerror.lower()}); give another path"
        else:  # not about a path: a fault to be seen whole
            raise
    finally:
        if argv is None:  # the process's command is over, however it ended: the interpreter's teardown (torch's
            # takes a moment) is not to be cut short by a late Ctrl-C into a traceback or a failed exit status
            for stop in (signal.SIGINT, signal.SIGTERM):
                signal.signal(stop, signal.SIG_IGN)
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
