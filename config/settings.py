"""The keys of every command, with their defaults and help: one dataclass each. The training defaults are the
default experiment: a small character-level GPT on Shakespeare that trains on a laptop CPU in a few minutes."""

import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from model.config import WEIGHTS, ModelOptions

from .errors import UserError
from .outputs import same_place
from .parsing import C, Checked, help_text, option, parse_config

POSITIVE = (lambda value: value > 0, "must be positive")
NOT_NEGATIVE = (lambda value: value >= 0, "must not be negative")
BELOW_ONE = (lambda value: 0 <= value < 1, "must be in [0, 1)")
SEED = (lambda seed: 0 <= seed < 2**32, f"must be between 0 and {2**32 - 1}")  # numpy takes no negative seed


def written_as(what: str, *suffixes: str) -> tuple:
    """option(check=...) for a file a command writes: its name ends in one of suffixes, so no other file is hit."""
    return (lambda path: not path or Path(path).suffix.lower() in suffixes,
            f"is written as {what}; give a file name ending in {suffixes[0]}")


PNG = written_as("a PNG picture", ".png")


def parse_duration(text: str) -> float:
    """Seconds in "90s", "10m", "1.5h" (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", text)
    if not match:
        raise UserError(f"time_budget={text!r} is not a duration; give seconds, minutes or hours, e.g. 90s, 10m, 1.5h")
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not 0 < seconds <= 8760 * 3600:  # the plan's end is a date
        raise UserError(f"time_budget={text!r} is out of range; give more than 0 and at most a year (8760h)")
    return seconds


OWN_STARTS = ["scratch", "resume"]  # init_from's values that are not a Hugging Face model


@dataclass
class TrainConfig(ModelOptions, Checked):
    command: ClassVar[str] = "train"

    # I/O
    out_dir: str = option("out-shakespeare-char", "folder for checkpoints and logs", path=True)
    dataset: str = option("shakespeare_char", "folder under data/ made by data/prepare.py (or a path)", path=True)
    init_from: str = option("scratch", "scratch, resume (from out_dir/ckpt.pt), gpt2, gpt2-medium, gpt2-large, "
                                       "gpt2-xl or a Hugging Face GPT-2, Llama or Qwen3 folder", path=True)
    replace_run: bool = option(False, "start afresh in an out_dir holding an earlier run, removing its checkpoints "
                                      "and log")
    allow_new_data: bool = option(False, "resume on a dataset other than the checkpoint's (same tokenizer): "
                                         "fine-tuning")
    time_budget: str = option("", "train for this long, the model and schedule picked to fit: 90s, 10m, 1.5h "
                                  "(keys you set are kept; empty: off)")
    eval_interval: int = option(250, "evaluate train and val loss every this many steps", check=POSITIVE)
    eval_iters: int = option(20, "batches averaged per evaluation", check=POSITIVE)
    log_interval: int = option(10, "update the progress bar every this many steps", check=POSITIVE)
    always_save_checkpoint: bool = option(True, "write ckpt.pt at every evaluation, not only on a new best val loss")
    checkpoint_format: str = option("pt", "pt (torch.save: ckpt.pt, best.pt) or safetensors (no pickle: "
                                          "ckpt.safetensors, best.safetensors)", choices=("pt", "safetensors"))
    sample_tokens: int = option(300, "length of the sample printed when training ends (0: none)", check=NOT_NEGATIVE)
    # model: ModelOptions' keys (model/config.py: the modern recipe; configs/classic.toml is GPT-2's), and
    vocab_size: int | None = option(None, "vocabulary size (none: the dataset's; larger pads it, e.g. 50304)")
    # optimisation
    batch_size: int = option(16, "sequences per micro-batch", check=POSITIVE)
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step", check=POSITIVE)
    max_iters: int = option(1000, "optimizer steps in total", check=POSITIVE)
    learning_rate: float = option(1e-2, "AdamW's peak learning rate", check=POSITIVE)
    min_lr: float = option(1e-3, "learning rate at the end of the cosine decay")
    warmup_iters: int | None = option(None, "steps of linear warmup (none: a tenth of max_iters)", check=NOT_NEGATIVE)
    lr_decay_iters: int | None = option(None, "step where the cosine decay reaches min_lr (none: max_iters)",
                                        check=POSITIVE)
    decay_lr: bool = option(True, "warmup and cosine decay (false: constant learning_rate)")
    optimizer: str = option("muon", "muon (Muon for the blocks' matrices, AdamW for the rest) or adamw",
                            choices=("muon", "adamw"))
    muon_lr: float = option(0.02, "Muon's peak learning rate (the schedule scales it as learning_rate)", check=POSITIVE)
    muon_momentum: float = option(0.95, "Muon's momentum", check=BELOW_ONE)
    weight_decay: float = option(0.1, "decoupled weight decay, on matrices only", check=NOT_NEGATIVE)
    beta1: float = option(0.9, "AdamW beta1", check=BELOW_ONE)
    beta2: float = option(0.99, "AdamW beta2", check=BELOW_ONE)
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: off)", check=NOT_NEGATIVE)
    # system
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    dtype: str = option("auto", "auto (bfloat16 where the hardware has it, else float32), float32, bfloat16 or "
                                "float16 (autocast)", choices=("auto", "float32", "bfloat16", "float16"))
    compile: bool = option(False, "torch.compile each block (regional compilation: one graph serves them all)")
    seed: int = option(1337, "seed of every random generator", check=SEED)
    # logging
    wandb_log: bool = option(False, "log to Weights & Biases (respects WANDB_MODE)")
    wandb_project: str = option("smallgpt", "wandb project")
    wandb_run_name: str = option("", "wandb run name (empty: out_dir's folder name)")

    def __post_init__(self) -> None:
        # the model's shape is checked by GPTConfig when the model is built; the schedule follows max_iters
        self.follows_max_iters = {k for k in ("warmup_iters", "lr_decay_iters") if getattr(self, k) is None}
        self.warmup_iters = self.max_iters // 10 if self.warmup_iters is None else self.warmup_iters
        self.lr_decay_iters = self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters
        super().__post_init__()
        if self.init_from != "resume":  # a resume checks them once it has the run's own (train.py)
            self.check_rates()
        if not self.init_from.strip():  # not the current folder
            raise UserError("--init_from is empty; give scratch, resume, a GPT-2 name or a model folder")
        close = difflib.get_close_matches(self.init_from, OWN_STARTS, n=1, cutoff=0.6)
        if close and self.init_from != close[0] and not Path(self.init_from).exists():  # a typo, not a model folder
            raise UserError(f"init_from={self.init_from!r} is not scratch, resume, a GPT-2 name or a folder; "
                            f"did you mean '{close[0]}'?")
        if self.pretrained and same_place(self.init_from, self.out_dir):
            raise UserError(f"out_dir={self.out_dir} is the model folder init_from reads; give the run a folder of "
                            f"its own, e.g. --out_dir=out-finetuned")
        if self.time_budget:
            parse_duration(self.time_budget)
            if self.pretrained:  # the plan would probe and plan a shape of its own
                raise UserError(f"--time_budget picks the model's shape, but init_from={self.init_from} brings its "
                                f"own; fine-tune it for a number of steps with --max_iters instead")

    def check_rates(self, runs_min_lr: bool = False) -> None:
        """min_lr within learning_rate, where the schedule decays to it; runs_min_lr: min_lr is a resumed run's own."""
        if self.decay_lr and not 0 <= self.min_lr <= self.learning_rate:
            own = " (the run's: give --min_lr too)" if runs_min_lr else ""
            raise UserError(f"min_lr={self.min_lr}{own} must be between 0 and learning_rate={self.learning_rate}")

    @property
    def pretrained(self) -> bool:
        """init_from names a Hugging Face model, which brings its own shape."""
        return self.init_from not in OWN_STARTS

    def schedule_warnings(self) -> list[str]:
        """What in an explicitly set schedule the user may not have meant."""
        if not self.decay_lr:
            return []
        warmup, decay, steps = self.warmup_iters, self.lr_decay_iters, self.max_iters
        at_min_lr = steps - max(decay, warmup)  # steps left after both the warmup and the decay
        return [warning for wrong, warning in (
            (warmup >= steps, f"warmup_iters={warmup} >= max_iters={steps}: the learning rate never leaves its warmup"),
            (decay < warmup < steps,  # the run goes past the warmup's end
             f"warmup_iters={warmup} > lr_decay_iters={decay}: the learning rate drops from its warmup straight "
             "to min_lr"),
            (decay > steps,
             f"lr_decay_iters={decay} > max_iters={steps}: the run ends before the decay reaches min_lr"),
            (at_min_lr > 0, f"lr_decay_iters={decay} < max_iters={steps}: the last {at_min_lr} steps run at min_lr"),
        ) if wrong]


