"""Turn a UTF-8 text file into a dataset folder: train.bin, val.bin, meta.json.

    python data/prepare.py --input=FILE [--tokenizer=char|gpt2] --out_dir=data/NAME

The command that uses the data/ library (data/dataset.py says what a dataset
folder holds); it lives here, where nanoGPT's users look for it.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.errors import run_cli  # noqa: E402
from cli.settings import PrepareConfig, read_config  # noqa: E402
from data.dataset import prepare_dataset  # noqa: E402
from data.sources import read_text  # noqa: E402


def main(argv: list[str]) -> None:
    cfg = read_config(PrepareConfig, argv)
    meta = prepare_dataset(read_text(cfg.input), cfg.tokenizer, cfg.out_dir, cfg.val_fraction)
    print(
        f"{cfg.out_dir}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens, "
        f"vocabulary {meta['vocab_size']:,} ({cfg.tokenizer}), {meta['dtype']}"
    )


if __name__ == "__main__":
    run_cli(main)
