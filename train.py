"""Train a GPT on a prepared dataset, in one process or several (torchrun).

    python train.py [CONFIG.toml ...] [--key=value ...]
    torchrun --standalone --nproc_per_node=N train.py [CONFIG.toml ...] [--key=value ...]

config -> data -> model -> optimizer -> loop (step, log, evaluate, checkpoint) -> sample.
`python train.py --help` lists every key.
"""
from __future__ import annotations

import contextlib
import math
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from core import distributed
from core.checkpoint import RESUME_KEYS, load_checkpoint, save_checkpoint
from core.config import help_text, parse_config, wants_help
from core.device import autocast, resolve_dtype
from core.errors import UserError, run_cli
from core.metrics_log import MetricsLog
from core.plots import plot_loss
from core.schedule import learning_rate_at
from core.settings import TrainConfig
from core.throughput import MFUMeter
from core.training import (Progress, StopSignals, build_model, build_optimizer, checkpoint_payload, evaluate,
                           open_out_dir, restore_training_state)
from core.wandb_log import WandbLog
from data.corpora import ensure_dataset
from data.loader import BatchLoader, Dataset, open_dataset
from data.tokenizer import start_tokens, tokenizer_from_description
from model import GPT
from model.params import training_flops_per_token
from viz.maps import heatmap_figure, save_png
from viz.tokens import token_texts


@dataclass
class Run:
    """Everything the training loop works with."""

    cfg: TrainConfig
    argv: list[str]
    ranks: distributed.Ranks
    device: torch.device
    dtype: str  # the dtype setting resolved for this device ("auto" becomes bfloat16 or float32)
    out_dir: Path
    dataset: Dataset
    model: GPT  # the plain module: its state_dict is what checkpoints hold
    eval_model: torch.nn.Module  # the model, compiled if asked
    train_model: torch.nn.Module  # what the loop calls: eval_model, wrapped in DDP across processes
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # loss scaling for float16; a pass-through otherwise
    train_loader: BatchLoader
    eval_loaders: dict[str, BatchLoader]
    progress: Progress
    tokens_per_step: int  # across all processes
    mfu: MFUMeter
    log: MetricsLog | None  # out_dir/log.jsonl, main process only
    wandb: WandbLog | None
    saved_step: int | None  # step of the ckpt.pt on disk, if any

    def save(self, name: str) -> None:
        payload = checkpoint_payload(self.model, self.optimizer, self.scaler, self.cfg, self.dataset, self.progress,
                                     self.train_loader)
        save_checkpoint(payload, self.out_dir / name)
        if name == "ckpt.pt":
            self.saved_step = self.progress.step

    def broken_loss_error(self, loss: float) -> UserError:
        if self.saved_step is None:
            saved = "no checkpoint was written yet; lower learning_rate and start again"
        else:
            saved = (f"the last good checkpoint, {self.out_dir / 'ckpt.pt'} (step {self.saved_step}), is intact: "
                     f"lower learning_rate and resume with {self.resume_command()}")
        return UserError(f"loss is {loss} at step {self.progress.step + 1}; training stopped, {saved}")

    def resume_command(self) -> str:
        kept = [a for a in self.argv if not a.startswith("--init_from=")]
        return shlex.join(["python", "train.py", *kept, "--init_from=resume"])

    def record(self, kind: str, **metrics: float | None) -> None:
        """A row for log.jsonl and wandb (main process only)."""
        if self.log is None:
            return
        p = self.progress
        self.log.append({"kind": kind, "step": p.step, "tokens": p.tokens, "elapsed_s": round(p.elapsed_s, 3), **metrics})
        if self.wandb is not None:
            self.wandb.log(p.step, {f"{kind}/{k}": v for k, v in metrics.items() if v is not None})


def open_data(cfg: TrainConfig, ranks: distributed.Ranks) -> Dataset:
    """The dataset, prepared by the main process if it is a shipped recipe met for the first time."""
    if ranks.is_main:
        ensure_dataset(cfg.dataset)
    if ranks.distributed:
        torch.distributed.barrier()
    return open_dataset(ensure_dataset(cfg.dataset))


