"""The run's output folder (checkpoints, log.jsonl, pictures), held by one run at a time.

A run holds an OS lock (flock) on out_dir/.lock for its whole life. The OS drops
the lock when the process ends, however it ends, so a run that died never blocks
the next one; the file's text only names the process holding it. Whether the run
may start there (resume needs a checkpoint; a fresh start must not bury one) is
decided before anything in the folder is written, and a run whose set-up fails
puts the folder back as it found it.
"""
from __future__ import annotations

import fcntl
import os
import shlex
import sys
import time
from pathlib import Path

from config.errors import UserError
from cli.loading import existing_checkpoint
from config.outputs import check_output
from config.settings import TrainConfig

from .checkpoint import checkpoint_path

LOCK_NAME = ".lock"
RUN_FILES = ("ckpt.pt", "best.pt", "ckpt.safetensors", "best.safetensors", "log.jsonl", "loss.png",
             "attention.png")  # what a run writes there


class OutDir:
    """out_dir, claimed by this process: another run is refused until release (or this process's end)."""

    def __init__(self, folder: Path, lock_fd: int, lock_created: bool, folders_created: list[Path]):
        self.folder = folder
        self._lock_fd = lock_fd
        self._lock_created = lock_created
        self._folders_created = folders_created  # deepest first
        self._previous_record = os.pread(lock_fd, os.fstat(lock_fd).st_size, 0)
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"pid {os.getpid()}: {shlex.join(sys.argv)}\n".encode(), 0)

    def begin(self, replace_earlier_run: bool) -> None:
        """The run is set up and about to write: remove what killed runs left half-written and,
        for --replace_run=true, the earlier run's files."""
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


def claim_out_dir(cfg: TrainConfig) -> OutDir:
    """Check, lock and decide, in an order that leaves a refused run's folder untouched.

    Until the run's set-up is done, all it writes is its process id into .lock
    (and out_dir and .lock themselves where missing), undone if the set-up fails."""
    folder = check_output(cfg.out_dir, "out_dir", folder=True)
    lock = take_lock(folder / LOCK_NAME, create=False)  # an earlier run's lock file: is that run alive?
    try:
        check_start(folder, cfg)
    except UserError:
        if lock is not None:
            os.close(lock[0])
        raise
    folders_created = []
    if lock is None:
        folders_created = [p for p in (folder.absolute(), *folder.absolute().parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = take_lock(folder / LOCK_NAME, create=True)
        except OSError as e:
            raise UserError(f"out_dir {folder} cannot be written ({e.strerror}); choose another --out_dir") from None
    return OutDir(folder, *lock, folders_created)


def take_lock(path: Path, create: bool) -> tuple[int, bool] | None:
    """The locked descriptor of path and whether this call created the file; None when
    it does not exist and create is false. A live holder is a one-line refusal naming it."""
    while True:
        try:
            fd, created = open_lock_file(path, create)
        except FileNotFoundError:
            return None
        except FileExistsError:  # another run made it between our two opens: open that one
            continue
        except OSError as e:  # another user's lock file, ...
            raise UserError(f"out_dir {path.parent} cannot be locked ({e.strerror}); choose another --out_dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(fd)
            os.close(fd)
            raise UserError(f"out_dir {path.parent} is in use by another run ({holder}); wait for it to end, "
                            f"or choose another --out_dir") from None
        except OSError as e:  # a file system without locks
            os.close(fd)
            raise UserError(f"out_dir {path.parent} cannot be locked ({e.strerror}); choose another --out_dir") from None
        if path.exists() and os.path.samestat(os.fstat(fd), path.stat()):
            return fd, created
        os.close(fd)  # a run that gave up removed this file between our open and our lock


def open_lock_file(path: Path, create: bool) -> tuple[int, bool]:
    """path opened for reading and writing, never truncated (it holds the holder's record),
    and whether this call created it; it is created only where missing and create is true."""
    try:
        return os.open(path, os.O_RDWR), False
    except FileNotFoundError:
        if not create:
            raise
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True


def lock_holder(fd: int, wait_s: float = 1.0) -> str:
    """What the holding process wrote into the lock file; it writes that just after locking, so wait a moment."""
    deadline = time.monotonic() + wait_s
    while True:
        record = os.pread(fd, 300, 0).decode(errors="replace").strip()
        if record or time.monotonic() > deadline:
            return record[:200] or "its process id is not recorded"
        time.sleep(0.02)


def check_start(folder: Path, cfg: TrainConfig) -> None:
    """Resume needs a checkpoint; a fresh start must not bury one (unless --replace_run=true)."""
    latest = existing_checkpoint(checkpoint_path(folder, "ckpt", cfg.checkpoint_format))  # ckpt.pt or .safetensors
    has_checkpoint = latest.is_file()
    if cfg.init_from == "resume" and not has_checkpoint:
        raise UserError(f"checkpoint {latest} not found, so there is nothing to resume; "
                        f"start with --init_from=scratch, or point --out_dir at the run to resume")
    if cfg.init_from != "resume" and has_checkpoint and not cfg.replace_run:
        raise UserError(f"out_dir {folder} holds an earlier run ({latest.name}); continue it with --init_from=resume, "
                        f"start this one in a new --out_dir, or replace it with --replace_run=true")
