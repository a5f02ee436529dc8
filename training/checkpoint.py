"""A run's checkpoints and its folder: what resuming a run needs, in both formats, and out_dir for one run at a time.

ckpt.pt (the latest) and best.pt are torch.save files of plain tensors, numbers and strings, loaded with
weights_only=True; checkpoint_format=safetensors writes ckpt/best.safetensors (no pickle at all): each tensor
in the tensor table under its path in the checkpoint ("optimizer.adamw.state.0.exp_avg"), the rest as JSON in
the metadata with {"$tensor": name} in its place, a tied head once, and a CRC-32 of it all (torch.save's files
record theirs). A folder never holds both formats.
A run flocks out_dir/.lock for its whole life: the OS drops the lock however the process ends.
"""

import dataclasses
import fcntl
import json
import math
import os
import pickle
import shlex
import sys
import textwrap
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from config.errors import UserError
from config.outputs import check_output, check_replaceable
from config.settings import TrainConfig
from data.dataset import Dataset, dataset_identity, is_dataset
from data.files import write_atomically
from data.loader import BatchLoader
from model import GPT, GPTConfig

from .distributed import Ranks
from .optimizer import Optimizers

MODEL_KEYS = ("model", "model_args", "tokenizer")  # enough to sample
CHECKPOINT_SUFFIXES = (".pt", ".safetensors")  # checkpoint_format=pt or safetensors


def existing_checkpoint(path: Path) -> Path:
    """path, or the same checkpoint in the other format when only that one exists (best.safetensors for
    best.pt). Both formats at once cannot be told apart safely: refused, naming the newer file."""
    if path.suffix not in CHECKPOINT_SUFFIXES:
        return path
    found = [path.with_suffix(s) for s in CHECKPOINT_SUFFIXES if path.with_suffix(s).is_file()]
    if len(found) > 1:
        older, newer = sorted(found, key=lambda p: p.stat().st_mtime_ns)
        raise UserError(f"{path.parent} holds {older.name} and {newer.name}, the same checkpoint in two formats; "
                        f"{newer.name} is the newer: remove {older.name} and run again")
    return found[0] if found else path


def resume_instead(latest: Path) -> str:
    """What to do instead of resuming a run's latest checkpoint that is missing or cannot be read."""
    best = existing_checkpoint(latest.with_stem("best"))
    if best.is_file():  # a whole checkpoint too, of the best evaluation
        return (f"{latest.parent} holds {best.name}, of the run's best evaluation: copy it to ckpt{best.suffix} to "
                f"resume from there, or start a new --out_dir")
    return "start the run afresh (--init_from=scratch --replace_run=true), or in a new --out_dir"


