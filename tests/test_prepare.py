"""data/prepare.py's library: a folder corpus of every format, the split, workers, chunking."""
from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest

from corpus_files import DOCUMENTS, JSONL, write_corpus
from helpers import fingerprint
from data import load_tokenizer
from data.build import plan_split, prepare_dataset
from data.dataset import open_dataset
from data.errors import DataError
from data.sources import SAFE_CUT, cut_pieces, find_inputs, read_pieces
from data.tokenizer import GPT2Tokenizer, tokenizer_from_description

SETTINGS = {"char": {}, "gpt2": {}, "bpe": {"vocab_size": 300}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def documents_of(folder) -> dict[str, list[str]]:
    """Each split's token file cut at end-of-text and decoded: its documents, in order."""
    dataset = open_dataset(folder)
    tokenizer = tokenizer_from_description(dataset.meta["tokenizer"], folder / "meta.json")
    found = {}
    for split in ("train", "val"):
        ids = getattr(dataset, split).tolist()
        assert ids[-1] == tokenizer.eot_token  # every document ends with it, the last one too
        ends = [i for i, token in enumerate(ids) if token == tokenizer.eot_token]
        starts = [0] + [end + 1 for end in ends[:-1]]
        found[split] = [tokenizer.decode(ids[s:e]) for s, e in zip(starts, ends)]
    return found


@pytest.mark.parametrize("kind", ["char", "gpt2", "bpe"])
def test_a_folder_of_every_format_decodes_to_its_documents_in_order(corpus, tmp_path, kind):
    meta = prepare_dataset([corpus], kind, tmp_path / "ds", **SETTINGS[kind]).meta
    found = documents_of(tmp_path / "ds")
    k = round(len(DOCUMENTS) * 0.1)  # 15 documents: 2 held out, whole
    assert len(found["val"]) == meta["val_documents"] == k and meta["split"] == "documents"
    assert len(found["train"]) == meta["train_documents"] == len(DOCUMENTS) - k
    positions = {split: [DOCUMENTS.index(doc) for doc in docs] for split, docs in found.items()}
    assert sorted(positions["train"] + positions["val"]) == list(range(len(DOCUMENTS)))
    assert all(p == sorted(p) for p in positions.values())  # each split keeps the corpus order
    assert meta["train_bytes"] + meta["val_bytes"] == sum(len(d.encode()) for d in DOCUMENTS)
    assert [i["path"] for i in meta["inputs"]] == [str(p) for p in find_inputs([corpus])]
    assert meta["eot_token"] == meta["vocab_size"] - 1


@pytest.mark.parametrize("kind", ["char", "gpt2", "bpe"])
def test_one_worker_or_several_write_the_same_files(corpus, tmp_path, monkeypatch, kind):
    monkeypatch.setattr("data.build.BATCH_CHARS", 40)  # many small batches in flight at once
    for workers in (1, 3):
        prepare_dataset([corpus], kind, tmp_path / f"w{workers}", workers=workers, **SETTINGS[kind])
    files = sorted(p.name for p in (tmp_path / "w1").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "w3").iterdir())
    for name in files:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w3" / name).read_bytes(), name


def test_the_fingerprint_is_the_hash_of_the_two_bins_and_sees_a_moved_split(corpus, tmp_path):
    meta = prepare_dataset([corpus], "char", tmp_path / "ds").meta
    assert meta["fingerprint"] == fingerprint(tmp_path / "ds")
    assert json.loads((tmp_path / "ds" / "meta.json").read_text()) == meta
    # one document, split at its tail: the same tokens, train.bin's then val.bin's, wherever the split falls
    (tmp_path / "one.txt").write_text("To be, or not to be, that is the question.\n" * 200)
    tenth, third = (prepare_dataset([tmp_path / "one.txt"], "char", tmp_path / f"ds{share}", val_fraction=share).meta
                    for share in (0.1, 0.3))
    assert tenth["split"] == third["split"] == "tail" and tenth["train_tokens"] > third["train_tokens"]
    assert tenth["fingerprint"] != third["fingerprint"]


