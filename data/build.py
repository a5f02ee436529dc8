"""Building a dataset folder from a corpus (what data/prepare.py does): scan the inputs once, plan the
validation split, make the tokenizer (bpe: trained on the training split only), encode every piece into
train.bin and val.bin, each document ending with end-of-text, write meta.json; all in a staging folder
swapped in whole."""

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .dataset import DATA_ROOT, is_dataset, open_dataset, read_meta
from .errors import DataError
from .files import make_staging_folder, remove_dead_staging, swap_in, write_atomically
from .hf_tokenizer import tokenizer_from_hf_folder
from .sources import CorpusScan, Piece, find_inputs, read_as, read_pieces, scan_corpus
from .tokenizer import (END_OF_TEXT, TOKENIZER_KINDS, BPETokenizer, CharTokenizer, GPT2Tokenizer, Tokenizer,
                        bpe_vocab_size, tokenizer_from_description, train_bpe)

RANK_FILE = "tokenizer.tiktoken"  # a bpe's ranks in tiktoken's own format, which load_tiktoken_bpe reads
BATCH_CHARS = 1 << 20  # characters of text per batch handed to an encoding thread
DATASET_FILES = {"train.bin", "val.bin", "meta.json", RANK_FILE}
HF_FILES = {"tokenizer.json", "config.json", "tokenizer_config.json", "vocab.json", "merges.txt", "vocab.txt",
            "special_tokens_map.json", "generation_config.json"}  # what a Hugging Face model's folder holds


@dataclass
class Prepared:
    meta: dict  # meta.json's contents
    reused: bool  # the folder already held exactly this dataset: nothing was written
    tokenizer_seconds: float = 0.0  # making the tokenizer: training it, for bpe


def prepare_dataset(inputs: Sequence[str | Path], tokenizer: str, out_dir: str | Path, *, vocab_size: int | None = None,
                    val_fraction: float = 0.1, seed: int = 1337, text_field: str = "text", workers: int = 0,
                    overwrite: bool = False, progress: bool = False) -> Prepared:
    """Tokenize the inputs (files, folders, globs) into the dataset folder out_dir. A folder holding another
    dataset is replaced only with overwrite=True; workers=0 uses every core."""
    name = tokenizer.rstrip("/")  # old/ names data/old too
    named = DATA_ROOT / name if name and "/" not in name and is_dataset(DATA_ROOT / name) else None
    hint = f" (the dataset {name}'s is --tokenizer={named})" if named else ""
    if tokenizer not in TOKENIZER_KINDS and not (tokenizer and Path(tokenizer).is_dir()):  # "": not this folder
        raise DataError(f"unknown tokenizer {tokenizer!r}; use one of {', '.join(TOKENIZER_KINDS)}, a prepared "
                        f"dataset's folder or a Hugging Face model folder{hint}")
    given = None if tokenizer in TOKENIZER_KINDS else _folder_tokenizer(Path(tokenizer), hint)
    if tokenizer == "bpe":
        vocab_size = bpe_vocab_size(vocab_size)
    elif vocab_size is not None:
        raise DataError(f"bpe_vocab_size is for --tokenizer=bpe; the {tokenizer} tokenizer's vocabulary is fixed by it")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction={val_fraction} must be between 0 and 1")
    # what, with the inputs, makes a dataset what it is: a folder's tokenizer by what it is now, not by its path
    settings = {"tokenizer": tokenizer if given is None
                else f"sha256:{hashlib.sha256(json.dumps(given.describe(), sort_keys=True).encode()).hexdigest()}",
                "vocab_size": vocab_size, "val_fraction": val_fraction, "seed": seed, "text_field": text_field}
    out_dir = Path(out_dir)
    try:
        where = out_dir.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python 3.11's word for a loop of links
        raise DataError(f"dataset {out_dir} is a link in a loop of links; choose another --dataset") from None
    # the dataset itself, when it lies in an input folder, is no input (a second run would read its .bin files)
    files = [f for f in find_inputs(inputs) if not f.resolve().is_relative_to(where)]
    old = _existing_dataset(out_dir)
    if not files:
        raise DataError(f"the inputs hold no file outside the dataset folder {out_dir}; give the text with --input")

    def refusal(what: str) -> DataError:
        return DataError(f"{out_dir} holds {what}; add --replace_dataset=true to replace it, or choose another "
                         f"--dataset")
    if old is not None and not overwrite and old.get("prepared_with") != settings:
        raise refusal("another dataset" if old else "an incomplete dataset (no readable meta.json)")
    stamps = _stamps(files)  # a write in place changes them
    packed = any(f.name.lower().endswith((".gz", ".parquet")) for f in files)  # their text outgrows their size
    with _bar(progress, "scanning", None if packed else sum(size for size, _ in stamps)) as bar:
        scan = scan_corpus(files, text_field, alphabet=tokenizer == "char" or isinstance(given, CharTokenizer),
                           progress=bar.update)
    if isinstance(given, CharTokenizer):  # every character it lacks named at once, not the first piece's
        given.encode_array(scan.alphabet)
    same = (old is not None and old.get("prepared_with") == settings
            and read_the_same(old.get("inputs", [])) == read_the_same(scan.inputs))
    if same:
        with contextlib.suppress(DataError):  # unless the copy there is damaged
            open_dataset(out_dir)
            with contextlib.suppress(OSError):  # what a prepare killed after swapping this dataset in left beside it
                remove_dead_staging(out_dir)
            return Prepared(old, reused=True)
    if old is not None and not overwrite:
        raise refusal("a damaged copy of this dataset" if same else "another dataset")
    staging = make_staging_folder(out_dir)  # only now: bad input leaves even a new dataset's parent folders unmade
    try:
        meta, tokenizer_seconds = _build(files, scan, settings, given, staging, workers, progress)
        if _stamps(files) != stamps:
            raise DataError(CHANGED)
        # another prepare of out_dir (by any path to it) that finished meanwhile is not replaced unseen
        with _locked(out_dir.resolve().parent):
            if (now := _existing_dataset(out_dir)) != old:
                if now and all(now.get(key) == meta[key] for key in ("fingerprint", "prepared_with")):
                    return Prepared(now, reused=True)  # the same dataset, made by the other prepare
                raise DataError(f"{out_dir} changed while this prepare ran (another prepare of it?); nothing was "
                                f"replaced: run this one again once the other has finished")
            swap_in(staging, out_dir)
        return Prepared(meta, reused=False, tokenizer_seconds=tokenizer_seconds)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_the_same(inputs: list[dict]) -> list[tuple[str, str]]:
    """meta.json's "inputs" as their bytes and how they were read (a text file renamed .jsonl is read as documents)."""
    return [(record["sha256"], read_as(record["path"])) for record in inputs]


