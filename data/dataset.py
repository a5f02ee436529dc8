"""Dataset folders: train.bin and val.bin (raw token ids) and meta.json.

meta.json describes the tokenizer, the dtype of the ids (uint16, or uint32 when
the vocabulary needs it), the token and byte counts of each split, the
validation fraction and the source text's sha256.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .files import write_atomically
from .tokenizer import make_tokenizer

DATA_ROOT = Path(__file__).resolve().parent


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
    except FileNotFoundError:
        raise DataError(f"{folder}/meta.json not found; make the dataset with python data/prepare.py") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"dataset {folder} is inconsistent ({e}); re-run python data/prepare.py for it") from None
    return Dataset(folder, meta, splits["train"], splits["val"])


def prepare_dataset(text: str, tokenizer_kind: str, out_dir: str | Path, val_fraction: float = 0.1) -> dict:
    """Tokenize text into the dataset folder out_dir; returns the meta.json contents.
    The last val_fraction of the text (cut at a character) is the validation split."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction={val_fraction} must be between 0 and 1")
    tokenizer = make_tokenizer(tokenizer_kind, text)
    split = int(len(text) * (1 - val_fraction))
    splits = {"train": text[:split], "val": text[split:]}
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {out_dir}: {e.strerror}; choose another --out_dir") from None
    meta = {
        "tokenizer": tokenizer.describe(),
        "vocab_size": tokenizer.vocab_size,
        "dtype": np.dtype(dtype).name,
        "val_fraction": val_fraction,
        "source_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    for name, part in splits.items():
        ids = np.array(tokenizer.encode(part), dtype=dtype)
        write_atomically(out_dir / f"{name}.bin", ids.tobytes())
        meta[f"{name}_tokens"] = int(ids.size)
        meta[f"{name}_bytes"] = len(part.encode("utf-8"))
    write_atomically(out_dir / "meta.json", json.dumps(meta, indent=2).encode())
    return meta