VARIED = ["word", " ", "  ", "\n", "\n\n", "\r\n", "\t", "it's", "we'll", "12345", "3.14", "...", "?!", "日本語の文",
          "😀", "café", "Ünïcödé", "  \n", " x", "'", "-", "Ω", "ab\n cd", "x\ny", "\u00a0", "\u2028"]


def varied_text(seed: int, n: int = 3000) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(VARIED) for _ in range(n))


@pytest.mark.parametrize("kind", ["gpt2", "bpe"])
def test_text_cut_at_safe_cuts_encodes_like_the_whole(kind, tmp_path):
    if kind == "gpt2":
        tokenizer = GPT2Tokenizer()
    else:
        tokenizer = load_tokenizer_trained_on(varied_text(0), tmp_path)
    for seed in range(1, 6):
        text = varied_text(seed)
        pieces, rest = cut_pieces(text, 5)
        assert len(pieces) > 100 and "".join(pieces) + rest == text
        assert [t for p in pieces + [rest] for t in tokenizer.encode(p)] == tokenizer.encode(text)


def load_tokenizer_trained_on(text: str, tmp_path):
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    prepare_dataset([tmp_path / "train.txt"], "bpe", tmp_path / "bpe_ds", vocab_size=400)
    return load_tokenizer(tmp_path / "bpe_ds")


def test_the_safe_cut_rule_finds_cuts_in_prose_and_in_text_without_spaces():
    assert [m.start() for m in SAFE_CUT.finditer("ab cd\nef  gh\n\nij")] == [2, 6, 8]
    assert [m.start() for m in SAFE_CUT.finditer("吾輩は猫\nである")] == [5]


def test_a_large_text_file_is_read_in_blocks_and_cut_into_pieces(tmp_path, monkeypatch):
    """A single document read 7 bytes at a time (multi-byte characters straddle blocks) and
    handed on in pieces of about 50 characters gives the bins of the whole text encoded at once."""
    monkeypatch.setattr("data.sources.READ_BYTES", 7)
    monkeypatch.setattr("data.sources.PIECE_CHARS", 50)
    text = "".join(varied_text(seed, 400) for seed in range(3))
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    pieces = list(read_pieces([tmp_path / "big.txt"]))
    assert len(pieces) > 20 and "".join(p.text for p in pieces) == text
    assert [p.ends_document for p in pieces] == [False] * (len(pieces) - 1) + [True]
    meta = prepare_dataset([tmp_path / "big.txt"], "gpt2", tmp_path / "ds").meta
    dataset, encoding = open_dataset(tmp_path / "ds"), GPT2Tokenizer()
    cut = int(len(text) * 0.9)  # one document: the validation split is the tail
    assert meta["split"] == "tail"
    assert dataset.train.tolist() == encoding.encode(text[:cut])
    assert dataset.val.tolist() == encoding.encode(text[cut:]) + [50256]


def test_a_document_without_safe_cuts_is_searched_once_not_once_per_block(tmp_path, monkeypatch):
    """Text that never allows a cut (no spaces, CRLF line ends) is held until its end; each block read is searched
    for a cut, but never the text searched before it: the characters searched grow with the text, not its square."""
    monkeypatch.setattr("data.sources.READ_BYTES", 100)
    monkeypatch.setattr("data.sources.PIECE_CHARS", 50)
    searched = []

    class CountingCut:
        def search(self, text, start):
            searched.append(len(text) - start)
            return SAFE_CUT.search(text, start)

    monkeypatch.setattr("data.sources.SAFE_CUT", CountingCut())
    text = "吾輩は猫である。\r\n" * 500  # 5,000 characters, 50 blocks
    (tmp_path / "crlf.txt").write_bytes(text.encode("utf-8"))
    assert [p.text for p in read_pieces([tmp_path / "crlf.txt"])] == [text]
    assert sum(searched) < 2 * len(text)


def test_the_validation_split_is_whole_documents_or_the_tail():
    plan = plan_split(documents=16, chars=1000, val_fraction=0.1, seed=3)
    assert plan.kind == "documents" and plan.val_documents.sum() == 2
    assert (plan_split(16, 1000, 0.1, seed=3).val_documents == plan.val_documents).all()  # seeded
    assert any((plan_split(16, 1000, 0.1, seed=s).val_documents != plan.val_documents).any() for s in range(4, 9))
    assert plan_split(15, 1000, 0.1, seed=3).val_documents.sum() == 2  # 1.5 rounds up
    for fraction in (0.7, np.float64(0.7)):  # 31.5 as given, though 45 * 0.7 < 31.5
        assert plan_split(45, 1000, fraction, seed=3).val_documents.sum() == 32
    tail = plan_split(documents=4, chars=1000, val_fraction=0.1, seed=3)  # 0.4 documents: the tail
    assert tail.kind == "tail" and tail.tail_start == 900


