"""Train a GPT on a prepared dataset.

    python train.py [CONFIG.toml ...] [--key=value ...]

config -> data -> model -> optimizer -> loop (step, log, evaluate, checkpoint) -> sample.
`python train.py --help` lists every key.
"""
from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from core.checkpoint import RESUME_KEYS, load_checkpoint, save_checkpoint
from core.config import help_text, parse_config, wants_help
from core.device import autocast, pick_device
from core.errors import UserError, run_cli
from core.metrics_log import MetricsLog
from core.plots import plot_loss
from core.schedule import learning_rate_at
from core.settings import TrainConfig
from core.training import (Progress, StopSignals, build_model, build_optimizer, checkpoint_payload, evaluate,
                           open_out_dir, restore_training_state)
from data.corpora import ensure_dataset
from data.loader import BatchLoader, Dataset, open_dataset
from data.tokenizer import start_tokens, tokenizer_from_description
from model import GPT


@dataclass
class Run:
    """Everything the training loop works with."""

    cfg: TrainConfig
    argv: list[str]
    device: torch.device
    out_dir: Path
    dataset: Dataset
    model: GPT  # the plain module: its state_dict is what checkpoints hold
    train_model: torch.nn.Module  # what the loop calls: the model, or its compiled form
    optimizer: torch.optim.Optimizer
    train_loader: BatchLoader
    eval_loaders: dict[str, BatchLoader]
    progress: Progress
    log: MetricsLog  # out_dir/log.jsonl

    def save(self, name: str) -> None:
        payload = checkpoint_payload(self.model, self.optimizer, self.cfg, self.dataset, self.progress, self.train_loader)
        save_checkpoint(payload, self.out_dir / name)

    def resume_command(self) -> str:
        kept = [a for a in self.argv if not a.startswith("--init_from=")]
        return shlex.join(["python", "train.py", *kept, "--init_from=resume"])


def set_up(cfg: TrainConfig, argv: list[str]) -> Run:
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out_dir = open_out_dir(cfg)
    dataset = open_dataset(ensure_dataset(cfg.dataset))
    checkpoint = load_checkpoint(out_dir / "ckpt.pt", required=RESUME_KEYS) if cfg.init_from == "resume" else None
    model = build_model(cfg, dataset, checkpoint).to(device)
    optimizer = build_optimizer(model, cfg, device)
    train_loader = BatchLoader(dataset.train, cfg.block_size, cfg.batch_size, cfg.seed, split="train")
    eval_loaders = {  # a seed of their own: the same batches at every evaluation
        split: BatchLoader(tokens, cfg.block_size, cfg.batch_size, cfg.seed + 1, split=split)
        for split, tokens in (("train", dataset.train), ("val", dataset.val))
    }
    progress = Progress()
    if checkpoint is not None:
        progress = restore_training_state(checkpoint, optimizer, train_loader)
        print(f"resuming from {out_dir / 'ckpt.pt'} at step {progress.step}")
    train_model = torch.compile(model) if cfg.compile else model
    log = MetricsLog(out_dir / "log.jsonl", resume_step=progress.step if checkpoint is not None else None)
    return Run(cfg, argv, device, out_dir, dataset, model, train_model, optimizer, train_loader, eval_loaders,
               progress, log)


def train_step(run: Run, lr: float) -> torch.Tensor:
    """One optimizer step over gradient_accumulation_steps micro-batches; returns the last loss."""
    cfg = run.cfg
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    for _ in range(cfg.gradient_accumulation_steps):
        x, y = run.train_loader.next_batch()
        with autocast(run.device, cfg.dtype):
            _, loss = run.train_model(x.to(run.device), y.to(run.device))
        (loss / cfg.gradient_accumulation_steps).backward()
    if not torch.isfinite(loss):  # stop before a broken step reaches the weights or a checkpoint
        raise UserError(f"loss is {loss.item()} at step {run.progress.step + 1}; training stopped. The last good "
                        f"checkpoint, {run.out_dir / 'ckpt.pt'}, is intact: lower learning_rate and resume with "
                        f"{run.resume_command()}")
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.progress.step += 1
    run.progress.tokens += x.numel() * cfg.gradient_accumulation_steps
    return loss