def _existing_dataset(out_dir: Path) -> dict | None:
    """None if out_dir is absent or empty, else its meta.json ({} when none reads); a DataError if it holds
    anything but a dataset's files: prepare replaces datasets, nothing else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"dataset folder {out_dir} is a file, not a folder; choose another --dataset")
    names = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    if foreign := sorted(names - DATASET_FILES):
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise DataError(f"{out_dir} holds files that are not a dataset's ({shown}); "
                        f"choose another --dataset (prepare only replaces a dataset folder)")
    if not names:
        return None
    try:
        return read_meta(out_dir)
    except DataError:
        return {}


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on folder for the with-block where the file system has one (the OS drops it however the
    process ends); where it has none (NFS without locks, ...), the caller's re-check alone."""
    with contextlib.ExitStack() as unlock:
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY)
            unlock.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield


def _folder_tokenizer(folder: Path, hint: str) -> Tokenizer:
    """The tokenizer of a prepared dataset (a model trained on it goes on with new text) or of a Hugging Face model
    folder (text tokenized as that model reads text); hint: the dataset of that name under data/, if any."""
    if from_dataset := is_dataset(folder):
        try:
            tokenizer = tokenizer_from_description(read_meta(folder).get("tokenizer"), folder / "meta.json")
        except DataError:
            raise DataError(f"{folder}/meta.json does not describe a tokenizer as a prepared dataset's does; give "
                            f"--tokenizer a dataset folder that data/prepare.py wrote, or a Hugging Face one") from None
    elif not any(path.name in HF_FILES or path.suffix in (".safetensors", ".bin", ".model")
                 for path in folder.iterdir()):  # one of them: its messages say what is missing
        raise DataError(f"--tokenizer={folder} is neither a prepared dataset's folder (no meta.json) nor a Hugging "
                        f"Face model's (no tokenizer or model files){hint}")
    else:
        tokenizer = tokenizer_from_hf_folder(folder)
    if tokenizer.eot_token is None:
        where = "" if from_dataset else f" (an eos_token in tokenizer_config.json, or a special {END_OF_TEXT})"
        raise DataError(f"{folder}'s tokenizer has no end-of-text token{where}, which ends each document here; "
                        f"give a tokenizer that has one, or use --tokenizer=bpe")
    return tokenizer