def test_several_documents_too_few_to_hold_one_out_split_at_the_tail(tmp_path):
    first, second = "first document\n" * 20, "second one\n" * 20
    (tmp_path / "0.txt").write_text(first)
    (tmp_path / "1.txt").write_text(second)
    meta = prepare_dataset([tmp_path], "char", tmp_path / "ds").meta  # round(2 * 0.1) = 0 documents
    dataset, tok = open_dataset(tmp_path / "ds"), load_tokenizer(tmp_path / "ds")
    cut = int((len(first) + len(second)) * 0.9) - len(first)  # the tail starts inside the second document
    assert meta["split"] == "tail" and meta["train_documents"] == 1 and meta["val_documents"] == 1
    assert dataset.train.tolist() == tok.encode(first) + [tok.eot_token] + tok.encode(second[:cut])
    assert dataset.val.tolist() == tok.encode(second[cut:]) + [tok.eot_token]


def test_text_field_names_the_jsonl_field(tmp_path):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in JSONL))
    prepare_dataset([tmp_path / "d.jsonl"], "gpt2", tmp_path / "ds", text_field="body", val_fraction=0.2)
    found = documents_of(tmp_path / "ds")
    assert sorted(found["train"] + found["val"]) == sorted(JSONL)


def test_a_null_or_empty_text_is_skipped_in_jsonl_as_in_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [JSONL[0], None, JSONL[1], "", *JSONL[2:]]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    pq.write_table(pa.table({"text": texts}), tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        meta = prepare_dataset([tmp_path / name], "gpt2", tmp_path / name.replace(".", "_"), val_fraction=0.2).meta
        found = documents_of(tmp_path / name.replace(".", "_"))
        assert sorted(found["train"] + found["val"]) == sorted(JSONL)
        assert meta["train_documents"] + meta["val_documents"] == len(JSONL)


def test_a_jsonl_file_may_start_with_a_byte_order_mark(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps({"text": t}) for t in JSONL).encode())
    prepare_dataset([tmp_path / "d.jsonl"], "gpt2", tmp_path / "ds", val_fraction=0.2)
    found = documents_of(tmp_path / "ds")
    assert sorted(found["train"] + found["val"]) == sorted(JSONL)


def test_globs_and_files_in_the_order_given(corpus, tmp_path):
    files = find_inputs([corpus / "*.jsonl*", corpus / "a" / "notes.txt"])
    assert [p.name for p in files] == ["docs.jsonl", "more.jsonl.gz", "notes.txt"]
    assert [p.name for p in find_inputs([corpus])] == ["poem.txt", "notes.txt", "docs.jsonl", "more.jsonl.gz",
                                                        "shard.parquet"]


def test_the_bpe_recipe_is_the_default_run_on_a_trained_bpe():
    from config.settings import TrainConfig, read_config
    from data.corpora import RECIPES
    from helpers import REPO

    default, bpe = read_config(TrainConfig, []), read_config(TrainConfig, [str(REPO / "configs/shakespeare_bpe.toml")])
    assert RECIPES[bpe.dataset].tokenizer == "bpe" and RECIPES[default.dataset].tokenizer == "char"
    same_model = ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "learning_rate")
    assert all(getattr(bpe, key) == getattr(default, key) for key in same_model)


