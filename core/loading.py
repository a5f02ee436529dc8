"""What the scripts that run a trained model share: the model and its
tokenizer from a checkpoint (or GPT-2's weights), and the text to feed it."""
from __future__ import annotations

from pathlib import Path

import torch

from data.tokenizer import GPT2Tokenizer, Tokenizer, start_tokens, tokenizer_from_description
from model import GPT
from model.pretrained import PretrainedNotFound

from .checkpoint import load_checkpoint, model_from_checkpoint
from .errors import UserError


def load_trained(out_dir: str, checkpoint: str, device: torch.device) -> tuple[GPT, Tokenizer, dict]:
    """The model (in eval mode), its tokenizer and the checkpoint dict, from out_dir/checkpoint alone."""
    path = Path(out_dir) / checkpoint
    state = load_checkpoint(path, device)
    model = model_from_checkpoint(state, path)
    return model.to(device).eval(), tokenizer_from_description(state["tokenizer"]), state


def load_model(out_dir: str, checkpoint: str, init_from: str, device: torch.device) -> tuple[GPT, Tokenizer]:
    """The model (in eval mode) and tokenizer, rebuilt from out_dir/checkpoint
    alone, or GPT-2's weights when init_from names them."""
    if not init_from:
        model, tokenizer, _ = load_trained(out_dir, checkpoint, device)
        return model, tokenizer
    try:
        model = GPT.from_pretrained(init_from)
    except PretrainedNotFound as e:
        raise UserError(str(e)) from None
    tokenizer = GPT2Tokenizer()
    if model.config.vocab_size < tokenizer.vocab_size:
        raise UserError(f"{init_from} has a vocabulary of {model.config.vocab_size} tokens, fewer than GPT-2's "
                        f"{tokenizer.vocab_size}: sample.py encodes GPT-2 weights with GPT-2's BPE, so it needs a GPT-2 model")
    return model.to(device).eval(), tokenizer


def read_prompt(prompt: str, what: str = "prompt") -> str:
    """The text itself, or the contents of the file that FILE:path names."""
    if not prompt.startswith("FILE:"):
        return prompt
    if prompt == "FILE:":
        raise UserError(f"FILE: needs a path after it, e.g. --{what}=FILE:notes.txt")
    path = Path(prompt[len("FILE:") :])
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} file {path} not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{what} file {path} is not UTF-8 (invalid byte at offset {e.start})") from None
    except OSError as e:  # a folder, no permission, ...
        raise UserError(f"{what} file {path} cannot be read: {e.strerror or e}") from None


def encode_prompt(prompt: str, tokenizer: Tokenizer, block_size: int, what: str = "prompt") -> list[int]:
    """Token ids of the text (the start token if it is empty), at most block_size of them."""
    ids = tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
    if len(ids) > block_size:
        raise UserError(
            f"the {what} is {len(ids)} tokens but the model's context is {block_size}; shorten the {what}"
        )
    return ids
