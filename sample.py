"""Continue a prompt with a trained checkpoint (or GPT-2's weights).

    python sample.py [CONFIG.toml ...] [--key=value ...]

`python sample.py --help` lists every key.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.checkpoint import load_checkpoint, model_from_checkpoint
from core.config import help_text, parse_config, wants_help
from core.device import pick_device
from core.errors import UserError, run_cli
from core.generation import SampleText
from core.settings import SampleConfig, TrainConfig
from data.tokenizer import GPT2Tokenizer, Tokenizer, start_tokens, tokenizer_from_description
from model import GPT
from model.pretrained import PretrainedNotFound

SEPARATOR = "\n---------------"


def load_model(cfg: SampleConfig, device: torch.device) -> tuple[GPT, Tokenizer]:
    """The model and tokenizer, rebuilt from the checkpoint alone (or GPT-2)."""
    if cfg.init_from:
        try:
            model = GPT.from_pretrained(cfg.init_from)
        except PretrainedNotFound as e:
            raise UserError(str(e)) from None
        tokenizer: Tokenizer = GPT2Tokenizer()
    else:
        path = Path(cfg.out_dir) / cfg.checkpoint
        checkpoint = load_checkpoint(path, device)
        model = model_from_checkpoint(checkpoint, path)
        tokenizer = tokenizer_from_description(checkpoint["tokenizer"])
    return model.to(device).eval(), tokenizer


def read_prompt(prompt: str) -> str:
    if not prompt.startswith("FILE:"):
        return prompt
    path = Path(prompt[len("FILE:") :])
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"prompt file {path} not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"prompt file {path} is not UTF-8 (invalid byte at offset {e.start})") from None


def encode_prompt(prompt: str, tokenizer: Tokenizer, block_size: int) -> list[int]:
    ids = tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
    if len(ids) > block_size:
        raise UserError(
            f"the prompt is {len(ids)} tokens but the model's context is {block_size}; shorten the prompt"
        )
    return ids


def main(argv: list[str]) -> None:
    if wants_help(argv):
        print(help_text(SampleConfig, "usage: python sample.py [CONFIG.toml ...] [--key=value ...]"))
        return
    # a training config may be passed too: sample.py reads its out_dir and skips the rest
    cfg = parse_config(SampleConfig, argv, ignore={f for f in TrainConfig.__dataclass_fields__})
    device = pick_device(cfg.device)
    model, tokenizer = load_model(cfg, device)
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
