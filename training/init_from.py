"""The model a run starts from, per init_from: a fresh one, the checkpoint's (to resume, on the data and
shape it was trained with), or a Hugging Face model's weights (to fine-tune); and the model a tool runs."""

import shlex
import sys
from dataclasses import asdict, fields
from pathlib import Path

import torch

from config.device import memory_bytes
from config.errors import UserError
from config.settings import ModelChoice, TrainConfig, smaller_batches, tokens_per_step
from data.dataset import Dataset, tokenizer_change
from data.hf_tokenizer import tokenizer_from_hf_folder
from data.tokenizer import GPT2Tokenizer, Tokenizer, tokenizer_from_description
from model import GPT, GPTConfig
from model.config import ModelOptions
from model.params import counted_parameters
from model.pretrained import HUB_NAMES
from model.weights import with_weights

from .checkpoint import (CHECKPOINT_SUFFIXES, existing_checkpoint, load_checkpoint, model_from_checkpoint,
                         resume_instead)
from .optimizer import on_muon

# the training keys that fix the model's shape: every model option but dropout, and the vocabulary
SHAPE_KEYS = tuple(f.name for f in fields(ModelOptions) if f.name != "dropout") + ("vocab_size",)


def model_config(cfg: TrainConfig, dataset_vocab_size: int) -> GPTConfig:
    """The model shape the config asks for, with the dataset's vocabulary unless vocab_size pads it."""
    vocab_size = dataset_vocab_size if cfg.vocab_size is None else cfg.vocab_size
    if vocab_size < dataset_vocab_size:
        raise UserError(f"vocab_size={vocab_size} is smaller than the dataset's vocabulary of {dataset_vocab_size}; "
                        f"leave it unset or make it larger")
    return GPTConfig(vocab_size=vocab_size, **{f.name: getattr(cfg, f.name) for f in fields(ModelOptions)})


def check_resume_data(checkpoint: dict, identity: dict, cfg: TrainConfig) -> bool:
    """Refuse to resume on data the checkpoint was not trained on (identity: data.dataset.dataset_identity),
    unless allow_new_data makes that fine-tuning. Returns whether the data is new (its walk then starts afresh)."""
    if identity["tokenizer"] != checkpoint["tokenizer"]:
        raise UserError(
            f"cannot resume on dataset {cfg.dataset}: it was prepared with another tokenizer than this checkpoint's "
            f"({tokenizer_change(checkpoint['tokenizer'], identity['tokenizer'])}), which this model cannot read; "
            f"prepare it with the model's tokenizer (data/prepare.py --tokenizer=FOLDER: a dataset prepared with it, "
            f"or python export.py's model folder), or train on it from scratch in a new --out_dir")
    saved = checkpoint["dataset"]
    if saved["fingerprint"] == identity["fingerprint"]:
        return False
    if not cfg.allow_new_data:
        what = (f"the token files of dataset {cfg.dataset} changed since this checkpoint was trained on them"
                if saved["folder"] == cfg.dataset
                else f"dataset {cfg.dataset} is not the one this checkpoint was trained on ({saved['folder']})")
        raise UserError(f"cannot resume: {what}; start a new run in a new --out_dir, or continue on this data "
                        f"as fine-tuning with --allow_new_data=true")
    print(f"resume: fine-tuning on new data ({cfg.dataset}): its walk starts afresh and the best val loss is reset; "
          f"where it holds the old data's text, its validation split (drawn anew) may hold text trained on")
    return True


# how, where (the run may have moved) and on what a process starts: a resume's own, and no change to the run
# (allow_new_data: for one resume); resumed without --time_budget, a budgeted run trains on the steps given
NOT_RESUMED = ("init_from", "replace_run", "allow_new_data", "out_dir", "device", "time_budget")


def resume_changes(checkpoint: dict, cfg: TrainConfig, world_size: int) -> list[str]:
    """The settings a resume changes, once it is known to go ahead, and the number of processes (torchrun's)."""
    saved = checkpoint["config"]
    changes = [f"resume: {key} changed from {old!r} to {getattr(cfg, key)!r}" for key, old in saved.items()
               if key not in NOT_RESUMED and getattr(cfg, key, old) != old]
    if saved.get("time_budget") and not cfg.time_budget:
        changes.append(f"resume: without the time budget ({saved['time_budget']}): the run trains to "
                       f"max_iters={cfg.max_iters}, with no deadline")
    if (processes := checkpoint["loader"].get("world_size", world_size)) != world_size:  # recorded for this note
        changes.append(f"resume: processes changed from {processes} to {world_size}, tokens per step from "
                       f"{tokens_per_step(saved, processes):,} to {tokens_per_step(vars(cfg), world_size):,}")
    return changes