def load_checkpoint(path: Path, device: str | torch.device = "cpu", required: tuple[str, ...] = MODEL_KEYS,
                    instead: str = "use another one") -> dict:
    """Load a checkpoint: a .safetensors file, or torch.save's with weights_only=True (pickled code is refused).
    instead: what to do when it is damaged."""
    path = existing_checkpoint(path)
    if not path.is_file():
        if path.parent.is_file():  # the checkpoint itself, given as the run's folder
            raise UserError(f"out_dir={path.parent} is a file, not a run's folder; give --out_dir={path.parent.parent}")
        if is_dataset(path.parent):
            folder = str(path.parent) if "/" in str(path.parent) else f"./{path.parent}"  # a bare name means data/NAME
            raise UserError(f"out_dir={path.parent} is a dataset's folder, not a run's; give the out_dir of a run "
                            f"(python train.py {shlex.quote(f'--dataset={folder}')} --out_dir=DIR trains one)")
        if path.exists():  # a folder, a device: nothing torch.save or safetensors wrote
            raise UserError(f"checkpoint {path} is not a file; move it away, or give the out_dir of a run")
        flag = shlex.quote(f"--out_dir={path.parent}")
        if holder := live_holder(path.parent / LOCK_NAME):
            raise UserError(f"checkpoint {path} not found yet: the run in {path.parent} is still training ({holder}), "
                            f"and saves its checkpoints at its evaluations; try again after one")
        if stopped_before_checkpoint(path.parent):
            raise UserError(f"checkpoint {path} not found: the run in {path.parent} stopped before its first "
                            f"checkpoint; train it again with python train.py (and the same config files) {flag} "
                            f"--replace_run=true")
        raise UserError(f"checkpoint {path} not found; train one with python train.py (and the same config files) "
                        f"{flag}")
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        # torch.save writes a zip archive; safetensors, its header's length and then its JSON
        kind = ".pt" if head[:4] == b"PK\x03\x04" else ".safetensors" if head[8:] == b"{" else None
        named = path.suffix if path.suffix in CHECKPOINT_SUFFIXES else kind  # another name (best.pt.bak): as it holds
        if kind is not None and kind != named:  # renamed to the other format's name
            raise UserError(f"{path} is a {kind} checkpoint under a {path.suffix} name; rename it to "
                            f"{path.with_suffix(kind).name}")
        if named == ".safetensors":
            checkpoint = from_safetensors(path, device)
        elif kind is None:
            raise UserError(f"{path} is not a checkpoint (not a file torch.save wrote); use one written by train.py")
        else:
            with zipfile.ZipFile(path) as archive:  # torch.save records a CRC per entry; torch.load checks none
                if (changed := archive.testzip()) is not None:
                    raise ValueError(f"{changed} fails its CRC check")
            checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"checkpoint {path} holds pickled objects or code and was not loaded; "
                        f"use a checkpoint written by train.py") from None
    except PermissionError:  # not damage: run_cli names the path this user may not read
        raise
    # ValueError: safetensors'; LookupError, TypeError, AttributeError, AssertionError: torch's weights-only
    # unpickler on bytes changed in place (a pickle that still parses, of records that no longer fit together)
    except (RuntimeError, EOFError, OSError, ValueError, LookupError, TypeError, AttributeError, AssertionError,
            zipfile.BadZipFile, zlib.error) as e:  # zlib's: an entry's compression method changed to deflate
        reason = textwrap.shorten(f"{type(e).__name__}: {e}".splitlines()[0], 120, placeholder=" ...")
        raise UserError(f"checkpoint {path} is damaged or truncated ({reason}); {instead}") from None
    if missing := [key for key in required if not isinstance(checkpoint, dict) or key not in checkpoint]:
        raise UserError(f"{path} is not a checkpoint of this project (no {', '.join(missing)}); "
                        f"use one written by train.py")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, path: Path, instead: str = "use another one") -> GPT:
    """Rebuild the GPT a checkpoint describes and load its weights (instead: what to do when they do not fit)."""
    try:
        model = GPT(GPTConfig(**checkpoint["model_args"]))
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, ValueError) as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[:3])[:200]  # torch's reason is on line 2
        raise UserError(f"checkpoint {path} does not match the model it describes ({detail}); {instead}") from None
    return model


@dataclasses.dataclass
class Progress:
    """Where a run stands, carried across resumes."""

    step: int = 0  # optimizer steps done
    best_val_loss: float = math.inf
    tokens: int = 0  # training tokens seen
    elapsed_s: float = 0.0  # seconds spent training, evaluation included, over every resume
    evaluation_owed: float | None = None  # the lr of `step`, whose evaluation a stop cut short: a resume makes it
    _ticked: float = dataclasses.field(default_factory=time.perf_counter, init=False, repr=False)

    def tick(self) -> None:
        """Add the wall time since the last tick (or since this run began) to elapsed_s."""
        now = time.perf_counter()
        self.elapsed_s, self._ticked = self.elapsed_s + now - self._ticked, now


RESUME_KEYS = MODEL_KEYS + ("optimizer", "scaler", "config", "iter_num", "best_val_loss", "tokens_seen", "elapsed_s",
                            "rng", "loader", "dataset")


def checkpoint_payload(model: GPT, optimizers: Optimizers, scaler: torch.amp.GradScaler, cfg: TrainConfig,
                       dataset: Dataset, progress: Progress, loader: BatchLoader, plan: dict | None = None) -> dict:
    """Everything a checkpoint holds. "dataset" names the data trained on, for resume to check; plan, a
    time budget's (training/budget.py), is what a resume follows instead of planning again."""
    identity = dataset_identity(dataset)
    return {
        "model": model.state_dict(),  # the plain module: no compile or DDP prefixes
        "optimizer": optimizers.state_dict(),  # {"adamw": ..., "muon": ...}
        "scaler": scaler.state_dict(),  # float16's loss scale (empty otherwise)
        "config": dataclasses.asdict(cfg),
        "model_args": dataclasses.asdict(model.config),
        "tokenizer": identity["tokenizer"],
        "dataset": {"folder": cfg.dataset, **identity},
        "iter_num": progress.step,
        "best_val_loss": progress.best_val_loss,
        "tokens_seen": progress.tokens,
        "elapsed_s": progress.elapsed_s,
        "rng": {"torch": torch.get_rng_state(),
                **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})},
        "loader": loader.state_dict(),
        **({"plan": plan} if plan is not None else {}),
        **({"evaluation_owed": progress.evaluation_owed} if progress.evaluation_owed is not None else {}),
    }