def smaller_batches(flag: str = "") -> str:
    """The fix beside a lower batch_size, its key written as a key or (flag="--") as a flag."""
    return f"a higher {flag}gradient_accumulation_steps keeps the tokens per step"


def tokens_per_step(settings: dict, world_size: int = 1) -> int:
    """Tokens one optimizer step trains on across world_size processes, by a training config's settings (vars of a
    TrainConfig, or a checkpoint's "config")."""
    return settings["batch_size"] * settings["block_size"] * settings["gradient_accumulation_steps"] * world_size


@dataclass
class CheckpointChoice(Checked):
    """Which checkpoint of a training run."""

    out_dir: str = option("out-shakespeare-char", "folder holding the checkpoint", path=True)
    checkpoint: str = option("ckpt.pt", "checkpoint file in out_dir: ckpt.pt (latest) or best.pt (.safetensors too)",
                             check=(lambda name: Path(name.strip()).name not in ("", ".."),  # ., ../: not a file
                                    "names no file; name a checkpoint file in out_dir: ckpt.pt or best.pt"))


@dataclass
class ModelChoice(CheckpointChoice):
    """The keys of a command that runs a trained model: which one, and where."""

    hf_model: str = option("", "run a Hugging Face model instead of out_dir's checkpoint (gpt2, ..., gpt2-xl, "
                               "or a GPT-2, Llama or Qwen3 folder)", path=True)
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    weights: str = option("float32", "the weights the model runs with: float32, bfloat16, or int8 (weight-only, "
                                     "in bfloat16)", choices=WEIGHTS)


