"""Write a trained checkpoint as a Hugging Face model folder, for transformers, serving
engines, llama.cpp's converter and the hub.

    python export.py [CONFIG.toml ...] --out_dir=DIR --to=FOLDER [--checkpoint=best.pt] [--overwrite=true]

The GPT-2 shape becomes a GPT2LMHeadModel; the modern shape a LlamaForCausalLM, or a
Qwen3ForCausalLM with QK-norm. The folder holds config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json and a model card (README.md).
`python export.py --help` lists every key.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from config.errors import UserError, run_cli
from cli.loading import existing_checkpoint, load_model
from cli.model_card import model_card
from config.outputs import check_output
from config.settings import ExportConfig, SampleConfig, read_config
from data.hf_tokenizer import save_hf_tokenizer
from data.staging import make_staging_folder, swap_in
from data.tokenizer import start_tokens
from model.hf import hf_model_type, save_hf_model


def check_target(to: str, overwrite: bool) -> Path:
    """Refuse, before any work, a target that is a file or cannot be written, or a folder with
    files in it unless overwrite."""
    folder = check_output(to, "to", folder=True)
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise UserError(f"--to={folder} exists and is not empty; choose another folder, or pass --overwrite=true "
                        f"to replace it")
    return folder


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A fresh folder beside target to write into (data/staging.py, as prepare builds a dataset). When
    the block ends well it takes target's place whole; otherwise it is removed: target is never left
    half-written."""
    staging = make_staging_folder(target, flag="to", purpose="export")
    try:
        yield staging
        swap_in(staging, target)
    except OSError as e:
        raise UserError(f"could not write {target} ({e.strerror or e}); it was left as it was") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str]) -> None:
    cfg = read_config(ExportConfig, argv)
    start = time.perf_counter()
    path = existing_checkpoint(Path(cfg.out_dir) / cfg.checkpoint)
    target = check_target(cfg.to, cfg.overwrite)
    model, tokenizer, checkpoint = load_model(str(path.parent), path.name, "", torch.device("cpu"))
    n_params = model.num_params()
    hf_model_type(model.config)  # a shape with no Hugging Face equivalent is refused before anything is written
    sample = SampleConfig()  # sample.py's defaults become the folder's generation config
    generation = dict(do_sample=True, temperature=sample.temperature, top_k=sample.top_k,
                      max_new_tokens=sample.max_new_tokens)
    with staged_folder(target) as folder:
        architecture = save_hf_model(model, folder, tokenizer.eot_token, generation)
        save_hf_tokenizer(tokenizer, folder, model.config.block_size)
        prompt = tokenizer.decode(start_tokens(tokenizer))
        card = model_card(checkpoint, str(path), architecture, n_params, target.name, prompt)
        (folder / "README.md").write_text(card, encoding="utf-8")
    print(f"wrote {target}: {architecture}, {n_params:,} parameters, "
          f"{checkpoint['tokenizer']['kind']} tokenizer, from {path} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    run_cli(main)
