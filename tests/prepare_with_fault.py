"""Run data/prepare.py with a fault injected: at one chosen moment the process sends
itself a signal, in the middle of writing a file where the moment is a file.

    python tests/prepare_with_fault.py MOMENT SIGNAL [prepare flags ...]

MOMENT: scanned (the inputs were read), train.bin or val.bin (half of a block written),
tokenizer.tiktoken or meta.json (half of the file written to its temporary name),
exchanged (the new folder swapped in, the old one not yet removed).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data.build  # noqa: E402
import data.files  # noqa: E402
from config.errors import run_cli, stop_on_sigterm  # noqa: E402


def inject(moment: str, signum: int) -> None:
    def fault():
        print(f"fault injected: {moment}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signum)

    scan, append, exchange = data.build.scan_corpus, data.build.TokenFile.append, data.files._exchange

    def scan_then_fault(*args, **kwargs):
        result = scan(*args, **kwargs)
        if moment == "scanned":
            fault()
        return result

    def append_half(self, piece):
        if self.path.name == moment and self.tokens > 0:  # the file has whole blocks, then half of one
            payload = piece.ids.astype(self.dtype).tobytes()
            self.file.write(payload[: len(payload) // 2])
            self.file.flush()
            fault()
        append(self, piece)

    def write_half(path, payload):
        if path.name == moment:
            path.with_name(f".{path.name}.{os.getpid()}.tmp").write_bytes(payload[: len(payload) // 2])
            fault()
        path.write_bytes(payload)

    def exchange_then_fault(a, b):
        done = exchange(a, b)
        if moment == "exchanged":
            fault()
        return done

    data.build.scan_corpus = scan_then_fault
    data.build.TokenFile.append = append_half
    data.build.write_atomically = write_half
    data.files._exchange = exchange_then_fault


if __name__ == "__main__":
    inject(sys.argv[1], getattr(signal, sys.argv[2]))
    from data.prepare import main

    stop_on_sigterm()
    run_cli(main, sys.argv[3:])