@dataclass
class SampleConfig(ModelChoice):
    command: ClassVar[str] = "sample"

    prompt: str = option("\n", "text to continue, or FILE:path to read it from a file", escapes=True)
    num_samples: int = option(1, "samples, generated as one batch", check=POSITIVE)
    max_new_tokens: int = option(500, "tokens generated per sample", check=POSITIVE)
    temperature: float = option(0.8, "0 is greedy; higher is more random",
                                check=(lambda t: t >= 0, "must be 0 (greedy) or positive"))
    top_k: int | None = option(200, "sample only from the k most likely tokens (none: all)",
                               check=(lambda k: k > 0, "must be positive, or none to disable it"))
    top_p: float = option(1.0, "sample only from the smallest set of tokens with this much probability",
                          check=(lambda p: 0 < p <= 1, "must be in (0, 1]"))
    stop: list[str] = option([], "end a sample where this string appears (repeat the flag for several)", escapes=True)
    compile: bool = option(False, "decode through the compiled decoding step: compiled once per checkpoint, "
                                  "weights, num_samples and cache size (prompt + max_new_tokens rounded up to a power "
                                  "of two, at most block_size; about a minute on a CPU), loaded from the compile "
                                  "cache after")
    use_cache: bool = option(True, "reuse cached keys and values (false: recompute the context every step)")
    seed: int = option(1337, "random seed; the same seed gives the same samples", check=SEED)

    def __post_init__(self) -> None:
        super().__post_init__()
        if "" in self.stop:
            raise UserError("--stop needs a string to stop at (an empty one would end every sample at once)")
        if self.compile and not self.use_cache:
            raise UserError("--compile=true decodes through the KV cache; drop --use_cache=false or --compile=true")


