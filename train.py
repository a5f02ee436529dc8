"""Train a GPT on a prepared dataset.

    python train.py [CONFIG.toml ...] [--key=value ...]

config -> data -> model -> optimizer -> loop (evaluate, checkpoint) -> sample.
`python train.py --help` lists every key.
"""
from __future__ import annotations

import shlex
import sys
import time

import torch
from tqdm import tqdm

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import help_text, parse_config, wants_help
from core.device import autocast, pick_device
from core.errors import UserError, run_cli
from core.schedule import learning_rate_at
from core.settings import TrainConfig
from core.training import (Progress, StopSignals, build_model, build_optimizer, checkpoint_payload, evaluate,
                           open_out_dir, restore_training_state)
from data.corpora import ensure_dataset
from data.loader import BatchLoader, Dataset, open_dataset
from data.tokenizer import start_tokens, tokenizer_from_description
from model import GPT


def resume_command(argv: list[str]) -> str:
    kept = [a for a in argv if not a.startswith("--init_from=")]
    return shlex.join(["python", "train.py", *kept, "--init_from=resume"])


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
    eval_loaders = {  # a seed of their own: the same batches at every evaluation
        split: BatchLoader(tokens, cfg.block_size, cfg.batch_size, cfg.seed + 1, split=split)
        for split, tokens in (("train", dataset.train), ("val", dataset.val))
    }
    progress = Progress()
    if checkpoint is not None:
        progress = restore_training_state(checkpoint, optimizer, train_loader)
        print(f"resuming from {out_dir / 'ckpt.pt'} at step {progress.step}")

    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    print(f"model: {model.num_params():,} parameters ({model.config.n_layer} layers, {model.config.n_head} heads, "
          f"{model.config.n_embd} wide); device {device}, {cfg.dtype}; {tokens_per_step:,} tokens per step")
    train_model = torch.compile(model) if cfg.compile else model

    def save(name: str) -> None:
        save_checkpoint(checkpoint_payload(model, optimizer, cfg, dataset, progress, train_loader), out_dir / name)

    stop = StopSignals()

    bar = tqdm(total=cfg.max_iters, initial=progress.step, unit="step", dynamic_ncols=True)
    last_log, logged_step = time.perf_counter(), progress.step
    while progress.step < cfg.max_iters:
        lr = learning_rate_at(progress.step, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters) \
            if cfg.decay_lr else cfg.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        for _ in range(cfg.gradient_accumulation_steps):
            x, y = train_loader.next_batch()
            with autocast(device, cfg.dtype):
                _, loss = train_model(x.to(device), y.to(device))
            (loss / cfg.gradient_accumulation_steps).backward()
        if not torch.isfinite(loss):  # stop before a broken step reaches the weights or a checkpoint
            bar.close()
            raise UserError(f"loss is {loss.item()} at step {progress.step + 1}; training stopped. The last good "
                            f"checkpoint, {out_dir / 'ckpt.pt'}, is intact: lower learning_rate and resume with "
                            f"{resume_command(argv)}")
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.step += 1

        if progress.step % cfg.log_interval == 0 or progress.step == cfg.max_iters:
            now = time.perf_counter()
            tok_per_s = (progress.step - logged_step) * tokens_per_step / (now - last_log)
            last_log, logged_step = now, progress.step
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s:,.0f}", refresh=False)
            bar.update(progress.step - bar.n)
        if progress.step % cfg.eval_interval == 0 or progress.step == cfg.max_iters:
            losses = evaluate(train_model, eval_loaders, cfg, device)
            bar.write(f"step {progress.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            improved = losses["val"] < progress.best_val_loss
            if improved:
                progress.best_val_loss = losses["val"]
                save("best.pt")
            if improved or cfg.always_save_checkpoint:
                save("ckpt.pt")
            last_log = time.perf_counter()  # evaluation time is not training throughput
        if stop.received is not None:
            bar.close()
            save("ckpt.pt")
            print(f"stopped at step {progress.step}; checkpoint saved to {out_dir / 'ckpt.pt'}. Resume with:\n"
                  f"  {resume_command(argv)}", file=sys.stderr)
            sys.exit(128 + stop.received)
    bar.close()
    print(f"best val loss {progress.best_val_loss:.4f}; checkpoints in {out_dir}")
    if cfg.sample_tokens:
        print_sample(model, dataset, cfg, device)


if __name__ == "__main__":
    run_cli(main)