def set_up(cfg: TrainConfig, argv: list[str]) -> Run:
    ranks, device = distributed.start(cfg.device)
    torch.manual_seed(cfg.seed + 1_000_003 * ranks.rank)  # each process its own dropout masks
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    out_dir = open_out_dir(cfg) if ranks.is_main else Path(cfg.out_dir)
    dataset = open_data(cfg, ranks)
    checkpoint = load_checkpoint(out_dir / "ckpt.pt", required=RESUME_KEYS) if cfg.init_from == "resume" else None
    model = build_model(cfg, dataset, checkpoint).to(device)
    optimizer = build_optimizer(model, cfg, device)
    dtype = resolve_dtype(cfg.dtype, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "float16")
    train_loader = BatchLoader(dataset.train, cfg.block_size, cfg.batch_size, cfg.seed, ranks.rank, ranks.world_size)
    eval_loaders = {  # a seed of their own: the same batches at every evaluation
        split: BatchLoader(tokens, cfg.block_size, cfg.batch_size, cfg.seed + 1, split=split)
        for split, tokens in (("train", dataset.train), ("val", dataset.val))
    }
    progress = Progress()
    if checkpoint is not None:
        progress = restore_training_state(checkpoint, optimizer, scaler, train_loader, ranks.rank, cfg.seed)
    eval_model = torch.compile(model) if cfg.compile else model
    train_model = DistributedDataParallel(eval_model, device_ids=[device.index] if device.type == "cuda" else None) \
        if ranks.distributed else eval_model
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps * ranks.world_size
    mfu = MFUMeter(training_flops_per_token(model.config, cfg.block_size) * ranks.world_size, device, dtype)
    resume_step = progress.step if checkpoint is not None else None
    log = MetricsLog(out_dir / "log.jsonl", resume_step) if ranks.is_main else None
    wandb = WandbLog(cfg, resume_step) if cfg.wandb_log and ranks.is_main else None
    return Run(cfg, argv, ranks, device, dtype, out_dir, dataset, model, eval_model, train_model, optimizer, scaler,
               train_loader, eval_loaders, progress, tokens_per_step, mfu, log, wandb, resume_step)


def train_step(run: Run, lr: float) -> torch.Tensor:
    """One optimizer step over gradient_accumulation_steps micro-batches; returns this process's mean loss."""
    n_micro = run.cfg.gradient_accumulation_steps
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    step_loss = torch.zeros((), device=run.device)
    for micro in range(n_micro):
        x, y = run.train_loader.next_batch()
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        # across processes, gradients are averaged once, on the last micro-batch
        no_sync = run.ranks.distributed and micro < n_micro - 1
        with run.train_model.no_sync() if no_sync else contextlib.nullcontext():
            with autocast(run.device, run.dtype):
                _, loss = run.train_model(x, y)
            run.scaler.scale(loss / n_micro).backward()
        step_loss += loss.detach() / n_micro
    return step_loss


def apply_update(run: Run) -> None:
    """Clip, step the optimizer, clear the gradients."""
    if run.cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.progress.step += 1
    run.progress.tokens += run.tokens_per_step


def evaluate_and_save(run: Run, bar: tqdm, lr: float) -> None:
    losses = evaluate(run.eval_model, run.eval_loaders, run.cfg.eval_iters, run.device, run.dtype)
    bar.write(f"step {run.progress.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    run.record("eval", lr=lr, train_loss=losses["train"], val_loss=losses["val"])
    plot_loss(run.log.rows, run.out_dir / "loss.png")
    improved = losses["val"] < run.progress.best_val_loss
    if improved:
        run.progress.best_val_loss = losses["val"]
        run.save("best.pt")
    if improved or run.cfg.always_save_checkpoint:
        run.save("ckpt.pt")
    if run.wandb is not None:
        run.wandb.log_sample(run.progress.step, sample_text(run, 200))
        run.wandb.log_image(run.progress.step, "loss_curve", run.out_dir / "loss.png")
        run.wandb.log_image(run.progress.step, "attention", attention_picture(run))


def train(run: Run, bar: tqdm) -> None:
    cfg, progress = run.cfg, run.progress
    stop = StopSignals()
    clock = last_log = time.perf_counter()
    logged_step = progress.step
    while progress.step < cfg.max_iters:
        lr = learning_rate_at(progress.step, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters) \
            if cfg.decay_lr else cfg.learning_rate
        step_loss = train_step(run, lr)
        # one collective carries the loss and any stop signal, so every process agrees on both
        loss, stopping = distributed.mean_over_ranks(
            torch.stack([step_loss.float(), torch.tensor(float(stop.received is not None), device=run.device)]),
            run.ranks).tolist()
        if not math.isfinite(loss):  # stop before a broken step reaches the weights or a checkpoint
            raise run.broken_loss_error(loss)
        apply_update(run)
        now = time.perf_counter()
        progress.elapsed_s, clock = progress.elapsed_s + now - clock, now
        finished = progress.step == cfg.max_iters
        if progress.step % cfg.log_interval == 0 or finished:
            tok_per_s = (progress.step - logged_step) * run.tokens_per_step / (now - last_log)
            last_log, logged_step = now, progress.step
            mfu = run.mfu.mfu(tok_per_s)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_per_s:,.0f}",
                            mfu="n/a" if mfu is None else f"{mfu:.1%}", refresh=False)
            bar.update(progress.step - bar.n)
            run.record("batch", lr=lr, train_loss=loss, tok_per_s=round(tok_per_s, 1), mfu=mfu)
        if run.ranks.is_main and (progress.step % cfg.eval_interval == 0 or finished):
            evaluate_and_save(run, bar, lr)
            now = time.perf_counter()
            progress.elapsed_s, clock = progress.elapsed_s + now - clock, now
            last_log = now  # evaluation time is not training throughput
        if stopping:
            bar.close()
            if run.ranks.is_main:
                run.save("ckpt.pt")
                print(f"stopped at step {progress.step}; checkpoint saved to {run.out_dir / 'ckpt.pt'}. "
                      f"Resume with:\n  {run.resume_command()}", file=sys.stderr)
            sys.exit(128 + (stop.received or signal.SIGINT))  # a signal seen by another process counts too


