"""Tokenizers: round trips, GPT-2's published ids, and the offline path."""
import pytest

from data.errors import DataError
from data.tokenizer import CharTokenizer, GPT2Tokenizer, gpt2_encoding_from_package, tokenizer_from_description

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak. — Ünïcödé ✓ 日本語\n"


def test_char_round_trip_and_description():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.vocab_size == len(set(TEXT))
    rebuilt = tokenizer_from_description(tok.describe())
    assert rebuilt.encode(TEXT) == ids


def test_char_unknown_character_is_a_clear_error():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(DataError, match="'z' is not in this model's vocabulary"):
        tok.encode("abz")


def test_gpt2_known_ids_and_round_trip():
    tok = GPT2Tokenizer()
    assert tok.vocab_size == 50257 and tok.eot_token == 50256
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's published ids
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tokenizer_from_description(tok.describe()).encode(TEXT) == tok.encode(TEXT)


def test_gpt2_offline_path_uses_the_hash_checked_packaged_files():
    enc = gpt2_encoding_from_package()
    assert enc.n_vocab == 50257
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.encode_ordinary(" the") == [262]
    ids = enc.encode_ordinary(TEXT)
    assert enc.decode(ids) == TEXT
    assert ids == GPT2Tokenizer().encode(TEXT)
