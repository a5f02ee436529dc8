"""Files and folders that are written whole or not at all. A folder (a dataset, an exported model) is built
in a staging folder beside the target (`.NAME.PURPOSE-PID`), then swapped in (on Linux one atomic renameat2
RENAME_EXCHANGE, elsewhere two renames): an interrupted or failed build leaves the old folder as it was; a
crash leaves at worst a staging folder, which nothing reads and the next build removes once its process is gone."""

import ctypes
import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import DataError


def write_atomically(path: Path, payload: bytes | Callable[[BinaryIO], object]) -> None:
    """Write a temporary file beside path, fsync, rename it over path: a reader (or a crash) sees the old file or
    the new one, never a part. `payload`: the bytes, or a function writing them to the open file (as torch.save)."""
    path.parent.mkdir(parents=True, exist_ok=True)  # an output's new folder (config/outputs.py checked it)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # no other process writes this name
    try:
        with open(tmp, "wb") as f:
            if callable(payload):
                payload(f)
            else:
                f.write(payload)
        flush(tmp)
        os.replace(tmp, path)
        flush(path.parent)  # make the rename itself durable
    finally:
        tmp.unlink(missing_ok=True)


def flush(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries (new names, renames), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_dead_staging(out_dir: Path, purpose: str = "prepare") -> None:
    """Remove the staging folders beside out_dir of processes that are gone (killed mid-build, or after a swap)."""
    target = out_dir.resolve()
    for folder in target.parent.glob(f".{target.name}.{purpose}-*"):
        pid = folder.name.rpartition("-")[2].split(".")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # no signal: only whether the process exists
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's process, alive
            pass


def make_staging_folder(out_dir: Path, flag: str = "dataset", purpose: str = "prepare") -> Path:
    """A new, empty folder beside out_dir for this process, once the stale ones of dead processes are gone;
    a DataError naming `--flag` and the true cause if out_dir's parent cannot hold it."""
    target = out_dir.resolve()  # a link to a folder: beside the folder, which swap_in replaces
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_dead_staging(target, purpose)
        staging = parent / f".{target.name}.{purpose}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [parent, *parent.parents] if p.exists() and not p.is_dir()), parent)
        raise DataError(f"cannot create {flag} {out_dir}: {blocker} is a file, not a folder; "
                        f"choose another --{flag}") from None
    except OSError as e:
        raise DataError(f"cannot write beside {flag} {out_dir} ({e.strerror}); choose another --{flag}") from None
    return staging


def swap_in(staging: Path, out_dir: Path) -> None:
    """Put the finished folder in staging at out_dir (where a link to a folder leads) in one step, its files
    flushed to disk first, so a crash after it leaves the new folder whole; the old one is removed after."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and not os.access(out_dir, os.W_OK | os.X_OK):  # the old folder's files could not go
        raise DataError(f"cannot replace {out_dir}: its files cannot be removed (permission denied); make it "
                        f"writable (chmod u+w), or choose another folder")
    for path in [*staging.rglob("*"), staging]:
        flush(path)
    if not out_dir.exists():
        os.rename(staging, out_dir)
    elif _exchange(staging, out_dir):
        shutil.rmtree(staging)  # it now holds the old folder
    else:  # no atomic exchange here: for a moment there is no folder, never a mixed one
        old = staging.with_name(staging.name + ".old")
        os.rename(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old)
    flush(out_dir.parent)


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
