"""Tokenizers in and out of Hugging Face's format: transformers' AutoTokenizer and the
`tokenizers` library, offline, give the project's ids for text with accents, CJK and emoji."""
from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

import pytest
import torch

from data.build import prepare_dataset
from data.errors import DataError
from data.hf_tokenizer import save_hf_tokenizer, tokenizer_from_hf_folder
from data.tokenizer import BPETokenizer, CharTokenizer, GPT2Tokenizer, tokenizer_from_description, train_bpe

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

# NFC turns the decomposed "e\u0301" into one character; a byte-level tokenizer without it keeps two
TEXT = ("Zoë's café in São Paulo, cafe\u0301 crème brûlée. 東京で寿司を食べた 🍣🎌, 👩🏽‍💻 wrote 42,000 lines!\n\n"
        "\tIndented  twice, then a tab\t")
CORPUS = [TEXT, "The quick brown fox jumps over the lazy dog. " * 40, "naïve déjà vu, 日本語と中文 😀 " * 20]
# Llama 3's and Qwen's split pattern
SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
         r"|\s+(?!\S)|\s+")


def trained_bpe(style: str, special_tokens: tuple[str, ...] = ("<|endoftext|>", "<|im_end|>"), split: str = SPLIT):
    """A byte-level BPE trained with `tokenizers` the way GPT-2's (ByteLevel splits) or Llama 3's and
    Qwen's (a Split pattern, then ByteLevel; Qwen's NFC) are built."""
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

    hf = tokenizers.Tokenizer(models.BPE())
    if style == "split":
        hf.normalizer = normalizers.NFC()
        hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(special_tokens), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(CORPUS, trainer)
    return hf


def save_folder(hf, folder, eos: str | None = "<|im_end|>"):
    folder.mkdir(exist_ok=True)
    hf.save(str(folder / "tokenizer.json"))
    if eos:
        (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": eos}}))
    return folder


@pytest.mark.parametrize("style", ["split", "bytelevel"])
def test_a_byte_level_bpe_folder_gives_the_same_ids_through_tiktoken(tmp_path, style):
    hf = trained_bpe(style)
    tokenizer = tokenizer_from_hf_folder(save_folder(hf, tmp_path / "hf"))
    assert isinstance(tokenizer, BPETokenizer)
    for text in (TEXT, TEXT.upper() + "1234567890 don't", "".join(reversed(TEXT))):
        ids = tokenizer.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False).ids
        assert tokenizer.decode(ids) == hf.decode(ids)
    assert (tokenizer.normalizer == "NFC") == (style == "split")
    assert tokenizer.eot_token == hf.token_to_id("<|im_end|>")  # tokenizer_config.json's eos_token
    assert tokenizer.vocab_size == hf.get_vocab_size() and tokenizer.token_bytes().sum() > 400


def test_the_description_rebuilds_it_from_a_checkpoint_alone(tmp_path):
    tokenizer = tokenizer_from_hf_folder(save_folder(trained_bpe("split"), tmp_path / "hf", eos=None))
    assert tokenizer.eot_token == 0  # no eos_token given: <|endoftext|>, as in Qwen's base models
    buffer = io.BytesIO()
    torch.save({"tokenizer": tokenizer.describe()}, buffer)  # as a checkpoint holds it
    buffer.seek(0)
    description = torch.load(buffer, weights_only=True)["tokenizer"]
    as_saved = json.loads(json.dumps(description))  # as meta.json holds it
    for rebuilt in (tokenizer_from_description(description, Path("meta.json")),
                    tokenizer_from_description(as_saved, Path("meta.json"))):
        assert rebuilt.encode(TEXT) == tokenizer.encode(TEXT) and rebuilt.describe() == tokenizer.describe()


def char_tokenizer() -> CharTokenizer:
    return CharTokenizer.from_text("".join(CORPUS))


def char_tokenizer_with_end_of_text() -> CharTokenizer:
    return CharTokenizer.from_text("".join(CORPUS), end_of_text=True)  # as data/prepare.py makes it


def rustbpe_tokenizer() -> BPETokenizer:
    return train_bpe(CORPUS, 300)  # as data/prepare.py --tokenizer=bpe trains it


