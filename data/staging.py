"""A folder (a dataset, an exported model) is replaced whole or not at all: it is built in a staging
folder beside the target (`.NAME.prepare-PID`), then swapped in (on Linux one atomic renameat2
RENAME_EXCHANGE, elsewhere two renames). An interrupted or failed prepare leaves the old dataset as it
was; a crash leaves at worst a staging folder, which train.py never reads and the next prepare removes
once its process is gone.
"""

import ctypes
import errno
import json
import os
import shutil
from pathlib import Path

from .errors import DataError
from .files import fsync_folder

DATASET_FILES = {"train.bin", "val.bin", "meta.json", "tokenizer.tiktoken"}


def existing_dataset(out_dir: Path) -> dict | None:
    """What out_dir holds now: None if nothing (absent or an empty folder), else its meta.json
    ({} when it has none that reads). A file, or a folder holding anything but a dataset's
    files, is a DataError: prepare replaces datasets, nothing else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"dataset folder {out_dir} is a file, not a folder; choose another --dataset")
    if not out_dir.is_dir():
        return None
    names = {p.name for p in out_dir.iterdir()}
    foreign = sorted(names - DATASET_FILES)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise DataError(f"{out_dir} holds files that are not a dataset's ({shown}); "
                        f"choose another --dataset (prepare only replaces a dataset folder)")
    if not names:
        return None
    try:
        meta = json.loads((out_dir / "meta.json").read_text())
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def make_staging_folder(out_dir: Path, flag: str = "dataset", purpose: str = "prepare") -> Path:
    """A new, empty folder beside out_dir for this process (`.NAME.PURPOSE-PID`), once the stale ones
    of dead processes are gone; a DataError naming `--flag` and the true cause if out_dir's parent
    cannot hold it."""
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(out_dir, purpose)
        staging = parent / f".{out_dir.name}.{purpose}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [parent, *parent.parents] if p.exists() and not p.is_dir()), parent)
        raise DataError(f"cannot create {flag} {out_dir}: {blocker} is a file, not a folder; "
                        f"choose another --{flag}") from None
    except OSError as e:
        raise DataError(f"cannot write beside {flag} {out_dir} ({e.strerror}); choose another --{flag}") from None
    return staging


def _remove_stale(out_dir: Path, purpose: str) -> None:
    for folder in out_dir.parent.glob(f".{out_dir.name}.{purpose}-*"):
        pid = folder.name.rpartition("-")[2].split(".")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # no signal: only whether the process exists
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's process, alive
            pass


def swap_in(staging: Path, out_dir: Path) -> None:
    """Put the finished folder in staging at out_dir in one step; the old one is removed after."""
    fsync_folder(staging)
    if not out_dir.exists():
        os.rename(staging, out_dir)
    elif _exchange(staging, out_dir):
        shutil.rmtree(staging)  # it now holds the old folder
    else:  # no atomic exchange here: for a moment there is no folder, never a mixed one
        old = staging.with_name(staging.name + ".old")
        os.rename(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old)
    fsync_folder(out_dir.parent)


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(a, b, RENAME_EXCHANGE); False where the system or filesystem lacks it."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))
