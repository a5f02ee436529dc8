"""Writing a dataset's token files: pieces of text encoded in parallel, appended in order.

tiktoken releases the GIL while it encodes and the char tokenizer is a numpy
lookup, so worker threads encode batches of pieces while the main thread reads
the next ones. Results are appended in the order the pieces came, so the files
never depend on the number of workers; a bounded number of batches is in flight,
so memory does not grow with the corpus.
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sources import Piece
from .tokenizer import Tokenizer

BATCH_CHARS = 1 << 20  # characters of text per batch handed to a worker


@dataclass
class Encoded:
    split: str
    ids: np.ndarray  # the piece's token ids, then end-of-text if it ends its document
    text_bytes: int  # UTF-8 bytes of the piece
    ends_document: bool


def encode_in_order(labelled: Iterable[tuple[str, Piece]], tokenizer: Tokenizer, workers: int) -> Iterator[Encoded]:
    """Every piece encoded, in the order given; `workers` threads encode at once."""
    in_flight = deque()
    with ThreadPoolExecutor(workers) as pool:
        try:
            for batch in _batches(labelled):
                in_flight.append(pool.submit(_encode_batch, tokenizer, batch))
                if len(in_flight) > 2 * workers:  # keep every worker busy, and no more in memory
                    yield from in_flight.popleft().result()
            while in_flight:
                yield from in_flight.popleft().result()
        finally:  # stopped early (an error, Ctrl-C): drop what has not started
            for future in in_flight:
                future.cancel()


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
        self.path, self.dtype = path, np.dtype(dtype)
        self.sha256 = hashlib.sha256()
        self.tokens = self.text_bytes = self.documents = 0
        self._file = open(path, "wb")

    def append(self, piece: Encoded) -> None:
        payload = piece.ids.astype(self.dtype, copy=False).tobytes()
        self._file.write(payload)
        self.sha256.update(payload)
        self.tokens += piece.ids.size
        self.text_bytes += piece.text_bytes
        self.documents += piece.ends_document

    def close(self) -> None:
        """Flush to disk (fsync), so the file is whole before the dataset is swapped in."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def fingerprint(train: TokenFile, val_path: Path) -> str:
    """sha256 of train.bin's bytes followed by val.bin's: the dataset's identity."""
    digest = train.sha256.copy()
    with open(val_path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
