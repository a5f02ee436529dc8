"""Where every parameter of a training config's model goes, per head, per matrix and
per block, and the training FLOPs per token. The model is never allocated.

    python params.py [CONFIG.toml ...] [--key=value ...]
"""

import config.interrupt  # noqa: F401  first: a Ctrl-C while torch loads is one line

import sys
from pathlib import Path

from config.errors import UserError, run_cli
from config.settings import TrainConfig, read_config
from data.corpora import RECIPES
from data.dataset import dataset_dir, is_dataset, read_meta
from data.tokenizer import GPT2Tokenizer
from model import GPTConfig
from model.params import format_report, report_rows, training_flops_per_token
from training.checkpoint import checkpoint_path, load_checkpoint
from training.init_from import SHAPE_KEYS, model_config


def dataset_vocab_size(dataset: str) -> int | None:
    """The vocabulary in the dataset's meta.json, or the one a shipped recipe not prepared yet will have; else None."""
    folder = dataset_dir(dataset)
    if is_dataset(folder):
        vocab_size = read_meta(folder).get("vocab_size")
        if not isinstance(vocab_size, int):
            raise UserError(f"dataset {folder} is inconsistent (its meta.json's vocab_size is missing or not an "
                            f"integer); re-run python data/prepare.py for it")
        return vocab_size
    if recipe := RECIPES.get(dataset):
        return GPT2Tokenizer().vocab_size if recipe.tokenizer == "gpt2" else recipe.vocab_size
    return None


def main(argv: list[str]) -> None:
    """Report the model shape a training config describes (the vocabulary is vocab_size, else the dataset's), or
    that of the run in out_dir for init_from=resume."""
    cfg = read_config(TrainConfig, argv, usage="python params.py [CONFIG.toml ...] [--key=value ...]")
    if cfg.time_budget and cfg.init_from != "resume":
        print(f"note: time_budget={cfg.time_budget} is not planned here: train.py picks that shape by timing this "
              f"machine; these are the keys' own counts (a budgeted run's: --init_from=resume --out_dir=DIR)",
              file=sys.stderr)
    if cfg.init_from != "resume" and any(a.startswith("--out_dir=") for a in argv):  # a run named (a config's is not)
        print(f"note: --out_dir={cfg.out_dir} is not read: these are the keys' own counts (the run's: add "
              f"--init_from=resume)", file=sys.stderr)
    if cfg.init_from == "resume":  # the run's own shape
        latest = checkpoint_path(Path(cfg.out_dir), "ckpt", cfg.checkpoint_format)
        c = GPTConfig(**load_checkpoint(latest)["model_args"])
        if ignored := sorted(cfg.keys_set & set(SHAPE_KEYS)):
            print(f"note: {', '.join(ignored)} not counted: --init_from=resume counts the run's own shape",
                  file=sys.stderr)
    elif cfg.init_from != "scratch":
        raise UserError(f"params.py counts the model the keys describe, or a run's (--init_from=resume), not "
                        f"init_from={cfg.init_from}; for GPT-2's shape: python params.py configs/gpt2_124m.toml")
    else:
        vocab = dataset_vocab_size(cfg.dataset) or cfg.vocab_size
        if vocab is None:
            how = "python train.py prepares it on its first run" if cfg.dataset in RECIPES else \
                "prepare it with python data/prepare.py"
            raise UserError(f"dataset {cfg.dataset!r} is not prepared, so its vocabulary size is unknown; {how}, "
                            f"or pass --vocab_size=N")
        c = model_config(cfg, vocab)
    print(f"GPT: n_layer={c.n_layer}, n_head={c.n_head}, n_kv_head={c.n_kv_head}, n_embd={c.n_embd} "
          f"(head_size={c.head_size}), block_size={c.block_size}, vocab_size={c.vocab_size}, bias={c.bias}\n"
          f"pos_emb={c.pos_emb}, norm={c.norm}, qk_norm={c.qk_norm}, mlp={c.mlp} ({c.mlp_hidden} wide), "
          f"tie_embeddings={c.tie_embeddings}\nshapes as PyTorch stores them: a Linear weight is (out x in)\n")
    print(format_report(report_rows(c), training_flops_per_token(c, c.block_size), c.block_size))


if __name__ == "__main__":
    run_cli(main)
