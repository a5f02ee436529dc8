"""Write a trained checkpoint as a Hugging Face model folder, for transformers, serving
engines, llama.cpp's converter and the hub.

    python export.py [CONFIG.toml ...] [--out_dir=DIR] --hf_dir=FOLDER [--checkpoint=best.pt] [--replace_export=true]

The GPT-2 shape becomes a GPT2LMHeadModel; the modern shape a LlamaForCausalLM, or a
Qwen3ForCausalLM with QK-norm. The folder holds config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json and a model card (README.md).
`python export.py --help` lists every key.
"""

import config.interrupt  # noqa: F401  first: a Ctrl-C while torch loads is one line

import contextlib
import dataclasses
import json
import math
import shlex
import shutil
import signal
import time
from pathlib import Path

import torch

from config.errors import UserError, run_cli
from config.outputs import check_output
from config.settings import ExportConfig, SampleConfig, TrainConfig, read_config
from data.dataset import dataset_dir
from data.files import make_staging_folder, swap_in
from data.hf_tokenizer import save_hf_tokenizer
from data.tokenizer import END_OF_TEXT, start_tokens
from model.config import counted, flag_value
from model.hf import hf_model_type, save_hf_model
from training.init_from import load_model


# what export writes: a folder of these alone, its card marked as smallgpt's, is an earlier export (--replace_export)
EXPORT_FILES = {"README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json"}
CARD_MARK = "tags: [smallgpt]"


def check_target(hf_dir: str, replace_export: bool, out_dir: Path) -> Path:
    """Refuse, before any work, a target that is a file or cannot be written, that holds or lies in the
    run's out_dir, or that holds anything but an earlier export (that one only with replace_export)."""
    folder = check_output(hf_dir, "hf_dir", folder=True).resolve()
    run = out_dir.resolve()
    if folder == run or run in folder.parents or folder in run.parents:
        where = "is" if folder == run else "lies inside" if run in folder.parents else "holds"
        raise UserError(f"--hf_dir={hf_dir} {where} the training run's out_dir {out_dir}; export to a folder "
                        f"of its own, e.g. --hf_dir=hf-{run.name}")
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if foreign := sorted(names - EXPORT_FILES):
        raise UserError(f"--hf_dir={hf_dir} holds files export.py did not write ({', '.join(foreign[:3])}); it "
                        f"never replaces them: choose another folder")
    card = folder / "README.md"
    if names and not (card.is_file() and CARD_MARK in card.read_text(errors="replace")):
        raise UserError(f"--hf_dir={hf_dir} holds no model card of smallgpt's (a README.md with {CARD_MARK}), so no "
                        f"earlier export; export.py never replaces it: choose another folder")
    if names and not replace_export:
        raise UserError(f"--hf_dir={hf_dir} holds an earlier export; choose another folder, or pass "
                        f"--replace_export=true to replace it")
    return folder


def training_command(config: dict, planned: bool) -> str:
    """The train.py command that sets every key the run changed from the defaults (a resumed run records the
    init_from it began with); a schedule that follows max_iters, as by default, is left to follow it. A run
    `planned` for a time budget is given by its plan's keys, which retrace it on any machine: not by the budget."""
    defaults = {**dataclasses.asdict(TrainConfig(max_iters=config["max_iters"])), "max_iters": TrainConfig.max_iters}
    flags = [f"--{key}={flag_value(value)}" for key, value in config.items()
             if key in defaults and value != defaults[key] and not (planned and key == "time_budget")]
    return shlex.join(["python", "train.py", *flags])


def result_rows(checkpoint: dict) -> list[str]:
    """The dataset, tokens seen, val loss and bits per byte: the best val loss (nats per token)
    times the validation split's tokens per byte, over ln 2 (if the dataset folder is here)."""
    dataset, loss = checkpoint.get("config", {}).get("dataset", "not recorded"), checkpoint.get("best_val_loss")
    meta, missing = None, "its meta.json is not here, or not readable"  # meta: the split's sizes, each positive
    with contextlib.suppress(KeyError, OSError, ValueError, TypeError):
        found = json.loads((dataset_dir(checkpoint["config"]["dataset"]) / "meta.json").read_text())
        sizes = {key: found[key] for key in ("train_tokens", "val_tokens", "train_bytes", "val_bytes")}
        if found["fingerprint"] != checkpoint["dataset"]["fingerprint"]:
            missing = "it holds other data now, prepared since"
        elif all(type(count) is int and count > 0 for count in sizes.values()):
            meta = sizes
    measured, steps = loss is not None and math.isfinite(loss), checkpoint.get("iter_num", 0)
    rows = [f"| dataset | {dataset}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens, "
            f"{meta['train_bytes'] + meta['val_bytes']:,} bytes of text |" if meta else
            f"| dataset | {dataset} ({missing}: no size, no bits per byte) |",
            f"| tokens seen | {checkpoint.get('tokens_seen', 0):,} in {counted(steps, 'step')} |",
            f"| best val loss | {loss:.4f} nats per token (the lowest of the run's evaluations at or before step "
            f"{steps:,}, over eval_iters batches; `python eval.py` scores this model) |" if measured else
            "| best val loss | not measured |"]
    if meta and measured:
        bits = loss * meta["val_tokens"] / meta["val_bytes"] / math.log(2)
        rows.append(f"| bits per byte | {bits:.4f} (estimated: that val loss over the validation split's "
                    f"{meta['val_bytes'] / meta['val_tokens']:.3f} bytes per token; `python eval.py` scores the "
                    f"whole split) |")
    return rows