def sample_text(run: Run, n_tokens: int) -> str:
    tokenizer = tokenizer_from_description(run.dataset.meta["tokenizer"])
    idx = torch.tensor([start_tokens(tokenizer)], dtype=torch.long, device=run.device)
    generator = torch.Generator(device=run.device).manual_seed(run.cfg.seed)
    run.model.eval()
    out = run.model.generate(idx, n_tokens, temperature=0.8, top_k=200, generator=generator)
    run.model.train()
    return tokenizer.decode(out[0, idx.size(1) :].tolist())


@torch.no_grad()
def attention_picture(run: Run, n_tokens: int = 24) -> Path:
    """out_dir/attention.png: every head's pattern over the start of the validation text."""
    ids = run.dataset.val[: min(n_tokens, run.model.config.block_size)].astype("int64").tolist()
    tokenizer = tokenizer_from_description(run.dataset.meta["tokenizer"])
    run.model.eval()
    patterns = torch.stack(run.model.attention_patterns(torch.tensor([ids], device=run.device)))[:, 0]  # (L, nh, T, T)
    run.model.train()
    figure = heatmap_figure(patterns.float().cpu(), token_texts(tokenizer, ids), f"step {run.progress.step}")
    return save_png(figure, run.out_dir / "attention.png")


def describe(run: Run) -> str:
    c, cfg, world = run.model.config, run.cfg, run.ranks.world_size
    peak = "unknown" if run.mfu.peak is None else f"{run.mfu.peak / 1e12:.2f} TFLOP/s"
    return (f"model: {run.model.num_params():,} parameters ({c.n_layer} layers, {c.n_head} heads, {c.n_embd} wide, "
            f"context {c.block_size}); device {run.device}, {run.dtype}{', compiled' if cfg.compile else ''}\n"
            f"batch: {cfg.batch_size} x {cfg.gradient_accumulation_steps} accumulation x {world} process(es) "
            f"= {cfg.batch_size * cfg.gradient_accumulation_steps * world} sequences, "
            f"{run.tokens_per_step:,} tokens per step; peak {peak} ({run.mfu.peak_source})")


def main(argv: list[str]) -> None:
    if wants_help(argv):
        print(help_text(TrainConfig, "usage: python train.py [CONFIG.toml ...] [--key=value ...]"))
        return
    cfg = parse_config(TrainConfig, argv)
    run = set_up(cfg, argv)
    try:
        if run.ranks.is_main:
            if run.progress.step:
                print(f"resuming from {run.out_dir / 'ckpt.pt'} at step {run.progress.step}")
            print(describe(run), flush=True)
        with tqdm(total=cfg.max_iters, initial=run.progress.step, unit="step", dynamic_ncols=True,
                  disable=not run.ranks.is_main) as bar:
            train(run, bar)
        if run.ranks.is_main:
            print(f"best val loss {run.progress.best_val_loss:.4f}; checkpoints in {run.out_dir}")
            if cfg.sample_tokens:
                print("--- sample ---\n" + sample_text(run, cfg.sample_tokens) + "\n--------------")
    finally:
        if run.wandb is not None:
            run.wandb.finish()
        distributed.stop()


if __name__ == "__main__":
    run_cli(main)
