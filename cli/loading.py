"""What the commands that run a trained model share: reading a checkpoint (a torch.save
file or a safetensors one), the model and its tokenizer from it (or from a Hugging Face
model), and the text to feed it."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from data.hf_tokenizer import tokenizer_from_hf_folder
from data.tokenizer import GPT2Tokenizer, Tokenizer, start_tokens, tokenizer_from_description
from model import GPT, GPTConfig
from model.pretrained import HUB_NAMES

from config.errors import UserError
from .safetensors_checkpoint import from_safetensors

MODEL_KEYS = ("model", "model_args", "tokenizer")  # enough to sample
CHECKPOINT_SUFFIXES = (".pt", ".safetensors")  # checkpoint_format=pt or safetensors


def existing_checkpoint(path: Path) -> Path:
    """path, or the same checkpoint in the other format when only that one exists (best.safetensors for
    best.pt). Both formats at once cannot be told apart safely: refused, naming the newer file."""
    if path.suffix not in CHECKPOINT_SUFFIXES:
        return path
    found = [path.with_suffix(s) for s in CHECKPOINT_SUFFIXES if path.with_suffix(s).is_file()]
    if len(found) > 1:
        older, newer = sorted(found, key=lambda p: p.stat().st_mtime_ns)
        raise UserError(f"{path.parent} holds {older.name} and {newer.name}, the same checkpoint in two formats; "
                        f"{newer.name} is the newer: remove {older.name} and run again")
    return found[0] if found else path


def load_checkpoint(path: Path, device: str | torch.device = "cpu", required: tuple[str, ...] = MODEL_KEYS) -> dict:
    """Load a checkpoint: a .safetensors file, or torch.save's with weights_only=True (pickled code
    is refused, never run)."""
    path = existing_checkpoint(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; train one with python train.py --out_dir={path.parent}")
    try:
        if path.suffix == ".safetensors":
            checkpoint = from_safetensors(path, device)
        else:
            checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"checkpoint {path} holds pickled objects or code and was not loaded; use a checkpoint written by train.py") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:  # ValueError: safetensors'
        raise UserError(f"checkpoint {path} is damaged or truncated ({str(e).splitlines()[0][:120]}); use another one") from None
    missing = [key for key in required if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise UserError(f"{path} is not a checkpoint of this project (no {', '.join(missing)}); use one written by train.py")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, path: Path) -> GPT:
    """Rebuild the GPT a checkpoint describes and load its weights."""
    try:
        model = GPT(GPTConfig(**checkpoint["model_args"]))
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, ValueError) as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[:3])[:200]  # torch's reason is on line 2
        raise UserError(f"checkpoint {path} does not match the model it describes ({detail}); use another one") from None
    return model


def pretrained_tokenizer(init_from: str, model: GPT) -> Tokenizer:
    """A Hugging Face model's tokenizer: its folder's tokenizer.json (byte-level BPE, through tiktoken),
    or GPT-2's BPE for the hub's GPT-2 names and a GPT-2 folder without one."""
    folder = Path(init_from)
    if (folder / "tokenizer.json").is_file():
        tokenizer, source = tokenizer_from_hf_folder(folder), "its tokenizer.json"
    elif init_from in HUB_NAMES or model.config.pos_emb == "learned":  # GPT-2: the one learned-position model read
        tokenizer, source = GPT2Tokenizer(), "GPT-2's BPE, as it has no tokenizer.json"
    else:
        raise UserError(f"{init_from} has no tokenizer.json; save the model's tokenizer into the folder "
                        f"(tokenizer.save_pretrained) and try again")
    if model.config.vocab_size < tokenizer.vocab_size:
        raise UserError(f"{init_from} has a vocabulary of {model.config.vocab_size} tokens, fewer than the "
                        f"{tokenizer.vocab_size} of the tokenizer it runs with ({source}); use a model whose "
                        f"vocabulary covers its tokenizer")
    return tokenizer


def load_model(out_dir: str, checkpoint: str, init_from: str, device: torch.device
               ) -> tuple[GPT, Tokenizer, dict | None]:
    """The model (in eval mode), its tokenizer and the checkpoint dict, rebuilt from
    out_dir/checkpoint alone; or a Hugging Face model (and no checkpoint) when init_from names one."""
    if not init_from:
        path = Path(out_dir) / checkpoint
        state = load_checkpoint(path, device)
        model = model_from_checkpoint(state, path)
        return model.to(device).eval(), tokenizer_from_description(state["tokenizer"]), state
    model = GPT.from_pretrained(init_from)
    return model.to(device).eval(), pretrained_tokenizer(init_from, model), None


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


def encode_prompt(prompt: str, tokenizer: Tokenizer) -> list[int]:
    """Token ids of the text, or the start token if it is empty."""
    return tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
