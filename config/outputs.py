"""Paths a command will write, checked before any work: a folder where a folder is
wanted, a file where a file is, and a place the OS lets this process write."""

import os
import tempfile
from pathlib import Path

from .errors import UserError


def check_output(path: str | Path, key: str, *, folder: bool) -> Path:
    """Refuse, with the true cause, an output path this command could not write; writes nothing that stays.

    key is the setting that named the path (out_dir, to, surprise): the message says to change it.
    folder: the command writes files into path; else it writes path itself, as a file.
    """
    path = Path(path)
    wanted, fix = ("folder" if folder else "file"), f"choose another --{key}"
    if path.exists() and path.is_dir() != folder:
        found = "folder" if path.is_dir() else "file"
        raise UserError(f"{key} {path} is a {found}, not a {wanted}; {fix}")
    if folder and path.is_dir():
        probe_writable(path, f"{key} {path} is not writable", fix)
        return path
    parent = path.parent.absolute()
    while not parent.exists() and parent != parent.parent:  # its nearest ancestor that exists
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{key} {path} cannot be created: {parent} is a file, not a folder; {fix}")
    probe_writable(parent, f"{key} {path} cannot be written in {parent}", fix)
    return path


def probe_writable(folder: Path, what: str, fix: str) -> None:
    """Create and remove a file of a unique name in folder: the OS's own answer, whoever runs this."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
    except OSError as e:
        raise UserError(f"{what} ({e.strerror}); {fix}") from None
    os.close(fd)
    os.unlink(probe)
