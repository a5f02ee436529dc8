"""Writing checkpoints, crash-safe, and putting a run back where one left off.

A checkpoint is a plain dict of tensors, numbers and strings (it loads with
weights_only=True; cli/loading.py reads it): the model's weights without any
compile or DDP prefix, the optimizer, the config, the model's shape, the
tokenizer, the identity of the data it was trained on, and what an exact
resume needs. checkpoint_format=safetensors writes the same dict as a
safetensors file instead (cli/safetensors_checkpoint.py).
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch

from config.errors import UserError
from cli.loading import CHECKPOINT_SUFFIXES, MODEL_KEYS
from cli.safetensors_checkpoint import to_safetensors
from config.settings import TrainConfig
from data.files import write_atomically
from data.loader import BatchLoader
from model import GPT

from .optimizer import Optimizers


@dataclasses.dataclass
class Progress:
    """Where a run stands, carried across resumes."""

    step: int = 0  # optimizer steps done
    best_val_loss: float = math.inf
    tokens: int = 0  # training tokens seen
    elapsed_s: float = 0.0  # seconds spent training, evaluation included, over every resume

    def __post_init__(self) -> None:
        self._ticked = time.perf_counter()

    def tick(self) -> None:
        """Add the wall time since the last tick (or since this run began) to elapsed_s."""
        now = time.perf_counter()
        self.elapsed_s, self._ticked = self.elapsed_s + now - self._ticked, now


RESUME_KEYS = MODEL_KEYS + ("optimizer", "scaler", "config", "iter_num", "best_val_loss", "tokens_seen", "elapsed_s",
                            "rng", "loader", "dataset")


def checkpoint_path(out_dir: Path, stem: str, checkpoint_format: str) -> Path:
    """out_dir/ckpt.pt (the latest) or best.pt; ckpt.safetensors or best.safetensors for that format."""
    return out_dir / f"{stem}.{checkpoint_format}"


def save_checkpoint(state: dict, path: Path) -> None:
    """Write path whole or not at all (data/files.py): a crash at any moment leaves the old
    file or the new one. A .safetensors path gets a safetensors file, any other torch.save's.
    Once it is written, the same checkpoint in the other format (a run resumed with another
    checkpoint_format) is removed: out_dir never holds two that disagree."""
    try:
        write_atomically(path, to_safetensors(state) if path.suffix == ".safetensors"
                         else lambda f: torch.save(state, f))
        for other in CHECKPOINT_SUFFIXES:
            if other != path.suffix:
                path.with_suffix(other).unlink(missing_ok=True)
    except (OSError, RuntimeError) as e:  # torch.save reports some write failures as RuntimeError
        reason = e.strerror if isinstance(e, OSError) else "the file could not be written in full"
        raise UserError(f"could not write checkpoint {path} ({reason}); free disk space or change out_dir") from None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_payload(model: GPT, optimizers: Optimizers, scaler: torch.amp.GradScaler, cfg: TrainConfig,
                       data_identity: dict, progress: Progress, loader: BatchLoader) -> dict:
    """Everything a checkpoint holds: plain tensors, numbers and strings only.
    data_identity is the dataset's (data.dataset.dataset_identity): resume checks it."""
    return {
        "model": model.state_dict(),  # the plain module: no compile or DDP prefixes
        "optimizer": optimizers.state_dict(),  # {"adamw": ..., "muon": ...}
        "scaler": scaler.state_dict(),  # float16's loss scale (empty otherwise)
        "config": dataclasses.asdict(cfg),
        "model_args": model.config.to_dict(),
        "tokenizer": data_identity["tokenizer"],
        "dataset": {"folder": cfg.dataset, **data_identity},
        "iter_num": progress.step,
        "best_val_loss": progress.best_val_loss,
        "tokens_seen": progress.tokens,
        "elapsed_s": progress.elapsed_s,
        "rng": rng_state(),
        "loader": loader.state_dict(),
    }


def restore_training_state(checkpoint: dict, optimizers: Optimizers, scaler: torch.amp.GradScaler,
                           loader: BatchLoader, rank: int, seed: int, new_data: bool = False) -> Progress:
    """Put the optimizers, data position and random generators back where the checkpoint left them.

    The checkpoint holds the main process's random state; other ranks reseed
    from the step, so a resume on a different world size still works. On new
    data (allow_new_data) the walk starts afresh and the best val loss, measured
    on other data, is forgotten.
    """
    optimizers.load_state_dict(checkpoint["optimizer"])
    scaler.load_state_dict(checkpoint["scaler"])
    if not new_data:
        loader.load_state_dict(checkpoint["loader"])
    if rank == 0:
        set_rng_state(checkpoint["rng"])
    else:
        torch.manual_seed(seed + 1_000_003 * rank + checkpoint["iter_num"])
    best_val_loss = math.inf if new_data else checkpoint["best_val_loss"]
    return Progress(checkpoint["iter_num"], best_val_loss, checkpoint["tokens_seen"], checkpoint["elapsed_s"])