@pytest.mark.parametrize("kind", ["gpt2", "char", "char_eot", "trained", "hf_bpe"])
def test_an_exported_tokenizer_gives_autotokenizer_our_ids(tmp_path, kind):
    tokenizer = {"gpt2": GPT2Tokenizer, "char": char_tokenizer, "char_eot": char_tokenizer_with_end_of_text,
                 "trained": rustbpe_tokenizer,
                 "hf_bpe": lambda: tokenizer_from_hf_folder(save_folder(trained_bpe("split"), tmp_path / "hf"))}[kind]()
    save_hf_tokenizer(tokenizer, tmp_path, max_length=64)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ids = tokenizer.encode(TEXT)
    assert auto(TEXT)["input_ids"] == ids  # nothing added in front: ids as the project makes them
    text = unicodedata.normalize("NFC", TEXT) if getattr(tokenizer, "normalizer", None) else TEXT
    assert auto.decode(ids) == tokenizer.decode(ids) == text
    eot = tokenizer.eot_token
    assert auto.eos_token_id == eot
    if eot is not None:  # the end of a document is a special token there too
        assert auto.decode(ids + [eot] + ids, skip_special_tokens=True) == text + text
    assert auto.model_max_length == 64


@pytest.mark.parametrize("tokenizer", [GPT2Tokenizer, char_tokenizer, char_tokenizer_with_end_of_text,
                                       rustbpe_tokenizer])
def test_what_export_writes_comes_back_as_the_same_kind(tmp_path, tokenizer):
    save_hf_tokenizer(tokenizer(), tmp_path, max_length=1024)
    assert tokenizer_from_hf_folder(tmp_path).describe() == tokenizer().describe()


def sentencepiece_like(kind: str):
    from tokenizers import models

    vocab = {"<unk>": 0, "▁a": 1, "a": 2, "b": 3, "ab": 4}
    if kind == "Unigram":
        return tokenizers.Tokenizer(models.Unigram([(token, -1.0) for token in vocab], unk_id=0))
    if kind == "WordPiece":
        return tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    bpe = models.BPE({**vocab, **{f"<0x{b:02X}>": 5 + b for b in range(256)}}, [("a", "b")], byte_fallback=True)
    return tokenizers.Tokenizer(bpe)


@pytest.mark.parametrize("kind, fragment", [
    ("Unigram", "its tokenizer is a Unigram model; only byte-level BPE tokenizers"),
    ("WordPiece", "its tokenizer is a WordPiece model; only byte-level BPE tokenizers"),
    ("byte-fallback BPE", "its tokenizer is a SentencePiece-style BPE (byte fallback or word markers)"),
])
def test_other_tokenizers_are_refused_in_one_line(tmp_path, kind, fragment):
    save_folder(sentencepiece_like(kind), tmp_path, eos=None)
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as error:
        tokenizer_from_hf_folder(tmp_path)
    assert "\n" not in str(error.value)


def test_a_split_across_the_places_where_prepare_cuts_long_documents_is_refused(tmp_path):
    """Whole lines as pre-tokens: a long document cut between a word and a space would encode otherwise."""
    save_folder(trained_bpe("split", split=r"[^\n]+\n?|\n"), tmp_path)
    with pytest.raises(DataError, match="joins text across the places where data/prepare.py cuts long documents"):
        tokenizer_from_hf_folder(tmp_path)


def test_a_folder_without_tokenizer_json_says_so(tmp_path):
    with pytest.raises(DataError, match="has no tokenizer.json; save the model's tokenizer there too"):
        tokenizer_from_hf_folder(tmp_path)
    transformers.GPT2Config().save_pretrained(tmp_path)  # a GPT-2 model saved without its tokenizer reads GPT-2's
    assert tokenizer_from_hf_folder(tmp_path).describe() == GPT2Tokenizer().describe()


def test_preparing_with_a_tokenizer_without_an_end_of_text_token_is_one_line(tmp_path):
    """Each document ends with the tokenizer's end-of-text token: one that has none is refused before any work."""
    folder = save_folder(trained_bpe("bytelevel", special_tokens=()), tmp_path / "tokenizer", eos=None)
    (tmp_path / "a.txt").write_text(TEXT)
    with pytest.raises(DataError, match="tokenizer has no end-of-text token .*; give a tokenizer that has one, or use "
                                        "--tokenizer=bpe$"):
        prepare_dataset([tmp_path / "a.txt"], str(folder), tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()