@dataclass
class EvalConfig(ModelChoice):
    command: ClassVar[str] = "eval"

    text_file: str = option("", "UTF-8 text file to evaluate (empty: the checkpoint's validation split)", path=True)
    max_tokens: int = option(0, "score the text's first N predicted tokens only, for a quicker estimate (0: all)",
                             check=NOT_NEGATIVE)
    batch_size: int = option(16, "windows of block_size tokens per forward pass", check=POSITIVE)
    json: bool = option(False, "print the results as one JSON object")
    surprise: str = option("", "also write a per-token surprise page (HTML) to this file", path=True,
                           check=written_as("a web page", ".html", ".htm"))
    surprise_tokens: int = option(2000, "tokens shown on the surprise page (from the start of the text)",
                                 check=POSITIVE)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.text_file.startswith("FILE:"):
            raise UserError(f"--text_file takes the path itself: --text_file={self.text_file[5:]} "
                            f"(FILE: marks a file in --prompt and --text)")


@dataclass
class AttentionConfig(ModelChoice):
    command: ClassVar[str] = "attention"

    text: str = option("To be, or not to be, that is", "text to run the model over, or FILE:path", escapes=True)
    query_index: int | None = option(None, "token whose attention the bar chart shows (none: the last)")
    pictures_dir: str = option("attention", "folder the pictures and the page are written to", path=True)
    html: bool = option(True, "also write explorer.html")