def restore_training_state(checkpoint: dict, optimizers: Optimizers, scaler: torch.amp.GradScaler,
                           loader: BatchLoader, ranks: Ranks, seed: int, new_data: bool = False) -> Progress:
    """Put the optimizers, data position and random generators back where the checkpoint left them. Other
    ranks than the main reseed from the step (a resume may change the world size); new data starts its walk
    afresh and forgets the best val loss, measured on other data."""
    optimizers.load_state_dict(checkpoint["optimizer"])
    if checkpoint["scaler"]:  # empty: saved without float16, and a float16 resume starts a loss scale afresh
        scaler.load_state_dict(checkpoint["scaler"])
    if not new_data:
        loader.load_state_dict(checkpoint["loader"])
    if ranks.is_main:
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if "cuda" in checkpoint["rng"] and torch.cuda.is_available():  # not when it was saved without a GPU
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    else:
        ranks.seed(seed, checkpoint["iter_num"])
    best_val_loss = math.inf if new_data else checkpoint["best_val_loss"]
    return Progress(checkpoint["iter_num"], best_val_loss, checkpoint["tokens_seen"], checkpoint["elapsed_s"],
                    checkpoint.get("evaluation_owed"))  # there only when owed, as "plan" only with a plan


METADATA_KEY, CRC_KEY = "smallgpt_checkpoint", "smallgpt_crc32"
TENSOR, ITEMS, TUPLE = "$tensor", "$items", "$tuple"  # markers of what JSON has no word for


def _pack(value, path: str, tensors: dict[str, torch.Tensor], stored: dict[tuple, str]):
    if isinstance(value, torch.Tensor):
        memory = (value.device, value.data_ptr(), value.dtype, value.shape, value.stride())
        if memory not in stored or not value.numel():  # a tied head once; empty tensors share no memory
            tensors[path], stored[memory] = value.detach().cpu().contiguous(), path  # one copy off a GPU
        return {TENSOR: stored[memory]}
    if isinstance(value, dict):  # JSON's keys are strings: a dict of other keys (the optimizer state's) goes as pairs
        packed = {key: _pack(item, f"{path}.{key}", tensors, stored) for key, item in value.items()}
        return packed if all(isinstance(key, str) for key in packed) else {ITEMS: list(packed.items())}
    if isinstance(value, (list, tuple)):
        items = [_pack(item, f"{path}.{i}", tensors, stored) for i, item in enumerate(value)]
        return {TUPLE: items} if isinstance(value, tuple) else items
    return value  # str, int, float (inf and nan included), bool, None


def _unpack(value: dict, tensors: dict[str, torch.Tensor]):
    """json.loads' object_hook: a JSON object back to what _pack made it from (json has unpacked its contents)."""
    for marker, rebuild in ((TENSOR, tensors.__getitem__), (ITEMS, dict), (TUPLE, tuple)):
        if marker in value:
            return rebuild(value[marker])
    return value


def checksum(skeleton: str, tensors: dict[str, torch.Tensor]) -> str:
    """CRC-32 of the skeleton and every tensor's name, dtype, shape and bytes in name order: safetensors keeps no
    checksum of its own."""
    crc = zlib.crc32(skeleton.encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        crc = zlib.crc32(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode(), crc)
        crc = zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy(), crc)
    return str(crc)


def to_safetensors(checkpoint: dict) -> bytes:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.dumps({key: _pack(value, key, tensors, {}) for key, value in checkpoint.items()})
    return safetensors.torch.save(tensors, metadata={"format": "pt", METADATA_KEY: skeleton,
                                                     CRC_KEY: checksum(skeleton, tensors)})


