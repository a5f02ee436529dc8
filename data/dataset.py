"""Dataset folders: train.bin and val.bin (raw token ids) and meta.json.

meta.json describes the tokenizer, the dtype of the ids (uint16, or uint32 when
the vocabulary needs it), the token and byte counts of each split, the
validation fraction and the source text's sha256.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

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
