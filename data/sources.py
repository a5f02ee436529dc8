"""The user's text (files, folders, globs of UTF-8 text, JSONL, Parquet, gzip of text or JSONL) as one stream of
documents cut into pieces of bounded size: a text file, a .jsonl line, a .parquet row (its text_field) is one
document; empty ones are skipped. Folders and globs are read in sorted order, hidden names left out."""

import codecs
import glob
import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .dataset import is_dataset
from .errors import DataError

PIECE_CHARS = 1 << 20  # a long document is handed on in pieces of about this many characters
READ_BYTES = 1 << 20  # a text file is read in blocks of this size

# Where a text may be cut without changing its tokens: after a letter followed by a space, or after a newline
# between two non-spaces. No pre-token of GPT-2's pattern nor of train_bpe's spans either place, and both look
# ahead but never behind. (2+ whitespace characters before a cut would pre-tokenize differently at a part's end.)
SAFE_CUT = re.compile(r"(?<=[^\W\d_])(?= )|(?<=\S\n)(?=\S)")


@dataclass(frozen=True)
class Piece:
    text: str
    ends_document: bool


def find_inputs(patterns: Sequence[str | Path]) -> list[Path]:
    """The input files: each pattern is a file, a folder (walked recursively) or a glob. A file that
    several patterns reach (a folder and a file in it) is read once."""
    if not patterns:
        raise DataError("no input given; name text, JSONL or Parquet files, folders or globs with --input")
    files = {}  # real path -> the file as first found
    for pattern in patterns:
        path = Path(pattern).expanduser()
        matches = [path] if path.exists() else [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
        if not matches:
            raise DataError(f"input {pattern} not found; give a file, a folder or a glob with --input")
        found = [f for match in matches for f in _files_under(match)]
        if not found:
            raise DataError(f"input {pattern} holds no file; give text, JSONL or Parquet files")
        for file in found:
            if not file.exists():  # a link, named here or found in a folder
                raise DataError(f"input {file} is a link to nothing ({os.readlink(file)}); remove it or fix it")
            if not file.is_file():
                raise DataError(f"input {file} is not a regular file (a pipe?), and prepare reads its inputs twice; "
                                f"save the text to a file and give that")
            files.setdefault(os.path.realpath(file), file)
    return list(files.values())


def _files_under(path: Path) -> list[Path]:
    """path, or the files under it in sorted order, hidden ones left out. Links to folders are followed, each
    real folder once (a link back up is no loop); links to nothing are kept, for find_inputs to refuse."""
    if not path.is_dir():
        return [path]

    def unreadable(e: OSError) -> None:  # os.walk would skip the folder without a word
        raise DataError(f"input folder {e.filename} cannot be read ({e.strerror}); check its permissions, or leave "
                        f"it out of --input")

    files, seen = [], set()
    for root, folders, names in os.walk(path, followlinks=True, onerror=unreadable):
        if os.path.realpath(root) in seen:
            folders.clear()
            continue
        seen.add(os.path.realpath(root))
        folders[:] = sorted(f for f in folders if not f.startswith("."))  # which name of a linked folder counts
        files += [Path(root, name) for name in names if not name.startswith(".")]
    return sorted(files)


def read_pieces(files: Sequence[Path], text_field: str = "text") -> Iterator[Piece]:
    """Every document of the files in order, as pieces of about PIECE_CHARS characters or
    fewer, cut only where the tokens cannot change; a DataError names bad input."""
    for path in files:
        if (kind := read_as(path)) == "text":
            documents = [_text_blocks(path)]  # one document, read in blocks
        else:
            read = _parquet_documents if kind == "parquet" else _jsonl_documents
            documents = ([text] for text in read(path, text_field))
        for texts in documents:  # a document as consecutive texts
            pending = ""  # text not yet handed on
            for text in texts:  # pending was searched already: a document without cuts is read in linear time
                pieces, pending = cut_pieces(pending + text, PIECE_CHARS, searched=len(pending))
                yield from (Piece(piece, False) for piece in pieces)
            if pending:
                yield Piece(pending, True)


def read_as(path: Path | str) -> str:
    """How an input is read, by its name: parquet, jsonl (.jsonl, .jsonl.gz) or text (anything else)."""
    name = Path(path).name.lower()
    return "parquet" if name.endswith(".parquet") else "jsonl" if name.endswith((".jsonl", ".jsonl.gz")) else "text"


def cut_pieces(text: str, piece_chars: int, searched: int = 0) -> tuple[list[str], str]:
    """Pieces of at least piece_chars characters cut off text's front at safe cuts, and the rest. No cut lies
    before `searched` (text's first characters, the rest of an earlier call), so the search starts past them."""
    pieces, start = [], 0
    while len(text) - start > piece_chars and (cut := SAFE_CUT.search(text, max(start + piece_chars, searched))):
        pieces.append(text[start : cut.start()])
        start = cut.start()
    return pieces, text[start:]


@contextmanager
def _open(path: Path, raw: bool = False) -> Iterator[BinaryIO]:
    """The file, decompressed if it is .gz (unless raw); a DataError if it cannot be opened or read."""
    gz = path.name.lower().endswith(".gz")
    try:
        f = gzip.open(path, "rb") if gz and not raw else open(path, "rb")
    except OSError as e:
        raise DataError(f"input {path} cannot be read ({e.strerror}); check the path and its permissions") from None
    with f:
        try:
            yield f
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            hint = "is it a damaged .gz file?" if gz else "check the file"
            raise DataError(f"input {path} cannot be read ({e}); {hint}") from None


def _text_blocks(path: Path, fix: str = "give text, JSONL or Parquet files") -> Iterator[str]:
    """A text file's text, read in blocks, never whole; fix: what a binary file's error says to give instead."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes of the file read so far
    with _open(path) as f:
        while True:
            block = f.read(READ_BYTES)  # b"" at the end: the decoder's final call
            if offset == 0 and block.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Windows' "Unicode"
                raise DataError(f"input {path} is UTF-16 text, not UTF-8; convert it, e.g. iconv -f utf-16 -t utf-8")
            if b"\0" in block:
                hint = _decompress_or(path, "a prepared dataset's file: leave dataset folders out of --input"
                                      if is_dataset(path.parent) else fix)
                raise DataError(f"input {path} is binary (a NUL byte at offset {offset + block.index(0)}); {hint}")
            held = len(decoder.getstate()[0])  # bytes of an unfinished character from the last block
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise not_utf8(path, offset - held + e.start) from None
            yield text.removeprefix("\ufeff") if offset == 0 else text  # a byte-order mark some editors write: not text
            if not block:
                return
            offset += len(block)


def _decompress_or(path: Path, fix: str) -> str:
    """What to do about a file that reads as binary or not UTF-8: fix, unless it is compressed in a kind not read."""
    if path.name.lower().endswith((".bz2", ".xz", ".zst", ".zip", ".7z", ".tar", ".tgz", ".tar.gz", ".parquet.gz")):
        return "decompress or extract it first (of compressed files, only .gz of text or JSONL is read)"
    return fix


def not_utf8(path: Path, offset: int, where: str = "") -> DataError:
    fix = _decompress_or(path, "convert it, e.g. iconv -f latin1 -t utf-8")
    return DataError(f"input {path}{where} is not UTF-8 (invalid byte at offset {offset}); {fix}")


def _jsonl_documents(path: Path, field: str) -> Iterator[str]:
    with _open(path) as f:
        offset = 0  # byte offset of the line
        for number, line in enumerate(f, 1):
            where, start, offset = f" line {number}", offset, offset + len(line)
            if not line.strip():
                continue
            try:
                # -sig: a byte-order mark that some editors write; without its line end, an error's column is on it
                record = json.loads(line.rstrip(b"\r\n").decode("utf-8-sig"))
            except UnicodeDecodeError as e:
                raise not_utf8(path, start + e.start, where) from None
            except json.JSONDecodeError as e:
                raise DataError(f"input {path}{where} is not JSON ({e.msg.removesuffix(' at')} at column {e.colno}); "
                                f"give one JSON object per line") from None
            except RecursionError:
                raise DataError(f"input {path}{where} nests its JSON too deeply to read; give one JSON object per "
                                f"line, with the text in a field") from None
            if not isinstance(record, dict):
                raise DataError(f"input {path}{where} is not a JSON object ({line.decode().strip()[:40]}); "
                                f"give one JSON object per line, with the text in a field")
            if field in record and record[field] in (None, ""):
                continue  # no text: skipped, as in a Parquet column
            if not isinstance(record.get(field), str):
                problem = (f": field {field!r} is {type(record[field]).__name__}, not text" if field in record
                           else f" has no field {field!r}")
                raise DataError(f"input {path}{where}{problem}; set --text_field to the field holding the text")
            if b"\\u" in line and re.search("[\ud800-\udfff]", record[field]):  # a surrogate: half a character
                raise DataError(f"input {path}{where}: field {field!r} holds a \\u escape of half a character "
                                f"(a lone surrogate), which is not text; mend the line or leave it out")
            yield record[field]


def _parquet_documents(path: Path, column: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"input {path} is not a readable Parquet file ({str(e).splitlines()[0]})") from None
    schema = parquet.schema_arrow
    if column not in schema.names:
        raise DataError(f"input {path} has no column {column!r} (it has {', '.join(schema.names)}); "
                        f"set --text_field to the column holding the text")
    kind = schema.field(column).type
    text_types = (pa.string(), pa.large_string(), pa.string_view())
    if (kind.value_type if pa.types.is_dictionary(kind) else kind) not in text_types:  # dictionary: pandas' category
        raise DataError(f"input {path}: column {column!r} holds {kind}, not text; "
                        f"set --text_field to the column holding the text")
    try:
        for batch in parquet.iter_batches(batch_size=1024, columns=[column]):
            yield from (text for text in batch.column(0).to_pylist() if text)  # a null or empty text is skipped
    except (pa.ArrowException, OSError) as e:  # a damaged page, past the footer that opened
        raise DataError(f"input {path} cannot be read as Parquet ({str(e).splitlines()[0]}); is it damaged?") from None


@dataclass
class CorpusScan:
    """What one cheap pass over the inputs tells: their hashes, sizes and documents."""
    inputs: list[dict]  # {"path", "bytes", "sha256"} per file
    source_sha256: str  # one file's sha256, or the sha256 of the files' hashes, one a line
    documents: int
    chars: int
    text_bytes: int  # UTF-8 bytes of all documents
    alphabet: str | None  # the distinct characters, sorted (when asked for)


def scan_corpus(files: Sequence[Path], text_field: str, alphabet: bool, progress: Callable[[int], None]) -> CorpusScan:
    """Read every input once: check it, hash it, count its documents and characters.
    progress is called with the UTF-8 bytes of each piece of text read."""
    hashes = []
    for path in files:
        with _open(path, raw=True) as f:
            hashes.append(hashlib.file_digest(f, "sha256").hexdigest())
    inputs = [{"path": str(p), "bytes": p.stat().st_size, "sha256": h} for p, h in zip(files, hashes)]
    source = hashes[0] if len(hashes) == 1 else hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    documents = chars = text_bytes = 0
    seen, has_text = set(), False
    for piece in read_pieces(files, text_field):
        n_bytes = len(piece.text.encode("utf-8"))
        documents += piece.ends_document
        chars += len(piece.text)
        text_bytes += n_bytes
        has_text = has_text or not piece.text.isspace()
        if alphabet:
            seen.update(piece.text)
        progress(n_bytes)
    if not has_text:
        named = files[0] if len(files) == 1 else f"all {len(files)} files"
        raise DataError(f"input {named} holds no text (it is empty or only whitespace); give files with some text")
    return CorpusScan(inputs, source, documents, chars, text_bytes, "".join(sorted(seen)) if alphabet else None)


def read_text(path: str | Path) -> str:
    """The file's text; a DataError if it is missing, not a file, empty, binary or not UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a UTF-8 text file")
    if not path.is_file():
        problem = "is not a regular file (a device or a pipe)" if path.exists() else "not found"
        raise DataError(f"text file {path} {problem}; give a UTF-8 text file")
    if read_as(path) != "text":  # its markup would be scored as text
        raise DataError(f"{path} holds documents, not a text; give a UTF-8 text file (data/prepare.py reads JSONL "
                        f"and Parquet)")
    text = "".join(_text_blocks(path, fix="give a UTF-8 text file"))
    if not text.strip():
        raise DataError(f"text file {path} is empty; give a text file with some content")
    return text