def check_trainable_here(config: GPTConfig, cfg: TrainConfig, device: torch.device, processes_here: int = 1) -> None:
    """Refuse a run that outgrows its share of the device's memory (a CPU's is shared by the processes on it):
    float32 weights and their gradients, AdamW's two moments or Muon's one (16 or 12 bytes a parameter), and a
    micro-batch's activations, at the least: 2 bytes (bfloat16) for each of 8 numbers a token keeps per unit of width
    and 2 per unit of MLP width in every layer, and for its logits. Both recipes keep more."""
    named = counted_parameters(config)
    params = sum(p.numel() * times for _, p, times in named)
    state = sum(p.numel() * times * (12 if on_muon(cfg.optimizer, n, p) else 16) for n, p, times in named)
    per_token = 2 * (config.n_layer * (8 * config.n_embd + 2 * config.mlp_hidden) + config.vocab_size)
    activations = cfg.batch_size * config.block_size * per_token
    shared = processes_here if device.type != "cuda" else 1
    if state + activations <= (memory := memory_bytes(device) // shared):
        return
    if state <= memory:
        fix = f"lower batch_size ({smaller_batches()})"
    else:  # a resumed or pretrained model keeps its shape
        fix = "choose a smaller shape (python params.py shows a config's size)" if cfg.init_from == "scratch" else \
            "train it where there is more memory" + (", or fine-tune a smaller model" if cfg.pretrained else "")
    share = f" (its share, one of {shared} processes)" if shared > 1 else ""
    raise UserError(f"a model of {params:,} parameters needs at least {(state + activations) / 1e9:,.1f} GB to train "
                    f"({state / 1e9:,.1f} GB for its weights, gradients and the optimizer's moments, 12 to 16 bytes a "
                    f"parameter; {activations / 1e9:,.1f} GB for the activations of a micro-batch of "
                    f"{cfg.batch_size:,} x {config.block_size:,} tokens), more than this {device.type}'s "
                    f"{memory / 1e9:,.1f} GB{share}; {fix}")


def build_model(cfg: TrainConfig, dataset: Dataset, checkpoint: dict | None, latest: Path, device: torch.device,
                block_size_set: bool = True, processes_here: int = 1) -> GPT:
    """A fresh model, the checkpoint's (read from `latest`, to resume: the same shape), or a Hugging Face model's
    weights (to fine-tune on text tokenized its own way), per init_from. A Hugging Face model is cropped to
    block_size, unless that is the default and over its own context."""
    wanted = model_config(cfg, dataset.meta["vocab_size"])
    if cfg.init_from == "scratch":
        check_trainable_here(wanted, cfg, device, processes_here)
        return GPT(wanted)
    if checkpoint is not None:
        saved = asdict(GPTConfig(**checkpoint["model_args"]))  # checked before its model, maybe large, is built
        for key in SHAPE_KEYS:
            if saved[key] != getattr(wanted, key):
                from_data = key == "vocab_size" and cfg.vocab_size is None
                source = f" (the vocabulary of dataset {cfg.dataset})" if from_data else ""
                raise UserError(f"cannot resume: {key}={getattr(wanted, key)}{source} but the checkpoint was trained "
                                f"with {key}={saved[key]}; use the same setting or a new out_dir")
        check_trainable_here(wanted, cfg, device, processes_here)  # its batch_size may be new
        model = model_from_checkpoint(checkpoint, latest, resume_instead(latest))
    else:
        model = GPT.from_pretrained(cfg.init_from)
        if block_size_set or cfg.block_size < model.config.block_size:
            model.crop_block_size(cfg.block_size)
        check_trainable_here(model.config, cfg, device, processes_here)
        own = pretrained_tokenizer(cfg.init_from, model).describe()
        if own != dataset.meta["tokenizer"]:
            flag = "gpt2" if own["kind"] == "gpt2" else cfg.init_from
            raise UserError(f"init_from={cfg.init_from} reads text with its own tokenizer, but dataset {cfg.dataset} "
                            f"was prepared with another ({tokenizer_change(own, dataset.meta['tokenizer'])}); prepare "
                            f"your text with python data/prepare.py --input=PATH --dataset=NAME --tokenizer={flag}"
                            + (" (the plays in GPT-2's tokens: --dataset=shakespeare_gpt2)" if flag == "gpt2" else ""))
    model.set_dropout(cfg.dropout)  # it holds no weights: a resume or a fine-tuning may set its own
    return model


def pretrained_tokenizer(init_from: str, model: GPT) -> Tokenizer:
    """A Hugging Face model's tokenizer: its folder's tokenizer.json (byte-level BPE, through tiktoken),
    or GPT-2's BPE for the hub's GPT-2 names and a GPT-2 folder without one."""
    if init_from in HUB_NAMES and not Path(init_from).is_dir():  # a folder of that name is read, as its weights are
        tokenizer, source = GPT2Tokenizer(), "GPT-2's BPE"
    else:
        tokenizer = tokenizer_from_hf_folder(init_from)
        source = ("its tokenizer.json" if Path(init_from, "tokenizer.json").is_file()
                  else "GPT-2's BPE, as it has no tokenizer.json")
    if model.config.vocab_size < tokenizer.vocab_size:
        raise UserError(f"{init_from} has a vocabulary of {model.config.vocab_size} tokens, fewer than the "
                        f"{tokenizer.vocab_size} of the tokenizer it runs with ({source}); use a model whose "
                        f"vocabulary covers its tokenizer")
    return tokenizer


def load_chosen(cfg: ModelChoice, device: torch.device, finite: bool = True
                ) -> tuple[GPT, Tokenizer, dict | None, str]:
    """load_model with a command's keys; an out_dir or checkpoint given beside hf_model is said to go unread."""
    loaded = load_model(cfg.out_dir, cfg.checkpoint, cfg.hf_model, device, cfg.weights, finite)
    unread = [f"{key}={getattr(cfg, key)}" for key in ("out_dir", "checkpoint") if key in cfg.keys_set]
    if cfg.hf_model and unread:  # set by a flag or a config file
        print(f"note: {' and '.join(unread)} ignored: hf_model={cfg.hf_model} runs that model, not a run's "
              f"checkpoint", file=sys.stderr)
    return loaded


def run_flags(checkpoint: Path) -> str:
    """The flags that name a checkpoint file by its run's folder and its name, quoted for the shell."""
    return shlex.join([f"--out_dir={checkpoint.parent}", f"--checkpoint={checkpoint.name}"])


def load_model(out_dir: str, checkpoint: str, init_from: str, device: torch.device, weights: str = "float32",
               finite: bool = True) -> tuple[GPT, Tokenizer, dict | None, str]:
    """The model (in eval mode, its weights in `weights`), its tokenizer, the checkpoint dict and the file read,
    rebuilt from out_dir/checkpoint alone; or a Hugging Face model (no checkpoint) when init_from names one.
    finite: refuse weights of nan or inf (a training that diverged elsewhere: train.py never saves them), whose
    logits are all nan; eval.py scores them instead (a loss of none)."""
    if init_from:
        model = GPT.from_pretrained(init_from)
        if finite:
            refuse_nan_weights(model, init_from)
        return with_weights(model.to(device).eval(), weights), pretrained_tokenizer(init_from, model), None, init_from
    path = existing_checkpoint(Path(out_dir) / checkpoint)
    if not path.is_file():
        if Path(out_dir).is_file():  # the checkpoint itself, given as the run's folder?
            fix = run_flags(Path(out_dir)) if Path(out_dir).suffix in CHECKPOINT_SUFFIXES else \
                "the folder of a train.py run"
            raise UserError(f"out_dir={out_dir} is a file, not a run's folder; give {fix}")
        if Path(checkpoint).name != checkpoint:  # a path, of a checkpoint here or of none
            given = Path(checkpoint)
            fix = "the run's folder as --out_dir, the file's name as --checkpoint"
            if existing_checkpoint(given).is_file():
                fix = run_flags(given)
            raise UserError(f"checkpoint={checkpoint} is a file name in out_dir ({out_dir}), not a path; give {fix}")
        if (Path(out_dir) / "config.json").is_file():  # export.py's folders hold one
            raise UserError(f"{out_dir} is a Hugging Face model folder, not a run: sample.py, eval.py and "
                            f"attention.py read it with --hf_model={out_dir}")
        if others := sorted(p.name for p in path.parent.glob("*") if p.suffix in CHECKPOINT_SUFFIXES and p.is_file()):
            raise UserError(f"checkpoint {path} not found; {out_dir} holds {', '.join(others)}: "
                            f"choose one with --checkpoint")
    if path.name != Path(checkpoint).name:  # only the other format's file is there
        print(f"note: reading {path}, as {out_dir} holds no {checkpoint}", file=sys.stderr)
    state = load_checkpoint(path, device)
    model = model_from_checkpoint(state, path)
    if finite:
        refuse_nan_weights(model, path)
    return (with_weights(model.to(device).eval(), weights), tokenizer_from_description(state["tokenizer"], path), state,
            str(path))


def refuse_nan_weights(model: GPT, source: str | Path) -> None:
    if not model.weights_finite():
        raise UserError(f"{source} holds weights that are nan or inf (a training that diverged); use another model")