def _stamps(files: list[Path]) -> list[tuple[int, int]]:
    return [(stat.st_size, stat.st_mtime_ns) for stat in map(os.stat, files)]


def _bar(progress: bool, what: str, total: int | None = None):
    """A progress bar in MB and MB/s of text; without `progress` it shows nothing."""
    from tqdm import tqdm

    return tqdm(desc=what, total=total, unit="B", unit_scale=True, mininterval=0.5, disable=not progress)


def _build(files: list[Path], scan: CorpusScan, settings: dict, given: Tokenizer | None, staging: Path, workers: int,
           progress: bool) -> tuple[dict, float]:
    """Write train.bin, val.bin, meta.json (and bpe's rank file) into staging; the meta and the tokenizer's seconds."""
    plan = plan_split(scan.documents, scan.chars, settings["val_fraction"], settings["seed"])
    if plan.kind == "tail" and not 0 < plan.tail_start < scan.chars:  # a short text, a val_fraction near 0 or 1
        empty, change = ("training", "smaller") if plan.tail_start <= 0 else ("validation", "larger")
        raise DataError(f"val_fraction={settings['val_fraction']} leaves no {empty} text; give a {change} "
                        f"--val_fraction or more text")

    def labelled():  # each pass reads the inputs anew: nothing of the corpus is kept in memory
        return label_pieces(read_pieces(files, settings["text_field"]), plan, scan)

    start = time.perf_counter()
    tokenizer = given if given is not None else _make_tokenizer(settings, scan, labelled, progress)
    tokenizer_seconds = time.perf_counter() - start
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    splits = {name: TokenFile(staging / f"{name}.bin", dtype) for name in ("train", "val")}
    try:
        with _bar(progress, "encoding", scan.text_bytes) as bar:
            for encoded in encode_in_order(labelled(), tokenizer, workers):
                splits[encoded.split].append(encoded)
                bar.update(encoded.text_bytes)
    finally:
        for split in splits.values():
            split.file.close()  # swap_in flushes it to disk
    train, val = splits["train"], splits["val"]
    # the two files' digests, not their bytes one after the other: a split moved within the same text changes it
    fingerprint = hashlib.sha256(train.sha256.digest() + val.sha256.digest())
    meta = {"tokenizer": tokenizer.describe(), "vocab_size": tokenizer.vocab_size, "eot_token": tokenizer.eot_token,
            "dtype": train.dtype.name, "val_fraction": settings["val_fraction"], "split": plan.kind,
            "train_tokens": train.tokens, "val_tokens": val.tokens, "train_bytes": train.text_bytes,
            "val_bytes": val.text_bytes, "train_documents": train.documents, "val_documents": val.documents,
            "fingerprint": fingerprint.hexdigest(), "source_sha256": scan.source_sha256, "inputs": scan.inputs,
            "prepared_with": settings}
    if isinstance(tokenizer, BPETokenizer):
        write_atomically(staging / RANK_FILE, meta["tokenizer"]["ranks"].encode("ascii"))
        meta["tokenizer_file"] = RANK_FILE
    write_atomically(staging / "meta.json", json.dumps(meta, indent=2).encode())
    return meta, tokenizer_seconds


@dataclass(frozen=True)
class SplitPlan:
    """Which text is held out for validation: k = round(n * val_fraction) of the n documents, seeded, whole; with
    too few documents for k to reach 1, the last val_fraction of the text's characters. Never depends on workers."""
    kind: str  # "documents" or "tail"
    val_documents: np.ndarray | None  # (n,) bool: True for a validation document; None: the tail
    tail_start: int  # the first character of the validation tail (when val_documents is None)


def plan_split(documents: int, chars: int, val_fraction: float, seed: int) -> SplitPlan:
    # round half up, of the fraction as written (0.7, not the float just under it); keep one for training
    k = min(math.floor(documents * Fraction(repr(float(val_fraction))) + Fraction(1, 2)), documents - 1)
    if k < 1:
        return SplitPlan("tail", None, int(chars * (1 - val_fraction)))
    val = np.zeros(documents, dtype=bool)
    val[np.random.default_rng(seed).choice(documents, size=k, replace=False)] = True
    return SplitPlan("documents", val, 0)