def from_safetensors(path: Path, device: str | torch.device = "cpu") -> dict | None:
    """The checkpoint in a safetensors file, or None for a safetensors file that holds no checkpoint
    (an exported model.safetensors). A damaged file raises ValueError."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:  # checked here, then moved
            metadata = f.metadata() or {}
            if (skeleton := metadata.get(METADATA_KEY)) is None:
                return None
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        # a checkpoint written before checkpoints carried a checksum holds exactly these two keys: it loads as it is
        if metadata.keys() != {"format", METADATA_KEY} and checksum(skeleton, tensors) != metadata.get(CRC_KEY):
            raise ValueError("it fails its CRC check")
        tensors = {name: tensor.to(device) for name, tensor in tensors.items()}
        return json.loads(skeleton, object_hook=lambda value: _unpack(value, tensors))
    except (SafetensorError, KeyError) as e:
        raise ValueError(f"not a whole safetensors file: {e}") from None


def checkpoint_path(out_dir: Path, stem: str, checkpoint_format: str) -> Path:
    """out_dir/ckpt.pt (the latest) or best.pt; ckpt.safetensors or best.safetensors for that format."""
    return out_dir / f"{stem}.{checkpoint_format}"


def save_checkpoint(state: dict, path: Path) -> None:
    """Write path whole or not at all (data/files.py), as safetensors for a .safetensors path; then remove the
    same checkpoint in the other format (a resume that switched checkpoint_format): never two that disagree."""
    try:
        write_atomically(path, to_safetensors(state) if path.suffix == ".safetensors"
                         else lambda f: torch.save(state, f))
        for other in set(CHECKPOINT_SUFFIXES) - {path.suffix}:
            path.with_suffix(other).unlink(missing_ok=True)
    except (OSError, RuntimeError) as e:  # torch.save reports some write failures as RuntimeError
        reason = e.strerror if isinstance(e, OSError) else "the file could not be written in full"
        fix = "check out_dir's permissions" if isinstance(e, PermissionError) else "free disk space"
        raise UserError(f"could not write checkpoint {path} ({reason}); {fix} or change out_dir") from None


LOCK_NAME = ".lock"
CHECKPOINT_FILES = ("ckpt.pt", "best.pt", "ckpt.safetensors", "best.safetensors")
RUN_FILES = CHECKPOINT_FILES + ("log.jsonl", "loss.png", "attention.png")  # what a run writes there


class OutDir:
    """out_dir, claimed by this process: another run is refused until release (or this process's end)."""

    def __init__(self, folder: Path, lock_fd: int, lock_created: bool, folders_created: list[Path]):
        self.folder, self._lock_fd, self._lock_created = folder, lock_fd, lock_created
        self._folders_created = folders_created  # deepest first
        self._previous_record = os.pread(lock_fd, os.fstat(lock_fd).st_size, 0)
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"pid {os.getpid()}: {shlex.join(sys.argv)}\n".encode(), 0)

    def begin(self, replace_earlier_run: bool) -> None:
        """About to write: remove killed runs' half-written files and, with replace_run, the earlier run's files."""
        for name in RUN_FILES:
            for stale in self.folder.glob(f".{name}.*.tmp"):  # .ckpt.pt.PID.tmp: under the lock, no live run's
                stale.unlink(missing_ok=True)
        removed = [name for name in RUN_FILES if replace_earlier_run and (self.folder / name).is_file()]
        for name in removed:
            (self.folder / name).unlink()
        if removed:
            print(f"replace_run: removed the earlier run's {', '.join(removed)} from {self.folder}")

    def abandon(self) -> None:
        """The run failed before it began: leave out_dir as it was found (no new folder, the same .lock)."""
        if self._lock_created:
            (self.folder / LOCK_NAME).unlink()  # safe while locked: take_lock checks the file it locked is still there
        else:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, self._previous_record, 0)
        self.release()
        for folder in self._folders_created:
            if any(folder.iterdir()):
                break
            folder.rmdir()

    def release(self) -> None:
        os.close(self._lock_fd)  # closing the descriptor drops the flock


def claim_out_dir(cfg: TrainConfig, drawn: Callable[[Path], bool]) -> OutDir:
    """Check, lock and decide, in an order that leaves a refused run's folder untouched: until the set-up is done,
    all it writes is its process id into .lock (and out_dir and .lock where missing), undone if the set-up fails.
    drawn: whether a picture there is one the run drew (train.py checks its mark); any other is the user's."""
    folder = check_output(cfg.out_dir, "out_dir", folder=True)
    lock = take_lock(folder / LOCK_NAME, create=False)  # an earlier run's lock file: is that run alive?
    try:
        check_start(folder, cfg, drawn)
    except UserError:
        if lock is not None:
            os.close(lock[0])
        raise
    folders_created = [p for p in (folder.absolute(), *folder.absolute().parents) if not p.exists()]  # none if locked
    if lock is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = take_lock(folder / LOCK_NAME, create=True)
        except OSError as e:
            raise UserError(f"out_dir {folder} cannot be written ({e.strerror}); choose another --out_dir") from None
    return OutDir(folder, *lock, folders_created)


