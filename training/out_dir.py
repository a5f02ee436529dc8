"""The run's output folder: checkpoints, log.jsonl and pictures."""
from __future__ import annotations

from pathlib import Path

from cli.errors import UserError


def open_out_dir(out_dir: str) -> Path:
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"out_dir {folder} is not writable ({e.strerror}); choose another --out_dir") from None
    return folder
