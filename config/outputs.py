"""Paths a command will write, checked before any work: the right kind, outside datasets, writable here."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from data.dataset import is_dataset

from .errors import UserError


def same_place(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file or folder, links followed (realpath: a loop of links is no error here)."""
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str | Path, key: str, *, folder: bool) -> Path:
    """Refuse, with the true cause, an output path this command could not write; writes nothing that stays.
    key: the setting that named the path (out_dir, hf_dir, surprise), which the message says to change.
    folder: the command writes files into path; else it writes path itself, as a file."""
    wanted, fix = ("folder" if folder else "file"), f"choose another --{key}"
    if not str(path).strip():  # Path("") is the current folder: an unset shell variable would write there
        raise UserError(f"{key} is empty; name a {wanted}: --{key}=...")
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{key} {path} is a {'folder' if path.is_dir() else 'file'}, not a {wanted}; {fix}")
    start = path.absolute() if folder else path.absolute().parent
    # a prepared dataset's folder, or one inside it: its token files, nothing else (prepare would refuse it after)
    if dataset := next((up for up in [start, *start.parents] if is_dataset(up)), None):
        where = "is" if folder and dataset == start else "lies in"
        inside = "" if dataset == start else f" ({dataset})"
        raise UserError(f"{key} {path} {where} a dataset's folder{inside}: nothing else belongs among its token "
                        f"files; {fix}")
    if folder and path.is_dir():
        where, what = path, f"{key} {path} is not writable"
    else:
        where = next(up for up in path.absolute().parents if up.exists())  # its nearest ancestor that exists
        if not where.is_dir():
            raise UserError(f"{key} {path} cannot be created: {where} is a file, not a folder; {fix}")
        what = f"{key} {path} cannot be written in {where}"
    try:  # create and remove a temporary file: the OS's own answer, whoever runs this
        tempfile.TemporaryFile(dir=where).close()
    except OSError as e:
        raise UserError(f"{what} ({e.strerror}); {fix}") from None
    return path


def check_replaceable(path: Path, key: str, what: str, ours: Callable[[Path], bool]) -> None:
    """Refuse to replace a file at path that the command did not write (ours(path) is false): a user's own.
    what: 'a picture attention.py', 'a page eval.py', ..., for the message."""
    if path.is_symlink():  # the new file would take the link's place, not be written where it points
        raise UserError(f"{key}: {path} is a symbolic link, which is never replaced; give the path it points to, or "
                        f"choose another --{key}")
    if path.is_dir():
        raise UserError(f"{key}: {path} is a folder, where a file of that name is written; move it away or choose "
                        f"another --{key}")
    if path.is_file() and not ours(path):
        raise UserError(f"{key}={path} is {what} did not write, which it never replaces; choose another --{key}")
