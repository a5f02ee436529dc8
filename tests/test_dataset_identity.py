"""A checkpoint knows the data it was trained on: resume, eval.py and open_dataset refuse
data that is not what it claims to be, and fine-tuning on new data is a choice made out loud."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import data.dataset
from config.errors import UserError
from config.settings import TrainConfig
from data.dataset import dataset_identity, open_dataset
from data.errors import DataError
from helpers import (TINY_TRAIN_FLAGS, assert_one_line_error, fingerprint, prepare_text, run_command, run_script,
                     snapshot)
from training.init_from import check_resume_data


def test_the_identity_is_the_fingerprint_of_the_bins_and_the_tokenizer(char_dataset, tmp_path):
    """As meta.json records them; a dataset without a fingerprint is of an earlier format, to prepare again."""
    meta = json.loads((char_dataset / "meta.json").read_text())
    assert dataset_identity(open_dataset(char_dataset)) == {"fingerprint": fingerprint(char_dataset),
                                                            "tokenizer": meta["tokenizer"]}
    older = shutil.copytree(char_dataset, tmp_path / "older")
    del meta["fingerprint"]
    (older / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="no fingerprint of its token files: an earlier format.*re-run python data/prepare"):
        open_dataset(older)


def test_token_ids_outside_the_vocabulary_are_refused_naming_the_file(tmp_path, corpus_text, monkeypatch):
    monkeypatch.setattr(data.dataset, "CHUNK_TOKENS", 7)  # the bad id sits in a later chunk
    meta = prepare_text(corpus_text, "char", tmp_path / "d")
    val = np.fromfile(tmp_path / "d" / "val.bin", dtype=np.uint16)
    val[100] = meta["vocab_size"]  # one past the last id
    val.tofile(tmp_path / "d" / "val.bin")
    with pytest.raises(DataError, match=rf"val.bin holds token id {meta['vocab_size']}, outside the vocabulary of "
                                        rf"{meta['vocab_size']} in meta.json; re-run python data/prepare.py"):
        open_dataset(tmp_path / "d")
    val[100] = meta["vocab_size"] - 1
    val.tofile(tmp_path / "d" / "val.bin")
    open_dataset(tmp_path / "d")


CHARS = {"kind": "char", "chars": "\n abc"}
SAVED = {"folder": "plays", "fingerprint": "f" * 64, "tokenizer": CHARS}


def checkpoint() -> dict:
    return {"tokenizer": CHARS, "dataset": SAVED}


@pytest.mark.parametrize("allow_new_data", [False, True])
def test_another_tokenizer_is_refused_whatever_the_setting(allow_new_data):
    identity = {"fingerprint": "0" * 64, "tokenizer": {"kind": "char", "chars": "\n abcd"}}
    with pytest.raises(UserError) as refused:
        check_resume_data(checkpoint(), identity, TrainConfig(dataset="plays", allow_new_data=allow_new_data))
    assert str(refused.value) == ("cannot resume on dataset plays: it was prepared with another tokenizer than this "
                                  "checkpoint's (characters changed (1 new: 'd')), which this model cannot read; "
                                  "prepare it with the model's tokenizer (data/prepare.py --tokenizer=FOLDER: a dataset "
                                  "prepared with it, or python export.py's model folder), or train on it from scratch "
                                  "in a new --out_dir")


def test_new_token_files_are_refused_unless_allow_new_data(capsys):
    identity = {"fingerprint": "0" * 64, "tokenizer": CHARS}
    with pytest.raises(UserError, match="^cannot resume: the token files of dataset plays changed since this "
                                        "checkpoint was trained on them; start a new run in a new --out_dir, or "
                                        "continue on this data as fine-tuning with --allow_new_data=true$"):
        check_resume_data(checkpoint(), identity, TrainConfig(dataset="plays"))
    with pytest.raises(UserError, match=r"dataset poems is not the one this checkpoint was trained on \(plays\)"):
        check_resume_data(checkpoint(), identity, TrainConfig(dataset="poems"))
    assert check_resume_data(checkpoint(), identity, TrainConfig(dataset="plays", allow_new_data=True)) is True
    assert "fine-tuning on new data (plays)" in capsys.readouterr().out
    assert check_resume_data(checkpoint(), {**identity, "fingerprint": "f" * 64}, TrainConfig(dataset="plays")) is False


# ---- the commands, as subprocesses ----

def train(run_dir, *extra, check=False):
    return run_script("train.py", *TINY_TRAIN_FLAGS, "--sample_tokens=0", f"--dataset={run_dir / 'data'}",
                      f"--out_dir={run_dir / 'out'}", "--init_from=resume", "--max_iters=40", *extra, check=check)


@pytest.fixture
def run_dir(trained_out, char_dataset, tmp_path):
    """A finished 20-step run (out/) and its dataset (data/), which the tests prepare again."""
    shutil.copytree(trained_out, tmp_path / "out")
    shutil.copytree(char_dataset, tmp_path / "data")
    state = torch.load(tmp_path / "out" / "ckpt.pt", weights_only=True)
    state["config"]["dataset"] = state["dataset"]["folder"] = str(tmp_path / "data")  # trained on this copy
    torch.save(state, tmp_path / "out" / "ckpt.pt")
    return tmp_path


def shuffled_lines(text: str) -> str:
    """The same characters (so the same char tokenizer), other token files."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[1::2] + lines[::2])


