"""Crash-safe checkpoint files that load without unpickling code."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from .errors import UserError


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over
    path: a crash at any moment leaves the old file or the new one, whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not write checkpoint {path}: {e.strerror}; free disk space or change out_dir") from None


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True: pickled code is refused, never run."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; train one with python train.py --out_dir={path.parent}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"checkpoint {path} holds pickled objects or code and was not loaded; use a checkpoint written by train.py") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise UserError(f"checkpoint {path} is damaged or truncated ({str(e).splitlines()[0][:120]}); use another one") from None
