"""How good is a model? Loss, perplexity and bits per byte over a whole text.

    python eval.py [CONFIG.toml ...] [--out_dir=DIR] [--text_file=FILE] [--max_tokens=N] [--json=true]
                   [--surprise=page.html]

Without --text_file, the checkpoint's own validation split is evaluated, if that dataset was prepared with
the checkpoint's tokenizer.
`python eval.py --help` lists every key.
"""

import config.interrupt  # noqa: F401  first: a Ctrl-C while torch loads is one line

import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from config.device import pick_device
from config.errors import UserError, run_cli
from config.outputs import check_output, check_replaceable, same_place
from config.settings import EvalConfig, read_config
from data.dataset import dataset_dir, lost_relative_path, open_dataset, tokenizer_change
from data.errors import DataError
from data.files import write_atomically
from data.sources import read_text
from model.config import counted
from model.scoring import score_tokens, summarize
from training.init_from import load_chosen
from viz.explorer import SURPRISE_MARK, page_marked, surprise_page


def validation_split(checkpoint: dict) -> tuple[np.ndarray, str]:
    """The validation tokens of the checkpoint's dataset (if prepared with its tokenizer), and their file's name."""
    folder = dataset_dir(checkpoint["config"]["dataset"])
    if lost_relative_path(checkpoint["config"]["dataset"]):
        raise UserError(f"the checkpoint's dataset, {folder} from the folder train.py ran in, is not found from here; "
                        f"run eval.py there, or evaluate a text with --text_file=FILE")
    try:
        dataset = open_dataset(folder)
    except DataError as e:  # gone or damaged since training
        raise UserError(f"the checkpoint's dataset: {e}; or evaluate a text with --text_file=FILE") from None
    if dataset.meta["tokenizer"] != checkpoint["tokenizer"]:
        raise UserError(f"dataset {folder} was prepared with another tokenizer than this checkpoint's "
                        f"({tokenizer_change(checkpoint['tokenizer'], dataset.meta['tokenizer'])}); "
                        f"evaluate a text with --text_file=FILE")
    if dataset.meta["fingerprint"] != checkpoint["dataset"]["fingerprint"]:
        print(f"note: dataset {folder} was prepared again since this model trained on it; its validation split "
              f"may hold text the model trained on", file=sys.stderr)
    return np.asarray(dataset.val, dtype=np.int64), os.path.relpath(folder / "val.bin")


def main(argv: list[str]) -> None:
    cfg = read_config(EvalConfig, argv)
    if cfg.surprise:
        surprise = check_output(cfg.surprise, "surprise", folder=False)
        if cfg.text_file and same_place(surprise, cfg.text_file):
            raise UserError(f"surprise={cfg.surprise} is the text being evaluated; choose another --surprise")
        check_replaceable(surprise, "surprise", "a page eval.py", lambda page: page_marked(page, SURPRISE_MARK))
    device = pick_device(cfg.device)
    model, tokenizer, checkpoint, name = load_chosen(cfg, device, finite=False)
    if cfg.text_file:
        tokens, source = np.array(tokenizer.encode(read_text(cfg.text_file)), dtype=np.int64), cfg.text_file
    elif checkpoint is None:
        raise UserError(f"hf_model={cfg.hf_model} has no validation split of its own; "
                        f"give a text with --text_file=FILE")
    else:
        tokens, source = validation_split(checkpoint)
    if len(tokens) < 2:
        raise UserError(f"{source} has {len(tokens)} token(s); evaluation needs at least 2")
    whole = len(tokens) - 1  # the tokens the text predicts
    tokens = tokens[: cfg.max_tokens + 1] if cfg.max_tokens else tokens  # the first predicts nothing

    scores = score_tokens(model, tokens, cfg.batch_size, show_progress=True)
    result = {"checkpoint": name, "text": source, **asdict(summarize(scores.losses, tokens, tokenizer.token_bytes()))}
    if cfg.json:  # JSON has no infinity or nan: a diverged model's numbers are null
        print(json.dumps({key: None if isinstance(value, float) and not math.isfinite(value) else value
                          for key, value in result.items()}))
    else:
        bpb = result["bits_per_byte"]
        part = f" (the first of {whole:,}: --max_tokens)" if result["tokens"] < whole else ""
        print(f"{name} on {result['text']}: {counted(result['tokens'], 'token')} predicted{part}, "
              f"{counted(result['bytes'], 'byte')}\n"
              f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.2f}, "
              + (f"{bpb:.4f} bits per byte" if bpb is not None else
                 "no bits per byte: the scored tokens hold no bytes of text (end-of-text tokens only)"))
    if cfg.surprise:
        shown = tokens[: cfg.surprise_tokens + 1]
        scores = score_tokens(model, shown, cfg.batch_size, top_k=5)
        page = surprise_page(tokenizer, shown, scores, f"{name} on {source}")
        write_atomically(Path(cfg.surprise), page.encode("utf-8"))
        if not cfg.json:
            print(f"surprise page: {cfg.surprise}")


if __name__ == "__main__":
    run_cli(main, smaller="a smaller batch_size")