@pytest.mark.slow
def test_resume_on_a_reprepared_dataset_is_refused_then_continued_as_fine_tuning(run_dir, corpus_text):
    shutil.rmtree(run_dir / "data")
    prepare_text(shuffled_lines(corpus_text), "char", run_dir / "data", overwrite=True)
    before = snapshot(run_dir)
    assert_one_line_error(train(run_dir), "the token files of dataset", "changed since this checkpoint was trained",
                          "--allow_new_data=true")
    assert snapshot(run_dir) == before
    result = train(run_dir, "--allow_new_data=true", check=True)
    assert "resume: fine-tuning on new data" in result.stdout
    state = torch.load(run_dir / "out" / "ckpt.pt", weights_only=True)
    assert state["iter_num"] == 40 and state["dataset"]["fingerprint"] == fingerprint(run_dir / "data")
    assert state["loader"] == {"epoch": 0, "cursor": 20 * 8, "world_size": 1}  # 20 steps of 8 windows: a walk afresh


@pytest.mark.slow
@pytest.mark.parametrize("flag", [[], ["--allow_new_data=true"]])
def test_resume_on_a_dataset_with_another_vocabulary_is_refused_without_a_word_about_vocab_size(run_dir, corpus_text,
                                                                                                 flag):
    shutil.rmtree(run_dir / "data")
    prepare_text(corpus_text + "Zebras!\n", "char", run_dir / "data", overwrite=True)
    before = snapshot(run_dir)
    result = train(run_dir, *flag)
    assert_one_line_error(result, "prepared with another tokenizer than this checkpoint's", "(2 new: '!Z')",
                          "which this model cannot read")
    assert "vocab_size" not in result.stderr
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_a_checkpoint_without_a_dataset_record_is_refused_naming_how_to_make_one(run_dir):
    state = torch.load(run_dir / "out" / "ckpt.pt", weights_only=True)
    del state["dataset"]
    torch.save(state, run_dir / "out" / "ckpt.pt")
    before = snapshot(run_dir)
    assert_one_line_error(run_command("train.py", *TINY_TRAIN_FLAGS, "--sample_tokens=0", f"--dataset={run_dir / 'data'}",
                                      f"--out_dir={run_dir / 'out'}", "--init_from=resume"),
                          "is not a checkpoint of this project (no dataset); use one written by train.py")
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_eval_refuses_to_score_a_dataset_tokenized_another_way(run_dir, corpus_text):
    shutil.rmtree(run_dir / "data")
    prepare_text(corpus_text, "gpt2", run_dir / "data", overwrite=True)
    before = snapshot(run_dir)
    assert_one_line_error(run_command("eval.py", f"--out_dir={run_dir / 'out'}"),
                          f"dataset {run_dir / 'data'} was prepared with another tokenizer than this checkpoint's "
                          f"(gpt2 instead of char (36 characters)); evaluate a text with --text_file=FILE")
    assert snapshot(run_dir) == before
