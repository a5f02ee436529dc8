"""Training a byte-level BPE tokenizer on the user's corpus.

rustbpe learns the merges (GPT-style byte-level BPE, trained in parallel in
Rust) and hands them over as tiktoken's mergeable ranks; tiktoken encodes. The
vocabulary is the 256 single bytes, then the merges in the order they were
learned, then the special tokens (<|endoftext|>, which ends every document).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .errors import DataError
from .files import write_atomically
from .tokenizer import END_OF_TEXT, BPETokenizer

# GPT-4's pre-tokenization (as rustbpe and nanochat use it): contractions, words with
# one leading non-letter, numbers of up to 3 digits, punctuation runs, whitespace.
SPLIT_PATTERN = (r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"
                 r"|\s*[\r\n]|\s+(?!\S)|\s+")
SPECIAL_TOKENS = (END_OF_TEXT,)
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)
DEFAULT_VOCAB_SIZE = 4096
RANK_FILE = "tokenizer.tiktoken"  # tiktoken's format: one "base64(token bytes) rank" line per token


def check_vocab_size(vocab_size: int) -> None:
    if vocab_size < MIN_VOCAB_SIZE:
        raise DataError(f"bpe_vocab_size={vocab_size} is too small: a byte-level BPE needs the 256 bytes and "
                        f"{len(SPECIAL_TOKENS)} special token; use --bpe_vocab_size={MIN_VOCAB_SIZE} or more")
    if vocab_size > 2**32:
        raise DataError(f"bpe_vocab_size={vocab_size} does not fit token ids of 32 bits; use a smaller --bpe_vocab_size")


def train_bpe(texts: Iterable[str], vocab_size: int) -> BPETokenizer:
    """A tokenizer of vocab_size tokens (special tokens included) learned from texts."""
    import rustbpe

    check_vocab_size(vocab_size)
    n_merged = vocab_size - len(SPECIAL_TOKENS)
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(texts), n_merged, pattern=SPLIT_PATTERN)
    if trainer.vocab_size < n_merged:  # every pair left occurs once: no more merges to learn
        raise DataError(
            f"bpe_vocab_size={vocab_size} is more than this text supports: its training split yields at most "
            f"{trainer.vocab_size + len(SPECIAL_TOKENS)} tokens; use a smaller --bpe_vocab_size or more text"
        )
    ranks = dict(trainer.get_mergeable_ranks())
    special = {name: n_merged + i for i, name in enumerate(SPECIAL_TOKENS)}
    return BPETokenizer(ranks, SPLIT_PATTERN, special)


def write_rank_file(tokenizer: BPETokenizer, folder: Path) -> None:
    """The merges in tiktoken's own file format, which tiktoken.load.load_tiktoken_bpe reads."""
    write_atomically(folder / RANK_FILE, tokenizer.describe()["ranks"].encode("ascii"))
