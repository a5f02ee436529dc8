"""Train a GPT on a prepared dataset.

    python train.py [CONFIG.toml ...] [--key=value ...]

config -> data -> model -> optimizer -> loop (evaluate, checkpoint) -> sample.
`python train.py --help` lists every key.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import help_text, parse_config, wants_help
from core.device import autocast, pick_device
from core.errors import UserError, run_cli
from core.schedule import learning_rate_at
from core.settings import TrainConfig
from data.corpora import ensure_dataset
from data.loader import BatchLoader, Dataset, open_dataset
from data.tokenizer import start_tokens, tokenizer_from_description
from model import GPT, GPTConfig
from model.pretrained import PretrainedNotFound

SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size")


def model_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
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
        if new != old and key not in ("init_from",):
            print(f"resume: {key} changed from {old!r} to {new!r}")


def build_model(cfg: TrainConfig, dataset: Dataset, checkpoint: dict | None) -> GPT:
    """A fresh model, the checkpoint's, or GPT-2's weights, per init_from."""
    wanted = model_config(cfg, dataset.meta["vocab_size"])
    if checkpoint is not None:
        check_resume_compatible(checkpoint, wanted, cfg)
        model = GPT(GPTConfig(**checkpoint["model_args"]))
        model.load_state_dict(checkpoint["model"])
        return model
    if cfg.init_from == "scratch":
        return GPT(wanted)
    try:
        model = GPT.from_pretrained(cfg.init_from)
    except PretrainedNotFound as e:
        raise UserError(str(e)) from None
    if model.config.vocab_size != dataset.meta["vocab_size"]:
        raise UserError(f"init_from={cfg.init_from} needs a GPT-2 BPE dataset (vocab 50257); prepare one with --tokenizer gpt2")
    try:
        model.crop_block_size(cfg.block_size)
    except ValueError as e:
        raise UserError(str(e)) from None
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
def evaluate(model: torch.nn.Module, loaders: dict[str, BatchLoader], cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Mean loss over the same eval_iters batches of each split every time."""
    model.eval()
    losses = {}
    for split, loader in loaders.items():
        loader.load_state_dict({"epoch": 0, "cursor": 0})
        total = 0.0
        for _ in range(cfg.eval_iters):
            x, y = loader.next_batch()
            with autocast(device, cfg.dtype):
                _, loss = model(x.to(device), y.to(device))
            total += loss.item()
        losses[split] = total / cfg.eval_iters
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


def print_sample(model: GPT, dataset: Dataset, cfg: TrainConfig, device: torch.device) -> None:
    tokenizer = tokenizer_from_description(dataset.meta["tokenizer"])
    idx = torch.tensor([start_tokens(tokenizer)], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    model.eval()
    out = model.generate(idx, cfg.sample_tokens, temperature=0.8, top_k=200, generator=generator)
    print("--- sample ---\n" + tokenizer.decode(out[0, idx.size(1) :].tolist()) + "\n--------------")


def main(argv: list[str]) -> None:
    if wants_help(argv):
        print(help_text(TrainConfig, "usage: python train.py [CONFIG.toml ...] [--key=value ...]"))
        return
    cfg = parse_config(TrainConfig, argv)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out_dir = open_out_dir(cfg)
    dataset = open_dataset(ensure_dataset(cfg.dataset))
    checkpoint = load_checkpoint(out_dir / "ckpt.pt") if cfg.init_from == "resume" else None

    model = build_model(cfg, dataset, checkpoint).to(device)
    optimizer = build_optimizer(model, cfg, device)
    train_loader = BatchLoader(dataset.train, cfg.block_size, cfg.batch_size, cfg.seed, split="train")
    eval_loaders = {
        split: BatchLoader(tokens, cfg.block_size, cfg.batch_size, cfg.seed + 1, split=split)
        for split, tokens in (("train", dataset.train), ("val", dataset.val))
    }
    step, best_val_loss = 0, math.inf
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        train_loader.load_state_dict(checkpoint["loader"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        step, best_val_loss = checkpoint["iter_num"], checkpoint["best_val_loss"]
        print(f"resuming from {out_dir / 'ckpt.pt'} at step {step}")

    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    print(f"model: {model.num_params():,} parameters ({cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} wide); "
          f"device {device}, {cfg.dtype}; {tokens_per_step:,} tokens per step")
    train_model = torch.compile(model) if cfg.compile else model

    def write_checkpoint(name: str) -> None:
        save_checkpoint({
            "model": model.state_dict(),  # the plain module: no compile or DDP prefixes
            "optimizer": optimizer.state_dict(),
            "config": dataclasses.asdict(cfg),
            "model_args": model.config.to_dict(),
            "tokenizer": dataset.meta["tokenizer"],
            "iter_num": step,
            "best_val_loss": best_val_loss,
            "rng": {"torch": torch.get_rng_state()},
            "loader": train_loader.state_dict(),
        }, out_dir / name)

    progress = tqdm(total=cfg.max_iters, initial=step, unit="step", dynamic_ncols=True)
    last_log, logged_step = time.perf_counter(), step
    while step < cfg.max_iters:
        lr = learning_rate_at(step, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters) if cfg.decay_lr else cfg.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        for _ in range(cfg.gradient_accumulation_steps):
            x, y = train_loader.next_batch()
            with autocast(device, cfg.dtype):
                _, loss = train_model(x.to(device), y.to(device))
            (loss / cfg.gradient_accumulation_steps).backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        if step % cfg.log_interval == 0 or step == cfg.max_iters:
            now = time.perf_counter()
            tok_per_s = (step - logged_step) * tokens_per_step / (now - last_log)
            last_log, logged_step = now, step
            progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s:,.0f}", refresh=False)
            progress.update(step - progress.n)
        if step % cfg.eval_interval == 0 or step == cfg.max_iters:
            losses = evaluate(train_model, eval_loaders, cfg, device)
            progress.write(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            improved = losses["val"] < best_val_loss
            if improved:
                best_val_loss = losses["val"]
                write_checkpoint("best.pt")
            if improved or cfg.always_save_checkpoint:
                write_checkpoint("ckpt.pt")
            last_log = time.perf_counter()  # evaluation time is not training throughput
    progress.close()
    print(f"best val loss {best_val_loss:.4f}; checkpoints in {out_dir}")
    if cfg.sample_tokens:
        print_sample(model, dataset, cfg, device)


if __name__ == "__main__":
    run_cli(main)
