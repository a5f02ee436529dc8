"""Files that are written whole or not at all."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, payload: bytes | Callable[[BinaryIO], object]) -> None:
    """Write to a temporary file beside path, fsync, then rename it over path and fsync the folder:
    a reader (or a crash) sees the old file or the new one, never a part. `payload` is the bytes,
    or a function that writes them to the open file (torch.save streams a checkpoint that way)."""
    path.parent.mkdir(parents=True, exist_ok=True)  # an output's new folder (config/outputs.py checked it)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # no other process writes this name
    try:
        with open(tmp, "wb") as f:
            if callable(payload):
                payload(f)
            else:
                f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)  # make the rename itself durable
    finally:
        tmp.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (new names, renames) to disk; its files are flushed as they are written."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
