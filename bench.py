"""Benchmarks, measured as ratios within one run on whatever device is here.

    python bench.py generation [--device=auto] [--new_tokens=100,500,1000] [--batch_sizes=1,8]

generation: tokens per second of cached and uncached generation side by side,
for a 6-layer, 6-head, 384-wide model with a 256-token context.
"""
from __future__ import annotations

import argparse
import time

import torch

from core.device import pick_device
from core.errors import run_cli
from model import GPT, GPTConfig

GENERATION_MODEL = GPTConfig(block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384, dropout=0.0, bias=False)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_generation(model: GPT, batch_size: int, new_tokens: int, use_cache: bool, device: torch.device) -> float:
    """Seconds to generate new_tokens after a 16-token prompt."""
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, 16), device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    sync(device)
    start = time.perf_counter()
    model.generate(prompt, new_tokens, temperature=1.0, use_cache=use_cache, generator=generator)
    sync(device)
    return time.perf_counter() - start


def bench_generation(args: argparse.Namespace) -> None:
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = GPT(GENERATION_MODEL).to(device).eval()
    print(f"generation: {model.num_params():,}-parameter model (6 layers, 6 heads, 384 wide, context 256) on {device}, "
          f"{torch.get_num_threads()} threads")
    time_generation(model, 1, 20, True, device)  # warm-up
    print(f"{'batch':>5} {'new tokens':>10} {'cached tok/s':>13} {'uncached tok/s':>15} {'speed-up':>9}")
    for batch_size in args.batch_sizes:
        for new_tokens in args.new_tokens:
            cached = time_generation(model, batch_size, new_tokens, True, device)
            uncached = time_generation(model, batch_size, new_tokens, False, device)
            n = batch_size * new_tokens
            print(f"{batch_size:>5} {new_tokens:>10} {n / cached:>13,.0f} {n / uncached:>15,.0f} {uncached / cached:>8.1f}x",
                  flush=True)


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
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    run_cli(main)