def log_row(run: Run, kind: str, lr: float, **losses: float) -> None:
    p = run.progress
    run.log.append({"kind": kind, "step": p.step, "tokens": p.tokens, "elapsed_s": round(p.elapsed_s, 3), "lr": lr,
                    **losses})


def evaluate_and_save(run: Run, bar: tqdm, lr: float) -> None:
    losses = evaluate(run.train_model, run.eval_loaders, run.cfg, run.device)
    bar.write(f"step {run.progress.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    log_row(run, "eval", lr, train_loss=losses["train"], val_loss=losses["val"])
    plot_loss(run.log.rows, run.out_dir / "loss.png")
    improved = losses["val"] < run.progress.best_val_loss
    if improved:
        run.progress.best_val_loss = losses["val"]
        run.save("best.pt")
    if improved or run.cfg.always_save_checkpoint:
        run.save("ckpt.pt")


def train(run: Run, bar: tqdm) -> None:
    cfg, progress = run.cfg, run.progress
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    stop = StopSignals()
    clock = last_log = time.perf_counter()
    logged_step = progress.step
    while progress.step < cfg.max_iters:
        lr = learning_rate_at(progress.step, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters) \
            if cfg.decay_lr else cfg.learning_rate
        loss = train_step(run, lr)
        now = time.perf_counter()
        progress.elapsed_s, clock = progress.elapsed_s + now - clock, now
        finished = progress.step == cfg.max_iters
        if progress.step % cfg.log_interval == 0 or finished:
            tok_per_s = (progress.step - logged_step) * tokens_per_step / (now - last_log)
            last_log, logged_step = now, progress.step
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s:,.0f}", refresh=False)
            bar.update(progress.step - bar.n)
            log_row(run, "batch", lr, train_loss=loss.item())
        if progress.step % cfg.eval_interval == 0 or finished:
            evaluate_and_save(run, bar, lr)
            now = time.perf_counter()
            progress.elapsed_s, clock = progress.elapsed_s + now - clock, now
            last_log = now  # evaluation time is not training throughput
        if stop.received is not None:
            run.save("ckpt.pt")
            bar.close()
            print(f"stopped at step {progress.step}; checkpoint saved to {run.out_dir / 'ckpt.pt'}. Resume with:\n"
                  f"  {run.resume_command()}", file=sys.stderr)
            sys.exit(128 + stop.received)


def print_sample(run: Run) -> None:
    tokenizer = tokenizer_from_description(run.dataset.meta["tokenizer"])
    idx = torch.tensor([start_tokens(tokenizer)], dtype=torch.long, device=run.device)
    generator = torch.Generator(device=run.device).manual_seed(run.cfg.seed)
    run.model.eval()
    out = run.model.generate(idx, run.cfg.sample_tokens, temperature=0.8, top_k=200, generator=generator)
    print("--- sample ---\n" + tokenizer.decode(out[0, idx.size(1) :].tolist()) + "\n--------------")


def main(argv: list[str]) -> None:
    if wants_help(argv):
        print(help_text(TrainConfig, "usage: python train.py [CONFIG.toml ...] [--key=value ...]"))
        return
    cfg = parse_config(TrainConfig, argv)
    run = set_up(cfg, argv)
    c = run.model.config
    print(f"model: {run.model.num_params():,} parameters ({c.n_layer} layers, {c.n_head} heads, {c.n_embd} wide, "
          f"context {c.block_size}); device {run.device}, {cfg.dtype}; "
          f"{cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps:,} tokens per step", flush=True)
    with tqdm(total=cfg.max_iters, initial=run.progress.step, unit="step", dynamic_ncols=True) as bar:
        train(run, bar)
    print(f"best val loss {run.progress.best_val_loss:.4f}; checkpoints in {run.out_dir}")
    if cfg.sample_tokens:
        print_sample(run)


if __name__ == "__main__":
    run_cli(main)