@dataclass
class ExportConfig(CheckpointChoice):
    command: ClassVar[str] = "export"
    usage: ClassVar[str] = "python export.py [CONFIG.toml ...] [--out_dir=DIR] --hf_dir=FOLDER [--key=value ...]"

    hf_dir: str = option("", "the Hugging Face model folder to write (outside out_dir)", path=True)
    replace_export: bool = option(False, "replace an earlier export in hf_dir (never anything else)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.hf_dir:
            raise UserError("give the folder to write: --hf_dir=FOLDER (e.g. --hf_dir=hf-model)")


@dataclass
class PrepareConfig(Checked):
    command: ClassVar[str] = "prepare"
    usage: ClassVar[str] = ("python data/prepare.py --input=PATH [--input=PATH ...] --tokenizer=char|gpt2|bpe|FOLDER "
                            "[--bpe_vocab_size=N] --dataset=NAME")

    input: list[str] = option([], "text, .jsonl, .parquet or .gz file, folder or glob (repeat the flag for several)",
                              path=True)
    tokenizer: str = option("char", "char, gpt2 (GPT-2's BPE, through tiktoken), bpe (a BPE trained on the text), "
                                    "a prepared dataset's folder (its tokenizer, for a model trained on it) or a "
                                    "Hugging Face model folder (its own tokenizer, to fine-tune that model)", path=True)
    bpe_vocab_size: int | None = option(None, "bpe: tokens in the vocabulary, <|endoftext|> included (none: 4096)")
    dataset: str = option("", "the dataset to write: a folder under data/, or a path", path=True)
    val_fraction: float = option(0.1, "share held out for validation: of the documents, or the text's tail when "
                                      "there is one")
    split_seed: int = option(1337, "seed of the choice of validation documents", check=SEED)
    text_field: str = option("text", "the JSONL field or Parquet column that holds the text")
    workers: int = option(0, "threads that encode (0: one per core)",
                          check=(lambda workers: workers >= 0, "must be 0 (one per core) or positive"))
    replace_dataset: bool = option(False, "replace a different dataset already in the folder")

    def __post_init__(self) -> None:
        if not self.input or not self.dataset:
            raise UserError("give the text and the dataset: --input=PATH --dataset=NAME")
        if "" in self.input:  # an empty pattern would be the current folder, every file under it
            raise UserError("--input needs a path: a file, a folder or a glob")
        super().__post_init__()


@dataclass
class BenchConfig(Checked):
    """Keys of bench.py, each help starting with the benchmarks that read it (another's flag is refused); the
    training benchmarks pass every other key to train.py."""

    command: ClassVar[str] = "bench"
    usage: ClassVar[str] = ("python bench.py generation|training|precision|recipe|budget|first_token|prepare "
                            "[CONFIG.toml ...] [--key=value ...]\n(training, precision and recipe also take "
                            "train.py's keys: python train.py --help)")

    new_tokens: list[int] = option([100, 500], "generation: tokens generated per timed run (comma-separated)")
    batch_sizes: list[int] = option([1, 8], "generation: batch sizes (comma-separated)")
    steps: int | None = option(None, "training, precision: steps to time (none: 400 for training, 100 for precision)",
                               check=(lambda steps: steps >= 50, "is too few to time; use 50 or more"))
    as_given: bool = option(False, "training: the config as given, not nanoGPT's CPU settings with it on top (the "
                                   "recipes' table lays the given keys over the default run's config either way)")
    plot: str = option("", "recipe, budget: the picture to write (empty: recipe.png, budget.png)", path=True, check=PNG)
    budgets: list[int] = option([60, 180, 600], "budget: seconds of each time budget on the character corpus")
    bpe_budget: int = option(180, "budget: seconds of the time budget on the BPE corpus (0: none)", check=NOT_NEGATIVE)
    against_default: bool = option(True, "budget: also the default run against a budgeted run given its wall time")
    repeats: int = option(5, "first_token: how many times to start sample.py", check=POSITIVE)
    out_dir: str = option("out-shakespeare-char", "first_token: the checkpoint's folder", path=True)
    with_compile: bool = option(True, "first_token: also time sample.py --compile=true, a first start (which "
                                      "compiles) and later ones")
    device: str = option("auto", "generation: auto, cpu, cuda, cuda:N or mps")
    corpus_mb: int = option(40, "prepare: MB of text to prepare, in whole copies of the plays (5 MB, one file each)",
                            check=POSITIVE)
    bpe_vocab_size: int | None = option(None, "prepare: vocabulary of the trained BPE tokenizer (none: 4096)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("new_tokens", "batch_sizes", "budgets"):  # budgets: before any budget's runs, not after
            if any(value <= 0 for value in getattr(self, key)):
                raise UserError(f"{key} must be positive")
            if not getattr(self, key) and key != "budgets":  # no budgets: the BPE budget alone
                raise UserError(f"{key} is empty; give at least one")


@dataclass
class CompareConfig(Checked):
    command: ClassVar[str] = "compare"
    usage: ClassVar[str] = "python compare.py --runs=OUT_DIR --runs=OUT_DIR [...] [--plot=compare.png]"

    runs: list[str] = option([], "out_dir of a training run (repeat the flag for each run)", path=True)
    plot: str = option("compare.png", "the picture to write", path=True, check=PNG)

    def __post_init__(self) -> None:
        if not self.runs:
            raise UserError("name the runs to compare: --runs=OUT_DIR --runs=OUT_DIR")
        super().__post_init__()


COMMANDS = {cls.command: cls for cls in (TrainConfig, SampleConfig, EvalConfig, AttentionConfig, ExportConfig,
                                         PrepareConfig, BenchConfig, CompareConfig)}


def read_config(cls: type[C], argv: list[str], usage: str | None = None) -> C:
    """cls's config from argv (defaults < TOML files < flags); --help prints the keys and exits."""
    if any(a in ("-h", "--help") for a in argv):
        usage = usage or getattr(cls, "usage", f"python {cls.command}.py [CONFIG.toml ...] [--key=value ...]")
        print(help_text(cls, usage))
        sys.exit(0)
    return parse_config(cls, argv, COMMANDS)
