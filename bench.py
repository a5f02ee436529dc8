"""Benchmarks, measured as ratios within one run on whatever device is here.

    python bench.py generation [--device=auto] [--new_tokens=100,500,1000] [--batch_sizes=1,8]
    python bench.py training [CONFIG.toml ...] [--key=value ...] [--steps=N]
    python bench.py precision [--steps=N]
    python bench.py first_token [--out_dir=DIR] [--runs=N]

generation: tokens per second of cached and uncached generation side by side,
for a 6-layer, 6-head, 384-wide model with a 256-token context.
training: train.py's own loop against a bare forward + backward + AdamW step of
the same model on a fixed batch (median ms per iteration, their ratio), tokens
per second and MFU; nanoGPT's CPU settings unless a config or flags say otherwise.
precision: float32 against bfloat16 training of the 6x384, context-256 model:
tokens per second and the loss both reach on the same short run.
first_token: wall time from starting `python sample.py` to its first generated
character, for a trained checkpoint (the default run's unless --out_dir says).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from core.config import parse_config
from core.device import autocast, pick_device, resolve_dtype
from core.errors import UserError, run_cli
from core.metrics_log import read_rows
from core.settings import SampleConfig, TrainConfig
from core.throughput import MFUMeter
from core.training import build_optimizer, model_config
from data.corpora import ensure_dataset
from data.loader import BatchLoader, open_dataset
from model import GPT, GPTConfig
from model.linear import MIN_WEIGHT_NUMEL, Linear, matmul_by_row_halves
from model.params import training_flops_per_token

GENERATION_MODEL = GPTConfig(block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384, dropout=0.0, bias=False)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_generation(model: GPT, batch_size: int, new_tokens: int, use_cache: bool, device: torch.device,
                    budget_s: float = 30.0) -> float:
    """Best of up to three timed runs (as many as fit in budget_s) of new_tokens after a 16-token prompt."""
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, 16), device=device)
    best, spent = float("inf"), 0.0
    for _ in range(3):
        generator = torch.Generator(device=device).manual_seed(0)
        sync(device)
        start = time.perf_counter()
        model.generate(prompt, new_tokens, temperature=1.0, use_cache=use_cache, generator=generator)
        sync(device)
        seconds = time.perf_counter() - start
        best, spent = min(best, seconds), spent + seconds
        if spent + seconds > budget_s:
            break
    return best


def time_one_row_products(model: GPT, device: torch.device) -> tuple[float, float]:
    """Milliseconds for one decoding step's weight products (one row through every Linear),
    by F.linear and by the row-halves route; best of 5 rounds of 50."""
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    rows = [torch.randn(1, m.in_features, device=device) for m in layers]
    routes = {
        "linear": lambda x, m: torch.nn.functional.linear(x, m.weight),
        "halves": lambda x, m: matmul_by_row_halves(x, m.weight),
    }
    best = dict.fromkeys(routes, float("inf"))
    with torch.inference_mode():
        for _ in range(5):
            for name, route in routes.items():  # interleaved, so drift hits both
                sync(device)
                start = time.perf_counter()
                for _ in range(50):
                    for x, m in zip(rows, layers):
                        route(x, m)
                sync(device)
                best[name] = min(best[name], (time.perf_counter() - start) * 1000 / 50)
    return best["linear"], best["halves"]


def bench_generation(args: argparse.Namespace) -> None:
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = GPT(GENERATION_MODEL).to(device).eval()
    print(f"generation: {model.num_params():,}-parameter model (6 layers, 6 heads, 384 wide, context 256) on {device}, "
          f"{torch.get_num_threads()} threads; best of up to 3 runs each")
    time_generation(model, 1, 20, True, device)  # warm-up
    print(f"{'batch':>5} {'new tokens':>10} {'cached tok/s':>13} {'uncached tok/s':>15} {'speed-up':>9}")
    for batch_size in args.batch_sizes:
        for new_tokens in args.new_tokens:
            cached = time_generation(model, batch_size, new_tokens, True, device)
            uncached = time_generation(model, batch_size, new_tokens, False, device)
            n = batch_size * new_tokens
            print(f"{batch_size:>5} {new_tokens:>10} {n / cached:>13,.0f} {n / uncached:>15,.0f} {uncached / cached:>8.1f}x",
                  flush=True)
    linear_ms, halves_ms = time_one_row_products(model, device)
    print(f"one decoding step's weight products: F.linear {linear_ms:.2f} ms, row halves {halves_ms:.2f} ms "
          f"({linear_ms / halves_ms:.2f}x; model/linear.py takes the row halves on CPU for matrices of {MIN_WEIGHT_NUMEL:,} elements or more)")


# nanoGPT's documented CPU run: 4 layers, 4 heads, 128 wide, context 64, batch 12, float32, no compile
NANOGPT_CPU = ["--n_layer=4", "--n_head=4", "--n_embd=128", "--block_size=64", "--batch_size=12",
               "--dtype=float32", "--compile=false", "--dropout=0.0"]
PRECISION_MODEL = ["--n_layer=6", "--n_head=6", "--n_embd=384", "--block_size=256", "--batch_size=8", "--dropout=0.0"]


def run_train(train_args: list[str], steps: int, out_dir: Path) -> list[dict]:
    """train.py's main, in this process, for `steps` steps with no evaluation before the end; its log rows."""
    import train

    args = [*train_args, f"--max_iters={steps}", f"--lr_decay_iters={steps}", f"--eval_interval={steps}",
            "--sample_tokens=0", "--always_save_checkpoint=false", f"--out_dir={out_dir}"]
    train.main(args)
    return read_rows(out_dir / "log.jsonl")