def test_new_text_takes_a_prepared_datasets_bpe_where_bpe_would_train_another(tmp_path):
    from data.dataset import tokenizer_change

    words = "the cat sat on a mat while dogs ran over logs and birds flew past seven tall green trees".split()
    (tmp_path / "first.txt").write_text(" ".join(random.Random(0).choices(words, k=3000)))
    (tmp_path / "more.txt").write_text("the dog sat on the log; " + " ".join(random.Random(1).choices(words, k=3000)))
    first = prepare_dataset([tmp_path / "first.txt"], "bpe", tmp_path / "first", vocab_size=300).meta
    reused = prepare_dataset([tmp_path / "more.txt"], str(tmp_path / "first"), tmp_path / "more").meta
    anew = prepare_dataset([tmp_path / "more.txt"], "bpe", tmp_path / "anew", vocab_size=300).meta
    assert reused["tokenizer"] == first["tokenizer"] != anew["tokenizer"]  # a model trained on first reads more
    assert load_tokenizer(tmp_path / "more").decode(open_dataset(tmp_path / "more").train.tolist()).startswith(
        "the dog sat on the log;")
    assert tokenizer_change(first["tokenizer"], anew["tokenizer"]) == \
        "a BPE trained anew, of 300 tokens, instead of the one of 300"
    chars = {"kind": "char", "chars": "abcdefghijklmnopqrstu"}  # of 20 missing characters, ten are named
    assert tokenizer_change(chars, {"kind": "char", "chars": "aXY"}) == \
        "characters changed (2 new: 'XY', 20 missing: 'bcdefghijk', ...)"


def test_a_file_reached_twice_is_read_once(tmp_path):
    (tmp_path / "notes").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "notes" / name).write_text(f"the text of {name}\n" * 20)
    (tmp_path / "link.txt").symlink_to(tmp_path / "notes" / "b.txt")
    patterns = [tmp_path / "notes" / "b.txt", tmp_path / "notes", tmp_path / "link.txt", tmp_path / "notes" / "*.txt"]
    assert find_inputs(patterns) == [tmp_path / "notes" / "b.txt", tmp_path / "notes" / "a.txt"]
    meta = prepare_dataset(find_inputs(patterns), "char", tmp_path / "data").meta
    assert meta["train_documents"] + meta["val_documents"] == 2


def test_a_prepared_datasets_tokenizer_counts_by_what_it_is_now_not_by_its_path(tmp_path):
    for name, text in (("a.txt", "abc abc\n"), ("b.txt", "cab cab\n"), ("c.txt", "xyz abc\n")):
        (tmp_path / name).write_text(text * 50)
    prepare_dataset([tmp_path / "a.txt"], "char", tmp_path / "tok")
    first = prepare_dataset([tmp_path / "b.txt"], str(tmp_path / "tok"), tmp_path / "x").meta
    assert prepare_dataset([tmp_path / "b.txt"], f"{tmp_path}/./tok/", tmp_path / "x").reused  # the same, spelt anew
    prepare_dataset([tmp_path / "c.txt"], "char", tmp_path / "tok", overwrite=True)  # new characters: x, y, z
    with pytest.raises(DataError, match="holds another dataset"):  # x was made with the tokenizer tok had
        prepare_dataset([tmp_path / "b.txt"], str(tmp_path / "tok"), tmp_path / "x")
    again = prepare_dataset([tmp_path / "b.txt"], str(tmp_path / "tok"), tmp_path / "x", overwrite=True).meta
    assert len(again["tokenizer"]["chars"]) == len(first["tokenizer"]["chars"]) + 3


def test_a_pipe_is_refused_as_an_input_read_twice(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(DataError, match="is not a regular file .a pipe.., and prepare reads its inputs twice"):
        find_inputs([tmp_path])


def test_a_linked_folder_is_found_by_the_first_of_its_names_in_sorted_order(tmp_path):
    for order in ("zeta", "alpha"):  # the link made before the folder, and after it
        root = tmp_path / order
        root.mkdir()
        if order == "zeta":
            (root / "b_link").symlink_to(root / "a_real", target_is_directory=True)
        (root / "a_real").mkdir()
        (root / "a_real" / "x.txt").write_text("text\n")
        if order == "alpha":
            (root / "b_link").symlink_to(root / "a_real", target_is_directory=True)
        assert find_inputs([root]) == [root / "a_real" / "x.txt"]


def test_a_parquet_column_of_dictionary_encoded_text_is_text(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["first document", "second one", "first document"]
    pq.write_table(pa.table({"text": pa.array(texts).dictionary_encode()}), tmp_path / "c.parquet")
    assert [p.text for p in read_pieces([tmp_path / "c.parquet"])] == texts