def holder_record(fd: int) -> str:
    """What the run holding a lock file wrote in it: its process id and command."""
    return os.pread(fd, 300, 0).decode(errors="replace").strip()[:200] or "its process id is not recorded"


def live_holder(path: Path) -> str | None:
    """The record of the live run that holds the lock file at path, or None where no run holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted at once unless a run holds it
        return None
    except BlockingIOError:
        return holder_record(fd)
    except OSError:  # a file system without locks: no run can hold one there
        return None
    finally:
        os.close(fd)  # and the shared lock, if it was granted, with it


def take_lock(path: Path, create: bool) -> tuple[int, bool] | None:
    """The locked descriptor of path (never truncated: it holds the holder's record) and whether this call
    created it; None when it does not exist and create is false. A live holder is refused by name."""
    while True:
        fd = None
        try:
            try:
                fd, created = os.open(path, os.O_RDWR), False
            except FileNotFoundError:
                if not create:
                    return None
                fd, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileExistsError:  # another run made it between our two opens: open that one
            continue
        except BlockingIOError:  # a live holder: it writes its record just after locking, so wait a moment for it
            deadline = time.monotonic() + 1.0
            while not os.pread(fd, 1, 0) and time.monotonic() < deadline:
                time.sleep(0.02)
            holder = holder_record(fd)
            os.close(fd)
            raise UserError(f"out_dir {path.parent} is in use by another run ({holder}); wait for it to end, "
                            f"or choose another --out_dir") from None
        except OSError as e:  # another user's lock file, a file system without locks, ...
            if fd is not None:
                os.close(fd)
            raise UserError(f"out_dir {path.parent} cannot be locked ({e.strerror}); "
                            f"choose another --out_dir") from None
        if path.exists() and os.path.samestat(os.fstat(fd), path.stat()):
            return fd, created
        os.close(fd)  # a run that gave up removed this file between our open and our lock


def stopped_before_checkpoint(folder: Path) -> bool:
    """Whether folder holds a run that logged steps but stopped before its first checkpoint."""
    log = folder / "log.jsonl"
    return log.is_file() and log.stat().st_size > 0 and not any((folder / n).is_file() for n in CHECKPOINT_FILES)


def check_start(folder: Path, cfg: TrainConfig, drawn: Callable[[Path], bool]) -> None:
    """Resume needs a checkpoint; a fresh start must not bury an earlier run (unless --replace_run=true): its
    checkpoints, or the log of one stopped before its first; no folder stands where the run writes a file."""
    if folders := [name for name in RUN_FILES if (folder / name).is_dir()]:
        raise UserError(f"out_dir {folder} holds a folder named {folders[0]}, where the run writes a file of that "
                        f"name; move it away or choose another --out_dir")
    for picture in ("loss.png", "attention.png"):  # redrawn by the run: never a link, nor a picture of the user's
        check_replaceable(folder / picture, "out_dir", "a picture train.py", drawn)
    latest = existing_checkpoint(checkpoint_path(folder, "ckpt", cfg.checkpoint_format))  # ckpt.pt or .safetensors
    if cfg.init_from == "resume" and not latest.is_file():
        if existing_checkpoint(latest.with_stem("best")).is_file():
            raise UserError(f"checkpoint {latest} not found; {resume_instead(latest)}")
        if stopped_before_checkpoint(folder):
            raise UserError(f"checkpoint {latest} not found: the run in {folder} stopped before its first checkpoint, "
                            f"so there is nothing to resume; start it again as it began (--init_from=scratch, or the "
                            f"model it fine-tuned) with --replace_run=true")
        raise UserError(f"checkpoint {latest} not found, so there is nothing to resume; "
                        f"start with --init_from=scratch, or point --out_dir at the run to resume")
    earlier = [n for n in CHECKPOINT_FILES if (folder / n).is_file()]  # best.pt too
    if not earlier and stopped_before_checkpoint(folder):
        earlier = ["log.jsonl"]
    if cfg.init_from != "resume" and earlier and not cfg.replace_run:
        resume = "continue it with --init_from=resume, " if latest.is_file() else ""
        raise UserError(f"out_dir {folder} holds an earlier run ({', '.join(earlier)}); {resume}start this one "
                        f"in a new --out_dir, or replace it with --replace_run=true")