def model_card(checkpoint: dict, source: str, architecture: str, n_params: int, folder: str, prompt: str) -> str:
    """README.md for the exported folder (its path as given); its snippet continues `prompt`."""
    shape = ", ".join(f"{key}={flag_value(value)}" for key, value in checkpoint["model_args"].items())
    rows = [f"| architecture | {architecture}, {n_params:,} parameters |", f"| shape | {shape} |",
            f"| tokenizer | {checkpoint['tokenizer']['kind']} |", *result_rows(checkpoint)]
    planned = checkpoint.get("plan") is not None
    command = training_command(checkpoint["config"], planned) if "config" in checkpoint else "not recorded"
    learned = checkpoint["model_args"]["pos_emb"] == "learned"  # GPT-2: generation_config's max_length, no further
    return "\n".join([
        "---", "library_name: transformers", "pipeline_tag: text-generation", CARD_MARK, "---", "",
        f"# {Path(folder).name}", "", f"A small GPT trained with smallgpt, exported from `{source}`.", "",
        "| | |", "|---|---|", *rows, "", "## Trained with", "", "```bash", command, "```", "",
        "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(folder)})",
        f"model = AutoModelForCausalLM.from_pretrained({json.dumps(folder)})",
        f'ids = tokenizer({json.dumps(prompt)}, return_tensors="pt").input_ids',
        f"print(tokenizer.decode(model.generate(ids{'' if learned else ', max_new_tokens=100'})[0]))", "```", "",
    ])


def main(argv: list[str]) -> None:
    cfg = read_config(ExportConfig, argv)
    start = time.perf_counter()
    target = check_target(cfg.hf_dir, cfg.replace_export, Path(cfg.out_dir))
    model, tokenizer, checkpoint, path = load_model(cfg.out_dir, cfg.checkpoint, "", torch.device("cpu"))
    hf_model_type(model.config)  # a shape with no Hugging Face equivalent is refused before anything is written
    sample = SampleConfig()  # sample.py's defaults become the folder's generation config
    padding = list(range(tokenizer.vocab_size, model.config.vocab_size))  # ids past the tokenizer's: never sampled
    prompt_ids = start_tokens(tokenizer)
    # GPT-2's learned positions end at n_positions (block_size), which transformers' generate never slides past
    length = ({"max_length": min(model.config.block_size, len(prompt_ids) + sample.max_new_tokens)}
              if model.config.pos_emb == "learned" else {"max_new_tokens": sample.max_new_tokens})
    generation = dict(do_sample=True, temperature=sample.temperature, top_k=sample.top_k, **length,
                      **({"suppress_tokens": padding} if padding else {}))
    folder = make_staging_folder(target, flag="hf_dir", purpose="export")  # swapped in whole, or removed
    try:
        architecture, n_params = save_hf_model(model, folder, tokenizer.eot_token, generation)
        save_hf_tokenizer(tokenizer, folder, model.config.block_size)
        # a char end-of-text decodes to no text: its name, which the exported tokenizer reads as that token
        prompt = tokenizer.decode(prompt_ids) or END_OF_TEXT
        card = model_card(checkpoint, path, architecture, n_params, cfg.hf_dir, prompt)
        (folder / "README.md").write_text(card, encoding="utf-8")
        # the folder is whole: Ctrl-C and SIGTERM are ignored till it is swapped in and reported, not called a failure
        ignored = {stop: signal.signal(stop, signal.SIG_IGN) for stop in (signal.SIGINT, signal.SIGTERM)}
        swap_in(folder, target)
    except OSError as e:
        raise UserError(f"could not write {target} ({e.strerror or e}); it was left as it was") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"wrote {cfg.hf_dir}: {architecture}, {n_params:,} parameters, "
          f"{checkpoint['tokenizer']['kind']} tokenizer, from {path} ({time.perf_counter() - start:.1f} s)")
    for stop, handler in ignored.items():  # the handlers from before the swap (None: set outside Python)
        signal.signal(stop, signal.SIG_DFL if handler is None else handler)


if __name__ == "__main__":
    run_cli(main)
