"""The model card (README.md) of an exported folder: what the model is, what it was trained
on and how well it did, the command that trained it, and how to load it."""
from __future__ import annotations

import dataclasses
import json
import math
import shlex

from data.dataset import dataset_dir
from model.hf import flag_value

from config.settings import TrainConfig


def training_command(config: dict) -> str:
    """The train.py command that sets every key the run changed from the defaults. A resumed
    run is the same run, so its init_from=resume is left out."""
    defaults = dataclasses.asdict(TrainConfig())
    flags = [f"--{key}={flag_value(value)}" for key, value in config.items()
             if key in defaults and value != defaults[key] and (key, value) != ("init_from", "resume")]
    return shlex.join(["python", "train.py", *flags])


def dataset_meta(config: dict) -> dict | None:
    """The training dataset's meta.json, if the dataset folder is here."""
    try:
        return json.loads((dataset_dir(config["dataset"]) / "meta.json").read_text())
    except (KeyError, OSError, ValueError):
        return None


def result_rows(checkpoint: dict) -> list[str]:
    """The dataset, tokens seen, val loss and bits per byte: the best val loss (nats per token)
    times the validation split's tokens per byte, over ln 2."""
    dataset, loss = checkpoint.get("config", {}).get("dataset", "not recorded"), checkpoint.get("best_val_loss")
    meta = dataset_meta(checkpoint.get("config", {}))
    measured = loss is not None and math.isfinite(loss)
    rows = [f"| dataset | {dataset}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens, "
            f"{meta['train_bytes'] + meta['val_bytes']:,} bytes of text |" if meta else
            f"| dataset | {dataset} (its meta.json is not here: no size, no bits per byte) |",
            f"| tokens seen | {checkpoint.get('tokens_seen', 0):,} in {checkpoint.get('iter_num', 0):,} steps |",
            f"| val loss | {loss:.4f} nats per token (the best of the run's evaluations, each over eval_iters "
            f"batches) |" if measured else "| val loss | not measured |"]
    if meta and measured:
        bits = loss * meta["val_tokens"] / meta["val_bytes"] / math.log(2)
        rows.append(f"| bits per byte | {bits:.4f} (estimated: the val loss over the validation split's "
                    f"{meta['val_bytes'] / meta['val_tokens']:.3f} bytes per token; `python eval.py` scores the "
                    f"whole split) |")
    return rows


def model_card(checkpoint: dict, source: str, architecture: str, n_params: int, folder_name: str, prompt: str
               ) -> str:
    """README.md for the exported folder; `prompt` starts the generation in its snippet."""
    shape = ", ".join(f"{key}={flag_value(value)}" for key, value in checkpoint["model_args"].items())
    rows = [f"| architecture | {architecture}, {n_params:,} parameters |", f"| shape | {shape} |",
            f"| tokenizer | {checkpoint['tokenizer']['kind']} |", *result_rows(checkpoint)]
    command = training_command(checkpoint["config"]) if "config" in checkpoint else "not recorded"
    return "\n".join([
        "---", "library_name: transformers", "pipeline_tag: text-generation", "tags: [smallgpt]", "---", "",
        f"# {folder_name}", "", f"A small GPT trained with smallgpt, exported from `{source}`.", "",
        "| | |", "|---|---|", *rows, "", "## Trained with", "", "```bash", command, "```", "",
        "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f'tokenizer = AutoTokenizer.from_pretrained("{folder_name}")',
        f'model = AutoModelForCausalLM.from_pretrained("{folder_name}")',
        f'ids = tokenizer({json.dumps(prompt)}, return_tensors="pt").input_ids',
        "print(tokenizer.decode(model.generate(ids, max_new_tokens=100)[0]))", "```", "",
    ])
