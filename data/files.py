"""Files that are written whole or not at all."""
from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside path, fsync, then rename it over path:
    a reader (or a crash) sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # no other process writes this name
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
