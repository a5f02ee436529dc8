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
    except (OSError, RuntimeError) as e:  # torch.save reports some write failures as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) else "the file could not be written in full"
        raise UserError(f"could not write checkpoint {path} ({reason}); free disk space or change out_dir") from None


MODEL_KEYS = ("model", "model_args", "tokenizer")  # enough to sample
RESUME_KEYS = MODEL_KEYS + ("optimizer", "scaler", "config", "iter_num", "best_val_loss", "tokens_seen", "elapsed_s", "rng", "loader")


def load_checkpoint(path: Path, device: str | torch.device = "cpu", required: tuple[str, ...] = MODEL_KEYS) -> dict:
    """Load a checkpoint with weights_only=True: pickled code is refused, never run."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; train one with python train.py --out_dir={path.parent}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"checkpoint {path} holds pickled objects or code and was not loaded; use a checkpoint written by train.py") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise UserError(f"checkpoint {path} is damaged or truncated ({str(e).splitlines()[0][:120]}); use another one") from None
    missing = [key for key in required if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise UserError(f"{path} is not a checkpoint of this project (no {', '.join(missing)}); use one written by train.py")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, path: Path):
    """Rebuild the GPT a checkpoint describes and load its weights."""
    from model import GPT, GPTConfig

    try:
        model = GPT(GPTConfig(**checkpoint["model_args"]))
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, ValueError) as e:
        detail = str(e).strip().splitlines()[0][:150]
        raise UserError(f"checkpoint {path} does not match the model it describes ({detail}); use another one") from None
    return model