def seconds_per_step(rows: list[dict], skip: int) -> list[float]:
    """Per-step wall time of the loop between logged steps, after `skip` warm-up steps."""
    batches = [r for r in rows if r["kind"] == "batch" and r["step"] > skip]
    return [(b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]) for a, b in zip(batches, batches[1:])]


def bare_step_times(cfg: TrainConfig, steps: int, device: torch.device) -> list[float]:
    """Forward, backward and AdamW step of the same model on one fixed batch: nothing else."""
    torch.manual_seed(cfg.seed)
    dataset = open_dataset(ensure_dataset(cfg.dataset))
    model = GPT(model_config(cfg, dataset.meta["vocab_size"])).to(device)
    optimizer = build_optimizer(model, cfg, device)
    x, y = (t.to(device) for t in BatchLoader(dataset.train, cfg.block_size, cfg.batch_size, cfg.seed).next_batch())
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        with autocast(device, resolve_dtype(cfg.dtype, device)):
            _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def bench_training(args: argparse.Namespace) -> None:
    train_args = [*NANOGPT_CPU, *args.train_args] if not args.as_given else args.train_args
    cfg = parse_config(TrainConfig, train_args)
    device = pick_device(cfg.device)
    warmup = min(20, args.steps // 5)
    with tempfile.TemporaryDirectory() as out_dir:
        bare = bare_step_times(cfg, args.steps // 2, device)[warmup:]
        full = seconds_per_step(run_train(train_args, args.steps, Path(out_dir)), warmup)
        bare += bare_step_times(cfg, args.steps // 2, device)[warmup:]  # before and after: drift cancels
    tokens = cfg.batch_size * cfg.block_size * cfg.gradient_accumulation_steps
    loop_ms, bare_ms = 1000 * statistics.median(full), 1000 * statistics.median(bare)
    config = GPT(model_config(cfg, open_dataset(ensure_dataset(cfg.dataset)).meta["vocab_size"])).config
    dtype = resolve_dtype(cfg.dtype, device)
    mfu = MFUMeter(training_flops_per_token(config, cfg.block_size), device, dtype)
    print(f"\ntraining: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide, context {cfg.block_size}, "
          f"batch {cfg.batch_size} x {cfg.gradient_accumulation_steps}, {dtype}{', compiled' if cfg.compile else ''}"
          f" on {device}; medians over {len(full)} loop and {len(bare)} bare steps")
    for name, ms in (("train.py loop", loop_ms), ("bare fwd+bwd+AdamW", bare_ms)):
        rate = tokens / (ms / 1000)
        share = mfu.mfu(rate)
        print(f"  {name:<20} {ms:8.2f} ms/iter {rate:12,.0f} tokens/s   MFU {'n/a' if share is None else f'{share:.1%}'}")
    print(f"  loop / bare: {loop_ms / bare_ms:.3f}   (peak: {mfu.peak_source})")


def bench_precision(args: argparse.Namespace) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "bfloat16"):
            rows = run_train([*PRECISION_MODEL, f"--dtype={dtype}", *args.train_args], args.steps, Path(tmp) / dtype)
            step_s = statistics.median(seconds_per_step(rows, min(10, args.steps // 5)))
            val = [r["val_loss"] for r in rows if r["kind"] == "eval"][-1]
            results[dtype] = (step_s, val)
    tokens = 8 * 256
    print(f"\nprecision: 6 layers, 6 heads, 384 wide, context 256, batch 8, {args.steps} steps, same seed and data")
    for dtype, (step_s, val) in results.items():
        print(f"  {dtype:<9} {tokens / step_s:10,.0f} tokens/s   final val loss {val:.4f}")
    (f32_s, f32_val), (bf16_s, bf16_val) = results["float32"], results["bfloat16"]
    print(f"  bfloat16 / float32: {f32_s / bf16_s:.2f}x the speed, val loss {bf16_val - f32_val:+.4f}")


def seconds_to_first_token(out_dir: str) -> float:
    """Start `python sample.py` as a user would, with its default prompt, and
    time it until one character past the prompt is printed."""
    prompt = SampleConfig.prompt.encode()  # sample.py streams: the prompt, then each token
    command = [sys.executable, "sample.py", f"--out_dir={out_dir}", "--max_new_tokens=20"]
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parent) as proc:
        head = proc.stdout.read(len(prompt) + 1)
        seconds = time.perf_counter() - start
        proc.stdout.read()
        error = proc.stderr.read().decode().strip()
    if proc.returncode != 0 or len(head) <= len(prompt):
        raise UserError(f"sample.py failed: {error.removeprefix('error: ') or 'no output'}")
    return seconds


def bench_first_token(args: argparse.Namespace) -> None:
    times = [seconds_to_first_token(args.out_dir) for _ in range(args.runs)]
    print(f"first token: python sample.py --out_dir={args.out_dir} printed its first new character after "
          f"{min(times):.2f} s at best, {statistics.median(times):.2f} s median over {len(times)} runs")


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generation", help="cached vs uncached generation speed")
    gen.add_argument("--device", default="auto")
    gen.add_argument("--new_tokens", type=int_list, default=[100, 500, 1000])
    gen.add_argument("--batch_sizes", type=int_list, default=[1, 8])
    gen.set_defaults(run=bench_generation)
    train_parser = commands.add_parser("training", help="train.py's loop against a bare training step")
    train_parser.add_argument("--steps", type=int, default=400)
    train_parser.add_argument("--as_given", action="store_true", help="use only the given config, not nanoGPT's CPU settings")
    train_parser.set_defaults(run=bench_training)
    precision = commands.add_parser("precision", help="float32 against bfloat16 training")
    precision.add_argument("--steps", type=int, default=100)
    precision.set_defaults(run=bench_precision)
    first = commands.add_parser("first_token", help="time from starting sample.py to its first generated character")
    first.add_argument("--out_dir", default=TrainConfig.out_dir)
    first.add_argument("--runs", type=int, default=5)
    first.set_defaults(run=bench_first_token)
    args, rest = parser.parse_known_args(argv)
    args.train_args = rest  # CONFIG.toml files and --key=value flags for train.py
    if rest and args.command in ("generation", "first_token"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.run(args)


if __name__ == "__main__":
    run_cli(main)
