"""python data/prepare.py --input=PATH [--input=PATH ...] --tokenizer=char|gpt2|bpe|FOLDER --dataset=NAME

turns text, .jsonl, .parquet or .gz files, folders or globs into a dataset folder (train.bin, val.bin,
meta.json). data/build.py does the work; the command lives here, where nanoGPT's users look for it."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import config.interrupt  # noqa: E402,F401  first: a Ctrl-C while numpy loads is one line
from config.errors import UserError, interrupted_status, run_cli, stop_on_sigterm  # noqa: E402
from config.outputs import same_place  # noqa: E402
from config.settings import PrepareConfig, read_config  # noqa: E402
from data.build import prepare_dataset  # noqa: E402
from data.corpora import RECIPES  # noqa: E402
from data.dataset import dataset_dir, is_dataset  # noqa: E402


def main(argv: list[str]) -> None:
    cfg = read_config(PrepareConfig, argv)
    folder = dataset_dir(cfg.dataset)
    if shipped := [name for name in RECIPES if same_place(dataset_dir(name), folder)]:
        raise UserError(f"{folder} is the shipped {shipped[0]} dataset, which train.py prepares from the plays when "
                        f"a config names it; give yours another --dataset")
    if folder.is_relative_to(Path.cwd()):  # named in messages as the user sees it from here
        folder = folder.relative_to(Path.cwd())
    if len(folder.parts) == 1:  # --dataset=./notes: never shown as a name, which would mean data/notes
        folder = folder.absolute()
    existed = is_dataset(folder)
    try:
        prepared = prepare_dataset(cfg.input, cfg.tokenizer, folder, vocab_size=cfg.bpe_vocab_size,
                                   val_fraction=cfg.val_fraction, seed=cfg.split_seed, text_field=cfg.text_field,
                                   workers=cfg.workers, overwrite=cfg.replace_dataset, progress=True)
    except KeyboardInterrupt:
        held = "its earlier dataset" if existed else "nothing"
        print(f"interrupted: {folder} holds {held} or, if the interrupt came as it was swapped in, the new dataset: "
              f"never a part of either", file=sys.stderr)
        sys.exit(interrupted_status())
    if prepared.reused:
        print(f"{folder} already holds this dataset (same inputs and settings); nothing to do")
        return
    meta = prepared.meta
    kind = meta["tokenizer"]["kind"]
    if kind == "char":  # its parts, as the model's messages count its characters
        kind = f"char: {meta['vocab_size'] - 1:,} characters and <|endoftext|>"
    if cfg.tokenizer != meta["tokenizer"]["kind"]:  # a folder's tokenizer
        kind += f", {cfg.tokenizer}'s"
    documents = meta["train_documents"] + meta["val_documents"]
    held_out = (f"{meta['val_documents']:,} whole document{'s' * (meta['val_documents'] != 1)}"
                if meta["split"] == "documents" else f"the last {100 * meta['val_fraction']:.3g}% of the text")
    print(f"{folder}: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens from "
          f"{documents:,} document{'s' * (documents != 1)} (validation: {held_out}), "
          f"vocabulary {meta['vocab_size']:,} ({kind}), {meta['dtype']}")
    share, wanted = meta["val_tokens"] / (meta["train_tokens"] + meta["val_tokens"]), meta["val_fraction"]
    if meta["split"] == "documents" and not wanted / 3 <= share <= min(3 * wanted, (1 + wanted) / 2):
        print(f"note: validation holds {share:.1%} of the tokens, not about {100 * wanted:.3g}%, as its whole "
              f"documents are much larger or smaller than the rest; another --split_seed draws others", file=sys.stderr)


if __name__ == "__main__":
    stop_on_sigterm()  # stopped like Ctrl-C: the staging folder is removed and the dataset left as it was
    run_cli(main)
