"""prepare never loses a dataset: bad input is one line with exit status 2 and every file on disk
as it was; a folder holding another dataset is replaced only when asked; a re-run of the same
preparation does nothing."""
from __future__ import annotations

import bz2
import gzip
import os
import shutil
import subprocess
import sys

import pytest

import data.build
from data.build import prepare_dataset
from data.dataset import open_dataset
from data.errors import DataError
from data.prepare import main
from helpers import REPO, assert_one_line_error, run_main, run_script, snapshot

OLD_TEXT = "An old dataset that must survive.\n" * 40


@pytest.fixture
def workspace(tmp_path):
    """tmp_path with an old dataset at data/old and a folder for inputs."""
    (tmp_path / "old.txt").write_text(OLD_TEXT)
    prepare_dataset([tmp_path / "old.txt"], "char", tmp_path / "data" / "old")
    (tmp_path / "in").mkdir()
    return tmp_path


def parquet_without_text(path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2], "body": ["a", "b"]}), path)


def damaged_parquet(path) -> None:
    """A Parquet file whose footer opens but whose text pages do not decompress."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [f"document {i} " * 50 for i in range(200)]}), path)
    data = bytearray(path.read_bytes())
    data[200:1200] = bytes(b ^ 0x5A for b in data[200:1200])
    path.write_bytes(bytes(data))


def loop_of_links(path) -> None:
    path.symlink_to(path.with_name("x2"))
    path.with_name("x2").symlink_to(path)


GOOD = b"Some good text, enough of it to split.\n" * 30
GOOD_INPUT = {"g.txt": GOOD}

# case: (files written to {in}, flags, fragments of the error line); --out_dir is {ws}/data/old unless given,
# and --replace_dataset=true is added but where the refusal to overwrite is the case: the old dataset survives anyway
BAD_INPUTS = {
    "missing path": ({}, ["--input={in}/nope.txt"], ["nope.txt not found"]),
    "empty folder": ({}, ["--input={in}"], ["holds no file"]),
    "empty path": (GOOD_INPUT, ["--input=", "--input={in}"], ["--input needs a path"]),  # not the current folder
    "binary file": ({"x.png": GOOD + bytes(range(256))}, ["--input={in}"], ["x.png is binary (a NUL byte at offset 1170)"]),
    "bzip2 file": ({"x.txt.bz2": bz2.compress(GOOD)}, ["--input={in}"], ["x.txt.bz2 is", "decompress or extract it"]),
    "gzipped tar": ({"x.tar.gz": gzip.compress(GOOD + bytes(512))}, ["--input={in}"],
                    ["x.tar.gz is binary", "decompress or extract it first"]),
    "UTF-16 text": ({"u.txt": GOOD.decode().encode("utf-16")}, ["--input={in}"],
                    ["u.txt is UTF-16 text, not UTF-8", "iconv -f utf-16"]),
    "non-UTF-8 text": ({"l.txt": GOOD + "naïve".encode("latin-1")}, ["--input={in}"],
                       ["l.txt is not UTF-8 (invalid byte at offset 1172)"]),
    "bad input for a dataset in new folders": ({"l.txt": GOOD + b"\xff"}, ["--input={in}", "--dataset={ws}/new/a/ds"],
                                               ["l.txt is not UTF-8"]),  # new/ and new/a/ stay unmade
    "JSONL line not JSON": ({"d.jsonl": b'{"text": "a"}\n{oops'}, ["--input={in}"], ["d.jsonl line 2 is not JSON"]),
    "JSONL line cut short": ({"d.jsonl": b'{"text": "a", "id": 3\n'}, ["--input={in}"],
                             ["d.jsonl line 1 is not JSON (Expecting ',' delimiter at column 22)"]),
    "JSONL text with half a character": ({"d.jsonl": b'{"text": "lone \\ud800 x"}\n'}, ["--input={in}"],
                                         ["d.jsonl line 1: field 'text' holds a \\u escape of half a character"]),
    "link to nothing": ({"b.txt": lambda path: path.symlink_to(path.parent / "gone.txt")}, ["--input={in}/b.txt"],
                        ["b.txt is a link to nothing"]),
    "tokenizer folder of another kind": ({"t/meta.json": b'{"tokenizer": {"kind": "char"}}'},
                                         ["--input={ws}/old.txt", "--tokenizer={in}/t"],
                                         ["t/meta.json does not describe a tokenizer"]),
    "tokenizer folder of no kind": ({"t/meta.json": b'{"tokenizer": "x"}'},
                                    ["--input={ws}/old.txt", "--tokenizer={in}/t"],
                                    ["t/meta.json does not describe a tokenizer"]),
    "tokenizer without end-of-text": ({"t/meta.json": b'{"tokenizer": {"kind": "char", "chars": "Aabc \\n"}}'},
                                      ["--input={ws}/old.txt", "--tokenizer={in}/t"],
                                      ["t's tokenizer has no end-of-text token, which ends each document here"]),
    "characters a char tokenizer lacks": ({"n.txt": b"Some new text\n" * 300 + b"with Q and ~ at its end\n"},
                                          ["--input={in}", "--tokenizer={ws}/data/old"],
                                          ["characters 'Q', 'S', 'w', 'x', '~' are not in this model's vocabulary"]),
    "JSONL line without the field": ({"d.jsonl": b'{"body": "a"}'}, ["--input={in}"],
                                     ["d.jsonl line 1 has no field 'text'", "--text_field"]),
    "JSONL line not UTF-8": ({"d.jsonl": b'\n{"text": "caf\xe9"}'}, ["--input={in}"],
                             ["d.jsonl line 2 is not UTF-8 (invalid byte at offset 14)"]),
    "Parquet without the column": ({"p.parquet": parquet_without_text}, ["--input={in}"],
                                   ["p.parquet has no column 'text' (it has id, body)"]),
    "not Parquet": ({"p.parquet": GOOD}, ["--input={in}"], ["p.parquet is not a readable Parquet file"]),
    "damaged gzip": ({"t.txt.gz": gzip.compress(GOOD)[:-30]}, ["--input={in}"], ["t.txt.gz cannot be read"]),
    "damaged Parquet": ({"p.parquet": damaged_parquet}, ["--input={in}"],
                        ["p.parquet cannot be read as Parquet (Corrupt snappy compressed data.); is it damaged?"]),
    "JSONL nested too deeply": ({"d.jsonl": b'{"text": "a", "b": ' + b"[" * 10**5 + b"]" * 10**5 + b"}\n"},
                                ["--input={in}"], ["d.jsonl line 1 nests its JSON too deeply to read"]),
    "tokenizer.json of another layout": ({"t/tokenizer.json": b"[]"}, ["--input={ws}/old.txt", "--tokenizer={in}/t"],
                                         ["t: its tokenizer files are not laid out as transformers writes them"]),
    "empty corpus": ({"e.txt": b"  \n", "f.txt": b""}, ["--input={in}"], ["holds no text"]),
    "vocab_size under 257": (GOOD_INPUT, ["--input={in}", "--tokenizer=bpe", "--bpe_vocab_size=256"],
                             ["bpe_vocab_size=256 is too small", "--bpe_vocab_size=257"]),
    "vocab_size over the text": (GOOD_INPUT, ["--input={in}", "--tokenizer=bpe", "--bpe_vocab_size=5000"],
                                 ["bpe_vocab_size=5000 is more than this text supports"]),
    "vocab_size for char": (GOOD_INPUT, ["--input={in}", "--bpe_vocab_size=300"], ["bpe_vocab_size is for --tokenizer=bpe"]),
    "vocab_size 0": (GOOD_INPUT, ["--input={in}", "--tokenizer=bpe", "--bpe_vocab_size=0"],
                     ["bpe_vocab_size=0 is too small"]),  # not the default's 4096
    "no training text left": (GOOD_INPUT, ["--input={in}", "--val_fraction=0.9999"],
                              ["val_fraction=0.9999 leaves no training text; give a smaller --val_fraction"]),
    "no training text left for a BPE": (GOOD_INPUT, ["--input={in}", "--val_fraction=0.9999", "--tokenizer=bpe"],
                                        ["val_fraction=0.9999 leaves no training text"]),  # not a BPE's complaint
    "a dataset among the inputs": ({"meta.json": b"{}", "train.bin": bytes(range(256))}, ["--input={in}"],
                                   ["train.bin is binary", "a prepared dataset's file"]),
    "val_fraction of 1": (GOOD_INPUT, ["--input={in}", "--val_fraction=1"], ["val_fraction=1.0 must be between 0 and 1"]),
    "another dataset there": (GOOD_INPUT, ["--input={in}"], ["holds another dataset; add --replace_dataset=true"]),
    "dataset is a file": (GOOD_INPUT, ["--input={in}", "--dataset={ws}/old.txt"], ["old.txt is a file, not a folder"]),
    "dataset inside a file": (GOOD_INPUT, ["--input={in}", "--dataset={ws}/old.txt/data"],
                              ["old.txt is a file, not a folder"]),
    "dataset in a loop of links": ({**GOOD_INPUT, "x1": loop_of_links}, ["--input={in}/g.txt", "--dataset={in}/x1"],
                                   ["x1 is a link in a loop of links; choose another --dataset"]),
    "dataset folder holds other files": (GOOD_INPUT, ["--input={in}", "--dataset={in}"],
                                  ["holds files that are not a dataset's (g.txt)"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_changes_nothing(workspace, case):
    files, flags, fragments = BAD_INPUTS[case]
    for name, content in files.items():
        (workspace / "in" / name).parent.mkdir(exist_ok=True)
        content(workspace / "in" / name) if callable(content) else (workspace / "in" / name).write_bytes(content)
    args = [flag.format(**{"in": workspace / "in", "ws": workspace}) for flag in flags]
    if not any(a.startswith("--dataset") for a in args):
        args.append(f"--dataset={workspace / 'data' / 'old'}")
    if case != "another dataset there":
        args.append("--replace_dataset=true")
    before = snapshot(workspace)
    assert_one_line_error(run_main(main, *args), *fragments)
    assert snapshot(workspace) == before  # nothing written, nothing left behind
    assert open_dataset(workspace / "data" / "old").meta["train_bytes"] > 0  # the old dataset, whole


def test_the_same_preparation_again_changes_nothing(workspace):
    before = snapshot(workspace)
    prepared = prepare_dataset([workspace / "old.txt"], "char", workspace / "data" / "old")
    assert prepared.reused and snapshot(workspace) == before
    with pytest.raises(Exception, match="holds another dataset"):
        prepare_dataset([workspace / "old.txt"], "char", workspace / "data" / "old", val_fraction=0.2)
    with open(workspace / "data" / "old" / "train.bin", "r+b") as f:
        f.truncate(3)  # the same dataset, damaged: named as such, and written again when asked
    with pytest.raises(Exception, match="holds a damaged copy of this dataset; add --replace_dataset=true"):
        prepare_dataset([workspace / "old.txt"], "char", workspace / "data" / "old")
    assert not prepare_dataset([workspace / "old.txt"], "char", workspace / "data" / "old", overwrite=True).reused


def test_an_input_read_another_way_is_another_dataset(workspace):
    """The same bytes renamed from .txt to .jsonl are read as documents, not as one text: no longer this dataset."""
    lines = b"".join(b'{"text": "document %d, its own text."}\n' % i for i in range(50))
    (workspace / "in" / "corpus.txt").write_bytes(lines)
    as_text = prepare_dataset([workspace / "in"], "char", workspace / "data" / "new")
    (workspace / "in" / "corpus.txt").rename(workspace / "in" / "corpus.jsonl")
    with pytest.raises(DataError, match="holds another dataset"):
        prepare_dataset([workspace / "in"], "char", workspace / "data" / "new")
    as_jsonl = prepare_dataset([workspace / "in"], "char", workspace / "data" / "new", overwrite=True)
    assert not as_jsonl.reused and as_text.meta["train_documents"] + as_text.meta["val_documents"] == 1
    assert as_jsonl.meta["train_documents"] + as_jsonl.meta["val_documents"] == 50


def unprivileged_prepare(*args: str) -> subprocess.CompletedProcess:
    """data/prepare.py as a user whom permissions stop: root runs it without its power to read and write past them."""
    drop = [] if os.geteuid() else ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if drop and not shutil.which("setpriv"):
        pytest.skip("root without setpriv cannot give up reading past permissions")
    return subprocess.run([*drop, sys.executable, "data/prepare.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_a_folder_that_cannot_be_read_is_named_not_skipped(workspace):
    (workspace / "in" / "a.txt").write_bytes(GOOD)
    (workspace / "in" / "locked").mkdir()
    (workspace / "in" / "locked" / "b.txt").write_bytes(GOOD)
    (workspace / "in" / "locked").chmod(0)
    try:
        refused = unprivileged_prepare(f"--input={workspace / 'in'}", f"--dataset={workspace / 'data' / 'new'}")
    finally:
        (workspace / "in" / "locked").chmod(0o755)
    assert_one_line_error(refused, f"input folder {workspace / 'in' / 'locked'} cannot be read (Permission denied)")
    assert not (workspace / "data" / "new").exists()


def test_a_dataset_folder_whose_files_cannot_be_removed_is_not_replaced(workspace):
    (workspace / "in" / "g.txt").write_bytes(GOOD)
    old = workspace / "data" / "old"
    before = snapshot(workspace)
    old.chmod(0o555)
    try:
        refused = unprivileged_prepare(f"--input={workspace / 'in'}", f"--dataset={old}", "--replace_dataset=true")
    finally:
        old.chmod(0o755)
    assert_one_line_error(refused, f"cannot replace {old}: its files cannot be removed (permission denied)")
    assert snapshot(workspace) == before  # the old dataset, and no staging folder left beside it


def test_overwrite_replaces_the_old_dataset_whole(workspace):
    (workspace / "in" / "new.txt").write_text("Brand new text for the folder.\n" * 30)
    meta = prepare_dataset([workspace / "in"], "gpt2", workspace / "data" / "old", overwrite=True).meta
    assert open_dataset(workspace / "data" / "old").meta == meta and meta["vocab_size"] == 50257
    assert sorted(p.name for p in (workspace / "data").iterdir()) == ["old"]  # no staging folder left


def test_a_dataset_behind_a_link_is_replaced_where_it_lies(workspace):
    """The link stays a link to the new dataset, and no staging folder is left on either side of it."""
    (workspace / "elsewhere").mkdir()
    old = open_dataset(workspace / "data" / "old").meta
    (workspace / "data" / "old").rename(workspace / "elsewhere" / "real")
    (workspace / "data" / "linked").symlink_to(workspace / "elsewhere" / "real")
    (workspace / "in" / "new.txt").write_text("Brand new text for the folder.\n" * 30)
    meta = prepare_dataset([workspace / "in"], "char", workspace / "data" / "linked", overwrite=True).meta
    assert (workspace / "data" / "linked").is_symlink()
    assert open_dataset(workspace / "elsewhere" / "real").meta == meta != old
    assert [p.name for p in (workspace / "data").iterdir()] == ["linked"]
    assert [p.name for p in (workspace / "elsewhere").iterdir()] == ["real"]


def test_staging_folders_of_dead_processes_are_removed(workspace):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = workspace / "data" / f".new.prepare-{finished.stdout.strip()}"
    alive = workspace / "data" / f".new.prepare-{os.getppid()}"  # pytest's parent: running
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "train.bin").write_bytes(b"half")
    prepare_dataset([workspace / "old.txt"], "char", workspace / "data" / "new")
    assert not dead.exists() and alive.exists()


@pytest.mark.slow
def test_the_command_says_one_line_for_bad_input_and_so_for_a_rerun(workspace):
    (workspace / "in" / "d.jsonl").write_text('{"text": "a"}\n{oops')
    before = snapshot(workspace)
    bad = run_script("data/prepare.py", f"--input={workspace / 'in'}", f"--dataset={workspace / 'new'}", check=False)
    assert_one_line_error(bad, "d.jsonl line 2 is not JSON")
    assert snapshot(workspace) == before
    rerun = run_script("data/prepare.py", f"--input={workspace / 'old.txt'}", f"--dataset={workspace / 'data' / 'old'}")
    assert "already holds this dataset" in rerun.stdout


@pytest.mark.slow
def test_a_prepare_finished_meanwhile_is_not_replaced_unseen(workspace, monkeypatch):
    (workspace / "in" / "a.txt").write_text("The text this run prepares.\n" * 30)
    (workspace / "in" / "b.txt").write_text("The text another run prepared meanwhile.\n" * 30)
    target, build = workspace / "data" / "new", data.build._build

    def other_prepare_finishes_first(*args, **kwargs):
        run_script("data/prepare.py", f"--input={workspace / 'in' / 'b.txt'}", f"--dataset={target}")
        return build(*args, **kwargs)
    monkeypatch.setattr(data.build, "_build", other_prepare_finishes_first)
    with pytest.raises(DataError, match="changed while this prepare ran .*nothing was replaced"):
        prepare_dataset([workspace / "in" / "a.txt"], "char", target)
    assert open_dataset(target).meta["inputs"][0]["path"].endswith("b.txt")
    assert sorted(p.name for p in (workspace / "data").iterdir()) == ["new", "old"]  # no staging folder left
    shutil.rmtree(target)  # the same preparation, started twice at once: the one finishing second finds it made
    assert prepare_dataset([workspace / "in" / "b.txt"], "char", target).reused


def test_a_dataset_given_as_a_path_here_is_never_named_as_a_name_under_data(workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    main([f"--input={workspace / 'old.txt'}", "--dataset=./notes"])
    assert capsys.readouterr().out.startswith(f"{workspace / 'notes'}: ")  # "notes" alone would mean data/notes


@pytest.mark.slow
def test_preparing_never_loads_torch(workspace):
    """prepare.py reads text and writes token files: torch's import (seconds) would only delay it, and a Ctrl-C
    during that import would be a traceback."""
    code = ("import sys, runpy; sys.argv = ['data/prepare.py', *sys.argv[1:]]\n"
            "try:\n    runpy.run_path('data/prepare.py', run_name='__main__')\n"
            "finally:\n    print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_ABSENT')")
    result = run_script("-c", code, f"--input={workspace / 'old.txt'}", f"--dataset={workspace / 'notes'}")
    assert result.stdout.strip().endswith("TORCH_ABSENT")


def test_an_input_written_to_while_it_is_prepared_is_refused(workspace, monkeypatch):
    """The first pass counts and hashes the text; a later pass that reads more (a log still growing) or less, or
    a file written since with as much text, stops with one line, and the folder is left as it was."""
    text, scan = workspace / "in" / "log.txt", data.build.scan_corpus
    for change in ("More lines, written while prepare ran.\n" * 40, "Cut short.", OLD_TEXT.upper()):
        text.write_text(OLD_TEXT)
        os.utime(text, (1e9, 1e9))  # written long before: a rewrite within the clock's tick still moves its time

        def scan_then_write(*args, change=change, **kwargs):
            result = scan(*args, **kwargs)
            text.write_text(OLD_TEXT + change if change.startswith("More") else change)
            return result

        monkeypatch.setattr(data.build, "scan_corpus", scan_then_write)
        before = snapshot(workspace / "data")
        with pytest.raises(DataError, match="^an input changed while it was being prepared .*once the inputs are"):
            prepare_dataset([text], "gpt2", workspace / "data" / "new")
        assert snapshot(workspace / "data") == before  # no dataset, no staging folder


def test_a_dataset_named_as_a_tokenizer_is_offered_as_its_folder(workspace, monkeypatch):
    monkeypatch.setattr("data.build.DATA_ROOT", workspace / "data")  # --dataset=old would mean this folder
    with pytest.raises(DataError, match=rf"^unknown tokenizer 'old'; .* \(the dataset old's is "
                                        rf"--tokenizer={workspace / 'data' / 'old'}\)$"):
        prepare_dataset([workspace / "old.txt"], "old", workspace / "data" / "new")
    monkeypatch.chdir(workspace)
    (workspace / "old").mkdir()  # a folder of that name here, neither a dataset nor a model folder
    with pytest.raises(DataError, match=rf"^--tokenizer=old is neither a prepared dataset's folder \(no meta.json\) "
                                        rf"nor a Hugging Face model's \(no tokenizer or model files\) \(the "
                                        rf"dataset old's is --tokenizer={workspace / 'data' / 'old'}\)$"):
        prepare_dataset([workspace / "old.txt"], "old/", workspace / "data" / "new")
    (workspace / "old" / "tokenizer.model").write_bytes(b"")  # a SentencePiece model's: what it lacks is named
    with pytest.raises(DataError, match=r"^old has no tokenizer.json; save the model's tokenizer there too"):
        prepare_dataset([workspace / "old.txt"], "old", workspace / "data" / "new")
    with pytest.raises(DataError, match=r"^unknown tokenizer ''; use one of "):  # not the folder prepare runs in
        prepare_dataset([workspace / "old.txt"], "", workspace / "data" / "new")
