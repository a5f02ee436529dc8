"""What a checkpoint holds to put a run back where it left off, and putting it back.

A checkpoint is a plain dict of tensors, numbers and strings (it loads with
weights_only=True): the model's weights without any compile or DDP prefix, the
optimizer, the config, the model's shape, the tokenizer, the identity of the data
it was trained on, and what an exact resume needs. training/checkpoint.py writes
and reads it, as a torch.save file or a safetensors one.
"""
from __future__ import annotations

import dataclasses
import math
import time

import torch

from config.settings import TrainConfig
from data.loader import BatchLoader
from model import GPT

from .checkpoint import MODEL_KEYS
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
                       data_identity: dict, progress: Progress, loader: BatchLoader, plan: dict | None = None) -> dict:
    """Everything a checkpoint holds: plain tensors, numbers and strings only.
    data_identity is the dataset's (data.dataset.dataset_identity): resume checks it; plan, a time
    budget's (training/budget.py), is what a resume follows instead of planning again."""
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
        **({"plan": plan} if plan is not None else {}),
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
