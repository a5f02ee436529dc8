"""Dataset folders: train.bin and val.bin (raw token ids) and meta.json.

meta.json describes the tokenizer, the dtype of the ids (uint16, or uint32 when
the vocabulary needs it), the token and byte counts of each split, the
validation fraction and the source text's sha256.

A dataset's identity (its tokenizer and a fingerprint of its token files) is
what a checkpoint records of the data it was trained on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

DATA_ROOT = Path(__file__).resolve().parent
CHUNK_TOKENS = 1 << 24  # ids scanned at a time: bounded memory whatever the dataset's size


def dataset_dir(dataset: str) -> Path:
    """`dataset` is a folder name under data/, or a path to a dataset folder."""
    path = Path(dataset)
    return path if path.is_absolute() or len(path.parts) > 1 else DATA_ROOT / dataset


@dataclass
class Dataset:
    folder: Path
    meta: dict
    train: np.ndarray  # memory-mapped token ids
    val: np.ndarray
    fingerprint: str  # sha256 of train.bin's bytes followed by val.bin's


def open_dataset(folder: Path) -> Dataset:
    """Open a prepared dataset folder, checking meta.json against its bins."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        dtype = np.dtype(meta["dtype"])
        splits = {}
        for name in ("train", "val"):
            path = folder / f"{name}.bin"
            if not path.is_file() or path.stat().st_size != meta[f"{name}_tokens"] * dtype.itemsize:
                raise ValueError(f"{path.name} does not hold the {meta[f'{name}_tokens']} tokens meta.json lists")
            splits[name] = np.memmap(path, dtype=dtype, mode="r")
        vocab_size = int(meta["vocab_size"])
        if "fingerprint" not in meta:
            raise ValueError("meta.json has no fingerprint of its token files: an earlier format")
        fingerprint = meta["fingerprint"]
    except FileNotFoundError:
        raise DataError(f"{folder}/meta.json not found; make the dataset with python data/prepare.py") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"dataset {folder} is inconsistent ({e}); re-run python data/prepare.py for it") from None
    for name, tokens in splits.items():
        scan_token_file(folder / f"{name}.bin", tokens, vocab_size)
    return Dataset(folder, meta, splits["train"], splits["val"], fingerprint)


def scan_token_file(path: Path, tokens: np.ndarray, vocab_size: int) -> None:
    """One pass over a split in bounded chunks: refuse ids the model has no embedding for (a bin from
    another dataset, a damaged file)."""
    for start in range(0, len(tokens), CHUNK_TOKENS):
        chunk = tokens[start : start + CHUNK_TOKENS]
        top = int(chunk.max())
        if top >= vocab_size:
            raise DataError(f"{path} holds token id {top}, outside the vocabulary of {vocab_size} in meta.json; "
                            f"re-run python data/prepare.py for it")


def dataset_identity(dataset: Dataset) -> dict:
    """What a checkpoint records of the data it was trained on: plain strings only."""
    return {"fingerprint": dataset.fingerprint, "tokenizer": dataset.meta["tokenizer"]}


def tokenizer_summary(description: dict) -> str:
    """A tokenizer description in a few words, for messages: 'gpt2', 'char (65 characters)'."""
    if description.get("kind") == "char":
        return f"char ({len(description['chars'])} characters)"
    return str(description.get("kind"))


def tokenizer_change(saved: dict, current: dict) -> str:
    """How the current tokenizer differs from the saved one, in a few words for a message."""
    if saved.get("kind") == current.get("kind") == "char":
        added = "".join(sorted(set(current["chars"]) - set(saved["chars"])))
        missing = "".join(sorted(set(saved["chars"]) - set(current["chars"])))
        if not added and not missing:
            return "the same characters, numbered in another order"
        changes = [f"{len(chars)} {what} {chars[:10]!r}" for chars, what in ((added, "new:"), (missing, "missing:"))
                   if chars]
        return f"characters changed ({', '.join(changes)})"
    return f"{tokenizer_summary(current)} instead of {tokenizer_summary(saved)}"
