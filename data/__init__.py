"""Tokenizers, dataset folders, batch loading and corpus recipes: a library that
imports nothing else of the project. (data/prepare.py is the command that uses it.)"""

from pathlib import Path

from .dataset import dataset_dir, read_meta
from .errors import DataError
from .tokenizer import Tokenizer, tokenizer_from_description

__all__ = ["DataError", "Tokenizer", "load_tokenizer"]


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """The tokenizer of a prepared dataset folder (a path, or NAME for data/NAME), rebuilt from its
    meta.json: `encode(text) -> list[int]`, `decode(ids) -> str`, `vocab_size`, `eot_token`."""
    folder = dataset_dir(str(folder))
    return tokenizer_from_description(read_meta(folder).get("tokenizer"), folder / "meta.json")
