"""How good is a model? Loss, perplexity and bits per byte over a whole text.

    python eval.py [CONFIG.toml ...] [--out_dir=DIR] [--input=FILE] [--json=true] [--surprise=page.html]

Without --input, the checkpoint's own validation split is evaluated.
`python eval.py --help` lists every key.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import help_text, option, parse_config, wants_help
from core.device import pick_device
from core.errors import UserError, run_cli
from core.evaluation import score_tokens, summarize
from core.loading import load_trained
from core.settings import TrainConfig
from core.surprise_page import surprise_page
from data.corpora import dataset_dir
from data.loader import open_dataset
from data.prepare import read_text, write_atomically
from data.tokenizer import Tokenizer


@dataclass
class EvalConfig:
    out_dir: str = option("out-shakespeare-char", "folder holding the checkpoint")
    checkpoint: str = option("ckpt.pt", "checkpoint file in out_dir")
    input: str = option("", "UTF-8 text file to evaluate (empty: the checkpoint's validation split)")
    batch_size: int = option(16, "windows of block_size tokens per forward pass")
    json: bool = option(False, "print the results as one JSON object")
    surprise: str = option("", "also write a per-token surprise page (HTML) to this file")
    surprise_tokens: int = option(2000, "tokens shown on the surprise page (from the start of the text)")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.surprise_tokens <= 0:
            raise UserError("batch_size and surprise_tokens must be positive")


def text_tokens(cfg: EvalConfig, checkpoint: dict, tokenizer: Tokenizer) -> tuple[np.ndarray, str]:
    """The tokens to evaluate and a name for them."""
    if cfg.input:
        tokens = np.array(tokenizer.encode(read_text(cfg.input)), dtype=np.int64)
        source = cfg.input
    else:
        folder = dataset_dir(checkpoint["config"]["dataset"])
        tokens, source = np.asarray(open_dataset(folder).val, dtype=np.int64), os.path.relpath(folder / "val.bin")
    if len(tokens) < 2:
        raise UserError(f"{source} has {len(tokens)} token(s); evaluation needs at least 2")
    return tokens, source


def write_surprise_page(cfg: EvalConfig, model, tokens: np.ndarray, tokenizer: Tokenizer, source: str, device) -> None:
    shown = tokens[: cfg.surprise_tokens + 1]
    scores = score_tokens(model, shown, cfg.batch_size, device, top_k=5)
    pieces = [tokenizer.decode([int(t)]) for t in shown]
    top = [[(tokenizer.decode([int(i)]), float(p)) for i, p in zip(ids, probs)]
           for ids, probs in zip(scores.top_ids, scores.top_probs)]
    page = surprise_page(pieces, scores.losses.tolist(), top, f"{Path(cfg.out_dir) / cfg.checkpoint} on {source}")
    write_atomically(Path(cfg.surprise), page.encode("utf-8"))


def main(argv: list[str]) -> None:
    if wants_help(argv):
        print(help_text(EvalConfig, "usage: python eval.py [CONFIG.toml ...] [--key=value ...]"))
        return
    cfg = parse_config(EvalConfig, argv, ignore=set(TrainConfig.__dataclass_fields__))
    device = pick_device(cfg.device)
    model, tokenizer, checkpoint = load_trained(cfg.out_dir, cfg.checkpoint, device)
    tokens, source = text_tokens(cfg, checkpoint, tokenizer)
    path = Path(cfg.out_dir) / cfg.checkpoint

    scores = score_tokens(model, tokens, cfg.batch_size, device, show_progress=True)
    result = {"checkpoint": str(path), "text": source, **summarize(scores.losses, tokens, tokenizer.token_bytes()).to_dict()}
    if cfg.json:
        print(json.dumps(result))
    else:
        print(f"{result['text']}: {result['tokens']:,} tokens, {result['bytes']:,} bytes\n"
              f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.2f}, "
              f"{result['bits_per_byte']:.4f} bits per byte")
    if cfg.surprise:
        write_surprise_page(cfg, model, tokens, tokenizer, source, device)
        if not cfg.json:
            print(f"surprise page: {cfg.surprise}")


if __name__ == "__main__":
    run_cli(main)
