"""Dataset folders: train.bin and val.bin (raw token ids, uint16 or uint32) and meta.json (the tokenizer's
description, each split's counts, the inputs, and `fingerprint`: the sha256 of train.bin's sha256 then val.bin's).
The fingerprint and the tokenizer are the dataset's identity, which a checkpoint records."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .tokenizer import Tokenizer, tokenizer_from_description

DATA_ROOT = Path(__file__).resolve().parent
CHUNK_TOKENS = 1 << 24  # ids scanned at a time: bounded memory whatever the dataset's size


def dataset_dir(dataset: str) -> Path:
    """`dataset` is a folder name under data/, or a path to a dataset folder."""
    if not dataset.strip():  # not data/ itself
        raise DataError("--dataset is empty; give a dataset's name under data/ or its folder's path")
    return Path(dataset) if "/" in dataset else DATA_ROOT / dataset


def is_dataset(folder: Path) -> bool:
    """Whether folder is a prepared dataset's (it holds meta.json), whole or not."""
    return (folder / "meta.json").is_file()


def lost_relative_path(dataset: str) -> bool:
    """A dataset path relative to the folder a command ran in (a checkpoint's), not found from here."""
    folder = dataset_dir(dataset)
    return not folder.is_absolute() and not folder.is_dir()


def read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError("its meta.json is not a JSON object")
    except FileNotFoundError:
        raise DataError(f"{folder}/meta.json not found; make the dataset with python data/prepare.py") from None
    except OSError as e:  # the dataset given is a file, its meta.json a folder, ...
        raise DataError(f"cannot read {folder}/meta.json ({e.strerror}); give a dataset folder that data/prepare.py "
                        f"wrote") from None
    except (ValueError, RecursionError) as e:  # RecursionError: brackets nested past Python's limit
        raise DataError(f"dataset {folder} is inconsistent ({e}); re-run python data/prepare.py for it") from None
    return meta


@dataclass
class Dataset:
    meta: dict
    train: np.ndarray  # memory-mapped token ids
    val: np.ndarray
    tokenizer: Tokenizer  # rebuilt from meta.json


def open_dataset(folder: Path) -> Dataset:
    """Open a prepared dataset folder, checking meta.json against its bins and every id against the vocabulary
    (a bin from another dataset, a damaged file) in bounded chunks."""
    meta = read_meta(folder)
    try:
        dtype, vocab_size = np.dtype(meta["dtype"]), int(meta["vocab_size"])
        if "fingerprint" not in meta:
            raise ValueError("meta.json has no fingerprint of its token files: an earlier format")
        splits = {}
        for name in ("train", "val"):
            path = folder / f"{name}.bin"
            if not path.is_file() or path.stat().st_size != meta[f"{name}_tokens"] * dtype.itemsize:
                raise ValueError(f"{path.name} does not hold the {meta[f'{name}_tokens']} tokens meta.json lists")
            splits[name] = np.memmap(path, dtype=dtype, mode="r")
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"dataset {folder} is inconsistent ({e}); re-run python data/prepare.py for it") from None
    for name, tokens in splits.items():
        for start in range(0, len(tokens), CHUNK_TOKENS):
            top = int(tokens[start : start + CHUNK_TOKENS].max())
            if top >= vocab_size:
                raise DataError(f"{folder / name}.bin holds token id {top}, outside the vocabulary of {vocab_size} "
                                f"in meta.json; re-run python data/prepare.py for it")
    tokenizer = tokenizer_from_description(meta["tokenizer"], folder / "meta.json")
    return Dataset(meta, splits["train"], splits["val"], tokenizer)


def dataset_identity(dataset: Dataset) -> dict:
    """What a checkpoint records of the data it was trained on: plain strings only."""
    return {"fingerprint": dataset.meta["fingerprint"], "tokenizer": dataset.meta["tokenizer"]}


def tokenizer_change(saved: dict, current: dict) -> str:
    """How the current tokenizer differs from the saved one, in a few words for a message."""
    if saved.get("kind") == current.get("kind") == "char":
        added = "".join(sorted(set(current["chars"]) - set(saved["chars"])))
        missing = "".join(sorted(set(saved["chars"]) - set(current["chars"])))
        if not added and not missing:
            return "the same characters, numbered in another order"
        changes = [f"{len(chars)} {what} {chars[:10]!r}{', ...' * (len(chars) > 10)}"
                   for chars, what in ((added, "new:"), (missing, "missing:")) if chars]
        return f"characters changed ({', '.join(changes)})"

    if saved.get("kind") == current.get("kind") == "bpe":  # trained anew: other merges, maybe of the same size
        sizes = [len(d["ranks"].splitlines()) + len(d["special_tokens"]) for d in (current, saved)]
        return f"a BPE trained anew, of {sizes[0]:,} tokens, instead of the one of {sizes[1]:,}"

    def summary(d: dict) -> str:  # 'gpt2', 'char (65 characters)'
        return f"char ({len(d['chars'])} characters)" if d.get("kind") == "char" else str(d.get("kind"))
    return f"{summary(current)} instead of {summary(saved)}"
