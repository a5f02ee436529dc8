"""Turn a UTF-8 text file into a dataset folder: train.bin, val.bin, meta.json.

    python data/prepare.py --input FILE --tokenizer char|gpt2 --out_dir data/NAME

The last `val_fraction` of the text (cut at a character boundary) is held out
for validation. Token ids are stored raw as uint16, or uint32 when the
vocabulary needs it; meta.json describes the tokenizer, dtype, token and byte
counts and the source's sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.errors import UserError, run_cli  # noqa: E402
from data.tokenizer import TOKENIZER_KINDS, CharTokenizer, GPT2Tokenizer, Tokenizer  # noqa: E402


def read_text(path: str | Path) -> str:
    """The file's text; a UserError if it is missing, empty or not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} not found; give a UTF-8 text file with --input")
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"input file {path} is empty; give a text file with some content")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"input file {path} is not UTF-8 (invalid byte at offset {e.start}); convert it, "
            f"e.g. iconv -f latin1 -t utf-8"
        ) from None


def make_tokenizer(kind: str, text: str) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "gpt2":
        return GPT2Tokenizer()
    raise UserError(f"unknown tokenizer {kind!r}; use one of {', '.join(TOKENIZER_KINDS)}")


def write_atomically(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside path, then rename it over path."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prepare_dataset(text: str, tokenizer_kind: str, out_dir: str | Path, val_fraction: float = 0.1) -> dict:
    """Tokenize text into out_dir; returns the meta.json contents."""
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction={val_fraction} must be between 0 and 1")
    tokenizer = make_tokenizer(tokenizer_kind, text)
    split = int(len(text) * (1 - val_fraction))
    splits = {"train": text[:split], "val": text[split:]}
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out_dir}: {e.strerror}; choose another --out_dir") from None
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


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Turn a UTF-8 text file into a dataset folder.")
    parser.add_argument("--input", required=True, help="UTF-8 text file")
    parser.add_argument("--tokenizer", default="char", choices=TOKENIZER_KINDS)
    parser.add_argument("--out_dir", required=True, help="dataset folder, e.g. data/NAME")
    parser.add_argument("--val_fraction", type=float, default=0.1, help="tail of the text held out")
    args = parser.parse_args(argv)
    meta = prepare_dataset(read_text(args.input), args.tokenizer, args.out_dir, args.val_fraction)
    print(
        f"{args.out_dir}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens, "
        f"vocabulary {meta['vocab_size']:,} ({args.tokenizer}), {meta['dtype']}"
    )


if __name__ == "__main__":
    run_cli(main)
