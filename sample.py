"""Continue a prompt with a trained checkpoint (or GPT-2's weights).

    python sample.py [CONFIG.toml ...] [--key=value ...]

`python sample.py --help` lists every key.
"""
from __future__ import annotations

import torch

from core.config import help_text, parse_config, wants_help
from core.device import pick_device
from core.errors import run_cli
from core.generation import SampleText
from core.loading import encode_prompt, load_model, read_prompt
from core.settings import SampleConfig, TrainConfig

SEPARATOR = "\n---------------"


def main(argv: list[str]) -> None:
    if wants_help(argv):
        print(help_text(SampleConfig, "usage: python sample.py [CONFIG.toml ...] [--key=value ...]"))
        return
    # a training config may be passed too: sample.py reads the keys it shares (out_dir, seed,
    # device) and skips the rest. Its init_from says how training began: a flag sets sampling's.
    cfg = parse_config(SampleConfig, argv, ignore=set(TrainConfig.__dataclass_fields__), flags_only={"init_from"})
    device = pick_device(cfg.device)
    model, tokenizer = load_model(cfg.out_dir, cfg.checkpoint, cfg.init_from, device)
    prompt = read_prompt(cfg.prompt)
    ids = encode_prompt(prompt, tokenizer, model.config.block_size)
    idx = torch.tensor([ids] * cfg.num_samples, dtype=torch.long, device=device)  # (num_samples, T)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    samples = [SampleText(tokenizer, cfg.stop) for _ in range(cfg.num_samples)]
    stream = model.generate_stream(
        idx, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.use_cache, generator
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
