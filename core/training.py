"""The pieces of a training run that are not the loop itself: building the
model and optimizer, evaluating, and saving or restoring everything that an
exact resume needs."""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
from pathlib import Path

import torch

from data.loader import BatchLoader, Dataset
from model import GPT, GPTConfig
from model.pretrained import PretrainedNotFound

from .checkpoint import model_from_checkpoint
from .device import autocast
from .errors import UserError
from .settings import TrainConfig

SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size")


def model_config(cfg: TrainConfig, dataset_vocab_size: int) -> GPTConfig:
    """The model shape the config asks for, with the dataset's vocabulary unless vocab_size pads it."""
    vocab_size = cfg.vocab_size or dataset_vocab_size
    if vocab_size < dataset_vocab_size:
        raise UserError(f"vocab_size={vocab_size} is smaller than the dataset's vocabulary of {dataset_vocab_size}; "
                        f"leave it unset or make it larger")
    try:
        return GPTConfig(cfg.block_size, vocab_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.dropout, cfg.bias)
    except ValueError as e:
        raise UserError(str(e)) from None


def check_resume_compatible(checkpoint: dict, wanted: GPTConfig, cfg: TrainConfig) -> None:
    """Refuse a resume that would change the model's shape; report harmless changes."""
    saved = checkpoint["model_args"]
    for key in SHAPE_KEYS:
        if saved[key] != getattr(wanted, key):
            raise UserError(
                f"cannot resume: {key}={getattr(wanted, key)} but the checkpoint was trained with "
                f"{key}={saved[key]}; use the same setting or a new out_dir"
            )
    for key, old in checkpoint["config"].items():
        new = getattr(cfg, key, old)
        if new != old and key != "init_from":
            print(f"resume: {key} changed from {old!r} to {new!r}")


def build_model(cfg: TrainConfig, dataset: Dataset, checkpoint: dict | None) -> GPT:
    """A fresh model, the checkpoint's (to resume), or GPT-2's weights, per init_from."""
    wanted = model_config(cfg, dataset.meta["vocab_size"])
    if checkpoint is not None:
        check_resume_compatible(checkpoint, wanted, cfg)
        return model_from_checkpoint(checkpoint, Path(cfg.out_dir) / "ckpt.pt")
    if cfg.init_from == "scratch":
        return GPT(wanted)
    try:
        model = GPT.from_pretrained(cfg.init_from)
        model.crop_block_size(cfg.block_size)
    except (PretrainedNotFound, ValueError) as e:
        raise UserError(str(e)) from None
    if model.config.vocab_size != dataset.meta["vocab_size"]:
        raise UserError(f"init_from={cfg.init_from} needs a GPT-2 BPE dataset (vocab 50257); prepare one with --tokenizer gpt2")
    return model


def build_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices (embeddings, Linear weights) only."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # biases, norms
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


@torch.no_grad()
def evaluate(model: torch.nn.Module, loaders: dict[str, BatchLoader], eval_iters: int, device: torch.device,
             dtype: str) -> dict[str, float]:
    """Mean loss over the same eval_iters batches of each split every time."""
    model.eval()
    losses = {}
    for split, loader in loaders.items():
        loader.load_state_dict({"epoch": 0, "cursor": 0})
        total = 0.0
        for _ in range(eval_iters):
            x, y = loader.next_batch()
            with autocast(device, dtype):
                _, loss = model(x.to(device), y.to(device))
            total += loss.item()
        losses[split] = total / eval_iters
    model.train()
    return losses


def open_out_dir(cfg: TrainConfig) -> Path:
    out_dir = Path(cfg.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"out_dir {out_dir} is not writable ({e.strerror}); choose another --out_dir") from None
    return out_dir


@dataclasses.dataclass
class Progress:
    """Where the run stands; carried across resumes."""

    step: int = 0  # optimizer steps done
    best_val_loss: float = math.inf
    tokens: int = 0  # training tokens seen
    elapsed_s: float = 0.0  # seconds spent training, evaluation included


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_payload(model: GPT, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, cfg: TrainConfig,
                       dataset: Dataset, progress: Progress, loader: BatchLoader) -> dict:
    """Everything a checkpoint holds: plain tensors, numbers and strings only."""
    return {
        "model": model.state_dict(),  # the plain module: no compile or DDP prefixes
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),  # float16's loss scale (empty otherwise)
        "config": dataclasses.asdict(cfg),
        "model_args": model.config.to_dict(),
        "tokenizer": dataset.meta["tokenizer"],
        "iter_num": progress.step,
        "best_val_loss": progress.best_val_loss,
        "tokens_seen": progress.tokens,
        "elapsed_s": progress.elapsed_s,
        "rng": rng_state(),
        "loader": loader.state_dict(),
    }


def restore_training_state(checkpoint: dict, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                           loader: BatchLoader, rank: int, seed: int) -> Progress:
    """Put optimizer, data position and random generators back where the checkpoint left them.

    The checkpoint holds the main process's random state; other ranks reseed
    from the step, so a resume on a different world size still works.
    """
    optimizer.load_state_dict(checkpoint["optimizer"])
    scaler.load_state_dict(checkpoint["scaler"])
    loader.load_state_dict(checkpoint["loader"])
    if rank == 0:
        set_rng_state(checkpoint["rng"])
    else:
        torch.manual_seed(seed + 1_000_003 * rank + checkpoint["iter_num"])
    return Progress(checkpoint["iter_num"], checkpoint["best_val_loss"], checkpoint["tokens_seen"], checkpoint["elapsed_s"])


class StopSignals:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step;
    a second one exits at once (checkpoint writes are atomic, so that is safe)."""

    def __init__(self) -> None:
        self.received: int | None = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            os._exit(128 + signum)
        self.received = signum
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
              f"(press Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
