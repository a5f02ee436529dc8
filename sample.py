"""Continue a prompt with a trained checkpoint (or GPT-2's weights).

    python sample.py [CONFIG.toml ...] [--key=value ...]

`python sample.py --help` lists every key.
"""
from __future__ import annotations

import sys

import torch

from config.device import pick_device
from config.errors import run_cli
from cli.loading import encode_prompt, load_model, read_prompt
from cli.sample_text import SampleText
from config.settings import SampleConfig, read_config
from model.fast_decoding import for_cpu_decoding

SEPARATOR = "\n---------------"


def main(argv: list[str]) -> None:
    cfg = read_config(SampleConfig, argv)
    device = pick_device(cfg.device)
    model, tokenizer, _ = load_model(cfg.out_dir, cfg.checkpoint, cfg.hf_model, device)
    model = for_cpu_decoding(model)  # a faster route for one-token products on a CPU; the same weights
    prompt = read_prompt(cfg.prompt)
    ids = encode_prompt(prompt, tokenizer)
    if len(ids) > model.config.block_size:
        print(f"note: the prompt is {len(ids):,} tokens; the model reads its last {model.config.block_size} "
              f"(block_size)", file=sys.stderr)
    idx = torch.tensor([ids] * cfg.num_samples, dtype=torch.long, device=device)  # (num_samples, T)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    samples = [SampleText(tokenizer, cfg.stop) for _ in range(cfg.num_samples)]
    stream = model.generate_stream(
        idx, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.use_cache, generator, tokenizer.vocab_size
    )
    streaming = cfg.num_samples == 1
    if streaming:
        print(prompt, end="", flush=True)
    for next_ids in stream:  # (num_samples, 1)
        for sample, token in zip(samples, next_ids[:, 0].tolist()):
            sample.add(token)
        if streaming:
            print(samples[0].new_text(), end="", flush=True)
        if all(s.done for s in samples):
            break
    for sample in samples:
        sample.finish()  # text held back for a stop string that never came is final now
        if streaming:
            print(sample.new_text() + SEPARATOR)
        else:
            print(prompt + sample.text + SEPARATOR)


if __name__ == "__main__":
    run_cli(main)
