"""A byte-level BPE tokenizer over any tiktoken Encoding, described by its own ranks.

Its description carries the whole vocabulary (in tiktoken's file format: one base64 token
and its rank per line), the split pattern and the special tokens, so a checkpoint or a
dataset's meta.json rebuilds it offline with no other file. A Hugging Face folder's
tokenizer becomes one (data/hf_tokenizer.py).
"""
from __future__ import annotations

import base64
import unicodedata

import numpy as np

from .errors import DataError


def ranks_to_text(ranks: dict[bytes, int]) -> str:
    """tiktoken's .tiktoken format: 'base64(token) rank' per line, by rank."""
    return "".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in sorted(ranks.items(), key=lambda x: x[1]))


def ranks_from_text(text: str) -> dict[bytes, int]:
    try:
        return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in text.splitlines())}
    except ValueError as e:
        raise DataError(f"a tiktoken tokenizer's ranks are damaged ({e}); prepare the dataset again") from None


class TiktokenTokenizer:
    """Byte-level BPE through tiktoken: merges the lowest-ranked adjacent pair first, within
    the pieces the split pattern cuts the text into. `normalizer` ("NFC" or None) is applied
    to text before it is encoded, as some tokenizers (Qwen's) do. The ranks, pattern and special
    tokens are read back from the Encoding's attributes, as tiktoken's README does to extend one."""

    def __init__(self, pattern: str, ranks: dict[bytes, int], special_tokens: dict[str, int],
                 eot_token: int | None = None, normalizer: str | None = None):
        import tiktoken

        self.encoding = tiktoken.Encoding(name="tiktoken-bpe", pat_str=pattern, mergeable_ranks=ranks,
                                          special_tokens=special_tokens)
        self.vocab_size = self.encoding.n_vocab  # the largest id + 1
        self.eot_token = eot_token
        self.normalizer = normalizer

    def encode(self, text: str) -> list[int]:
        if self.normalizer:
            text = unicodedata.normalize(self.normalizer, text)
        return self.encoding.encode_ordinary(text)  # special tokens' text is plain text here

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)

    def decode_bytes(self, ids: list[int]) -> bytes:
        return self.encoding.decode_bytes(ids)

    def token_bytes(self) -> np.ndarray:
        lengths = np.zeros(self.vocab_size, dtype=np.int64)  # an id no token holds (a gap) counts 0 bytes
        for token, rank in self.encoding._mergeable_ranks.items():
            lengths[rank] = len(token)
        for text, rank in self.encoding._special_tokens.items():
            lengths[rank] = len(text.encode("utf-8"))
        return lengths

    def describe(self) -> dict:
        enc = self.encoding
        return {"kind": "tiktoken", "pattern": enc._pat_str,
                "ranks": ranks_to_text(enc._mergeable_ranks), "special_tokens": dict(enc._special_tokens),
                "eot_token": self.eot_token, "normalizer": self.normalizer}

    @classmethod
    def from_description(cls, description: dict) -> "TiktokenTokenizer":
        d = description
        return cls(d["pattern"], ranks_from_text(d["ranks"]), d["special_tokens"], d["eot_token"], d["normalizer"])