CHANGED = ("an input changed while it was being prepared (its text is not what the first pass read and hashed); "
           "prepare again once the inputs are complete")


def label_pieces(pieces: Iterable[Piece], plan: SplitPlan, scan: CorpusScan) -> Iterator[tuple[str, Piece]]:
    """Each piece with its split ("train" or "val"), the tail's first piece cut where the tail starts. More or fewer
    documents or characters than the scan counted (a log still growing) are refused; a change that keeps the counts
    is caught after the passes, by the files' sizes and times."""
    document, position = 0, 0  # index of the current document, characters before the piece
    for piece in pieces:
        if document >= scan.documents or position + len(piece.text) > scan.chars:
            raise DataError(CHANGED)
        if plan.val_documents is not None:
            yield ("val" if plan.val_documents[document] else "train"), piece
        else:
            cut = min(max(plan.tail_start - position, 0), len(piece.text))
            if cut > 0:
                yield "train", Piece(piece.text[:cut], piece.ends_document and cut == len(piece.text))
            if cut < len(piece.text):
                yield "val", Piece(piece.text[cut:], piece.ends_document)
        position += len(piece.text)
        document += piece.ends_document
    if (document, position) != (scan.documents, scan.chars):
        raise DataError(CHANGED)


def _make_tokenizer(settings: dict, scan: CorpusScan, labelled: Callable, progress: bool) -> Tokenizer:
    if settings["tokenizer"] == "char":
        return CharTokenizer(scan.alphabet, end_of_text=True)
    if settings["tokenizer"] == "gpt2":
        return GPT2Tokenizer()
    with _bar(progress, "training BPE") as bar:
        def training_text():  # the training split only: the validation text stays unseen
            for split, piece in labelled():
                if split == "train":
                    bar.update(len(piece.text.encode("utf-8")))
                    yield piece.text
        return train_bpe(training_text(), settings["vocab_size"])


@dataclass
class Encoded:
    split: str
    ids: np.ndarray  # the piece's token ids, then end-of-text if it ends its document
    text_bytes: int  # UTF-8 bytes of the piece
    ends_document: bool


def encode_in_order(labelled: Iterable[tuple[str, Piece]], tokenizer: Tokenizer, workers: int) -> Iterator[Encoded]:
    """Every piece encoded, in order (the files never depend on workers), by `workers` threads (0: one per usable
    core): tiktoken releases the GIL and the char tokenizer is a numpy lookup. Batches in flight are bounded."""
    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    in_flight, pool = deque(), ThreadPoolExecutor(workers)
    try:
        for batch in _batches(labelled):
            in_flight.append(pool.submit(_encode_batch, tokenizer, batch))
            if len(in_flight) > 2 * workers:  # keep every worker busy, and no more in memory
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()
    finally:  # stopped early (an error, Ctrl-C): drop what has not started, wait for what has
        pool.shutdown(cancel_futures=True)


def _batches(labelled: Iterable[tuple[str, Piece]]) -> Iterator[list[tuple[str, Piece]]]:
    batch, chars = [], 0
    for item in labelled:
        batch.append(item)
        chars += len(item[1].text)
        if chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _encode_batch(tokenizer: Tokenizer, batch: list[tuple[str, Piece]]) -> list[Encoded]:
    encoded = []
    for split, piece in batch:
        ids = tokenizer.encode_array(piece.text)
        if piece.ends_document:
            ids = np.append(ids, np.uint32(tokenizer.eot_token))
        encoded.append(Encoded(split, ids, len(piece.text.encode("utf-8")), piece.ends_document))
    return encoded


class TokenFile:
    """One split's .bin file, appended to as pieces come, hashed as it is written."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype, self.sha256 = path, np.dtype(dtype), hashlib.sha256()
        self.tokens = self.text_bytes = self.documents = 0
        self.file = open(path, "wb")

    def append(self, piece: Encoded) -> None:
        payload = piece.ids.astype(self.dtype, copy=False).tobytes()
        self.file.write(payload)
        self.sha256.update(payload)
        self.tokens += piece.ids.size
        self.text_bytes += piece.text_bytes
        self.documents += piece.ends_document

