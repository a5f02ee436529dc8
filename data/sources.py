"""Reading the user's text."""
from __future__ import annotations

from pathlib import Path

from .errors import DataError


def read_text(path: str | Path) -> str:
    """The file's text; a DataError if it is missing, not a file, empty or not UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"input {path} is a folder; give a UTF-8 text file")
    if not path.is_file():
        raise DataError(f"input file {path} not found; give a UTF-8 text file with --input")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"input file {path} is empty; give a text file with some content")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"input file {path} is not UTF-8 (invalid byte at offset {e.start}); convert it, "
            f"e.g. iconv -f latin1 -t utf-8"
        ) from None
