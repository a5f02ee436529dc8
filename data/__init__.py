"""Tokenizers, dataset folders, batch loading and corpus recipes: a library that
imports nothing else of the project. (data/prepare.py is the command that uses it.)"""
from __future__ import annotations

import json
from pathlib import Path

from .dataset import dataset_dir
from .errors import DataError
from .tokenizer import Tokenizer, tokenizer_from_description

__all__ = ["DataError", "Tokenizer", "load_tokenizer"]


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """The tokenizer of a prepared dataset folder (a path, or NAME for data/NAME), rebuilt from its
    meta.json: `encode(text) -> list[int]`, `decode(ids) -> str`, `vocab_size`, `eot_token`."""
    meta = dataset_dir(str(folder)) / "meta.json"
    if not meta.is_file():
        raise DataError(f"{meta} not found; make the dataset with python data/prepare.py")
    return tokenizer_from_description(json.loads(meta.read_text())["tokenizer"])
