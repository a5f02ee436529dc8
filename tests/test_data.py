"""prepare -> bins -> batches, and the loader's walk through the data."""
import json
from pathlib import Path

import numpy as np
import pytest

from data.errors import DataError
from data.dataset import open_dataset
from data.loader import BatchLoader
from data.sources import read_text
from data.tokenizer import tokenizer_from_description
from helpers import prepare_text


def test_prepare_writes_bins_that_decode_to_the_text(char_dataset, corpus_text):
    meta = json.loads((char_dataset / "meta.json").read_text())
    dataset = open_dataset(char_dataset)
    tok = tokenizer_from_description(meta["tokenizer"], Path("meta.json"))
    assert dataset.val[-1] == tok.eot_token == len(tok.chars)  # one document: it ends the validation tail
    decoded = tok.decode(dataset.train.tolist()) + tok.decode(dataset.val.tolist())
    assert decoded == corpus_text  # end-of-text decodes to nothing
    assert meta["train_tokens"] + meta["val_tokens"] == len(corpus_text) + 1
    assert abs(meta["val_tokens"] / len(corpus_text) - 0.1) < 0.001
    assert meta["dtype"] == "uint16" and dataset.train.dtype == np.uint16


def test_gpt2_dataset_round_trip(tmp_path, corpus_text):
    meta = prepare_text(corpus_text, "gpt2", tmp_path / "bpe", val_fraction=0.2)
    dataset = open_dataset(tmp_path / "bpe")
    tok = tokenizer_from_description(meta["tokenizer"], Path("meta.json"))
    assert dataset.val[-1] == 50256  # <|endoftext|> ends the one document
    assert tok.decode(dataset.train.tolist()) + tok.decode(dataset.val[:-1].tolist()) == corpus_text
    assert meta["vocab_size"] == 50257 and meta["train_bytes"] + meta["val_bytes"] == len(corpus_text.encode())


def test_batches_are_windows_of_the_data_shifted_by_one(char_dataset):
    data = open_dataset(char_dataset).train
    loader = BatchLoader(data, block_size=16, batch_size=5, seed=3)
    x, y = loader.next_batch()
    assert x.shape == y.shape == (5, 16)
    assert (x[:, 1:] == y[:, :-1]).all()
    text = data.tolist()
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        # each row is a real stretch of the corpus, and y its continuation by one token
        starts = [s for s in range(len(text) - 16) if text[s : s + 16] == row_x]
        assert any(text[s + 1 : s + 17] == row_y for s in starts)


def test_each_epoch_sees_every_window_once():
    tokens = np.arange(1001, dtype=np.uint16)  # distinct tokens: a window is its first token
    loader = BatchLoader(tokens, block_size=10, batch_size=1, seed=0)
    starts = []
    while loader.state_dict()["epoch"] == 0:
        starts.append(loader.next_batch()[0][0, 0].item())
    starts.pop()  # the call that began the next epoch
    first = min(starts)
    # one grid of non-overlapping windows, each seen once, from an offset below block_size to the last whose
    # target fits (start + 10 <= 1000)
    assert first < 10 and sorted(starts) == list(range(first, 991, 10))


def test_loader_state_resumes_the_same_batches():
    tokens = np.arange(5000, dtype=np.uint16)
    a = BatchLoader(tokens, block_size=8, batch_size=9, seed=1)
    for _ in range(70):  # crosses an epoch boundary
        a.next_batch()
    b = BatchLoader(tokens, block_size=8, batch_size=9, seed=1)
    b.load_state_dict(a.state_dict())
    for _ in range(80):
        assert (a.next_batch()[0] == b.next_batch()[0]).all()


def test_ranks_get_disjoint_windows():
    tokens = np.arange(2001, dtype=np.uint16)
    orders = [BatchLoader(tokens, 10, 4, seed=0, rank=r, world_size=2)._order for r in (0, 1)]
    assert len(orders[0]) == len(orders[1])
    assert not set(orders[0].tolist()) & set(orders[1].tolist())
    together = sorted(orders[0].tolist() + orders[1].tolist())
    grid = list(range(together[0], 1991, 10))  # every window of the epoch's grid, as for one process
    assert together[0] < 10 and set(together) <= set(grid) and len(grid) - len(together) <= 1  # equal shares


@pytest.mark.parametrize("before, after", [(2, 1), (1, 2), (2, 3)])
def test_a_walk_resumed_on_another_number_of_ranks_takes_each_window_of_the_epoch_once(before, after):
    tokens = np.arange(4001, dtype=np.uint16)  # distinct tokens: a window is its first token
    ranks = [BatchLoader(tokens, 10, 1, seed=0, rank=r, world_size=before) for r in range(before)]
    taken = [loader.next_batch()[0][0, 0].item() for _ in range(30) for loader in ranks]
    resumed = [BatchLoader(tokens, 10, 1, seed=0, rank=r, world_size=after) for r in range(after)]
    for loader in resumed:
        loader.load_state_dict(ranks[0].state_dict())  # the checkpoint holds the main process's
    while resumed[0].state_dict()["epoch"] == 0:
        taken += [loader.next_batch()[0][0, 0].item() for loader in resumed]
    del taken[-after:]  # the step that began the next epoch
    grid = range(min(taken), 3991, 10)  # the epoch's windows
    assert len(set(taken)) == len(taken) and set(taken) <= set(grid)
    assert len(grid) - len(taken) < after  # the resumed ranks' equal shares leave out fewer than one each


def test_too_short_split_is_a_clear_error():
    with pytest.raises(DataError, match="too few for block_size=64"):
        BatchLoader(np.arange(50, dtype=np.uint16), block_size=64, batch_size=2, seed=0, split="val")


def test_read_text_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(DataError, match=r"/dev/zero is not a regular file \(a device or a pipe\)"):
        read_text("/dev/zero")  # never read: it never ends
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="is empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("abc caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="offset 7"):
        read_text(tmp_path / "latin1.txt")
    (tmp_path / "docs.jsonl").write_text('{"text": "First doc."}\n')  # eval.py would score its markup
    with pytest.raises(DataError, match="docs.jsonl holds documents, not a text; give a UTF-8 text file"):
        read_text(tmp_path / "docs.jsonl")
    (tmp_path / "val.bin").write_bytes(b"\x01\x00\x02\x00")
    with pytest.raises(DataError, match=r"is binary \(a NUL byte at offset 1\); give a UTF-8 text file$"):
        read_text(tmp_path / "val.bin")


def test_a_byte_order_mark_is_not_text_and_errors_count_its_bytes(tmp_path):
    (tmp_path / "bom.txt").write_text("\ufeffTo be\n\ufeff", encoding="utf-8")  # U+FEFF: bytes EF BB BF
    assert read_text(tmp_path / "bom.txt") == "To be\n\ufeff"  # only the file's first character is a mark
    (tmp_path / "bom_latin1.txt").write_bytes(b"\xef\xbb\xbfabc caf\xe9")
    with pytest.raises(DataError, match="offset 10"):
        read_text(tmp_path / "bom_latin1.txt")


def test_a_dataset_with_a_slash_is_a_path_and_outputs_get_their_folder(tmp_path):
    from data.dataset import DATA_ROOT, dataset_dir
    from data.files import write_atomically
    assert dataset_dir("./mine") == Path("./mine") and dataset_dir("a/b") == Path("a/b")
    assert dataset_dir("mine") == DATA_ROOT / "mine"
    write_atomically(tmp_path / "new" / "deeper" / "page.html", b"<p>")  # eval's --surprise, compare's --plot
    assert (tmp_path / "new" / "deeper" / "page.html").read_bytes() == b"<p>"
