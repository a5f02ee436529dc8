"""The keys of train.py and sample.py, with their defaults and help.

The defaults are the default experiment: a small character-level GPT on
Shakespeare that trains on a laptop CPU in a few minutes.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import option
from .errors import UserError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _require_positive(cfg: object, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise UserError(f"{name}={getattr(cfg, name)} must be positive")


def _require_seed(seed: int) -> None:
    if not 0 <= seed < 2**32:  # numpy's generators take no negative seed
        raise UserError(f"seed={seed} must be between 0 and {2**32 - 1}")


def _require_known(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name}={value!r} is not one of {', '.join(choices)}")


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = option("out-shakespeare-char", "folder for checkpoints and logs")
    dataset: str = option("shakespeare_char", "folder under data/ made by data/prepare.py (or a path)")
    init_from: str = option("scratch", "scratch, resume (from out_dir/ckpt.pt), gpt2, gpt2-medium, gpt2-large, gpt2-xl or a Hugging Face GPT-2 folder")
    eval_interval: int = option(250, "evaluate train and val loss every this many steps")
    eval_iters: int = option(20, "batches averaged per evaluation")
    log_interval: int = option(10, "update the progress bar every this many steps")
    always_save_checkpoint: bool = option(True, "write ckpt.pt at every evaluation, not only on a new best val loss")
    sample_tokens: int = option(300, "length of the sample printed when training ends (0: none)")
    # model
    n_layer: int = option(4, "number of transformer blocks")
    n_head: int = option(4, "attention heads per block")
    n_embd: int = option(128, "embedding width (divisible by n_head)")
    block_size: int = option(128, "context length in tokens")
    dropout: float = option(0.0, "dropout probability (0 for short runs)")
    bias: bool = option(False, "biases in Linear layers and LayerNorms")
    vocab_size: int | None = option(None, "vocabulary size (none: the dataset's; larger pads it, e.g. 50304)")
    # optimisation
    batch_size: int = option(16, "sequences per micro-batch")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    max_iters: int = option(1300, "optimizer steps in total")
    learning_rate: float = option(5e-3, "peak learning rate")
    min_lr: float = option(5e-4, "learning rate at the end of the cosine decay")
    warmup_iters: int = option(100, "steps of linear warmup")
    lr_decay_iters: int = option(1300, "step where the cosine decay reaches min_lr")
    decay_lr: bool = option(True, "warmup and cosine decay (false: constant learning_rate)")
    weight_decay: float = option(0.1, "AdamW weight decay, on matrices only")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.99, "AdamW beta2")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: off)")
    # system
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    dtype: str = option("auto", "auto (bfloat16 where the hardware has it, else float32), float32, bfloat16 or float16 (autocast)")
    compile: bool = option(False, "torch.compile the model")
    seed: int = option(1337, "seed of every random generator")
    # logging
    wandb_log: bool = option(False, "log to Weights & Biases (respects WANDB_MODE)")
    wandb_project: str = option("smallgpt", "wandb project")
    wandb_run_name: str = option("run", "wandb run name")

    def __post_init__(self) -> None:
        # the model's shape is checked by GPTConfig when the model is built
        _require_positive(self, ("eval_interval", "eval_iters", "log_interval", "batch_size",
                                 "gradient_accumulation_steps", "max_iters", "learning_rate", "lr_decay_iters"))
        if self.warmup_iters < 0 or self.sample_tokens < 0 or self.grad_clip < 0:
            raise UserError("warmup_iters, sample_tokens and grad_clip must not be negative")
        if not 0 <= self.min_lr <= self.learning_rate:
            raise UserError(f"min_lr={self.min_lr} must be between 0 and learning_rate={self.learning_rate}")
        _require_known("dtype", self.dtype, DTYPES)
        _require_seed(self.seed)


@dataclass
class SampleConfig:
    out_dir: str = option("out-shakespeare-char", "folder holding the checkpoint")
    checkpoint: str = option("ckpt.pt", "checkpoint file in out_dir: ckpt.pt (latest) or best.pt")
    init_from: str = option("", "sample from GPT-2 weights instead (gpt2, ..., gpt2-xl or a Hugging Face folder); a flag only, config files' init_from is training's")
    prompt: str = option("\n", "text to continue, or FILE:path to read it from a file", escapes=True)
    num_samples: int = option(1, "samples, generated as one batch")
    max_new_tokens: int = option(500, "tokens generated per sample")
    temperature: float = option(0.8, "0 is greedy; higher is more random")
    top_k: int | None = option(200, "sample only from the k most likely tokens (none: all)")
    top_p: float = option(1.0, "sample only from the smallest set of tokens with this much probability")
    stop: list[str] = option([], "end a sample where this string appears (repeat the flag for several)", escapes=True)
    use_cache: bool = option(True, "reuse cached keys and values (false: recompute the context every step)")
    seed: int = option(1337, "random seed; the same seed gives the same samples")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")

    def __post_init__(self) -> None:
        _require_positive(self, ("num_samples", "max_new_tokens"))
        _require_seed(self.seed)
        if self.temperature < 0:
            raise UserError(f"temperature={self.temperature} must be 0 (greedy) or positive")
        if self.top_k is not None and self.top_k <= 0:
            raise UserError(f"top_k={self.top_k} must be positive, or none to disable it")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p={self.top_p} must be in (0, 1]")
