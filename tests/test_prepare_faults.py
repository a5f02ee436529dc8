"""Fault injection: prepare killed (SIGKILL) or stopped (SIGTERM) at six moments while it
re-prepares a folder leaves that folder holding the whole old dataset or the whole new one,
checked by loading it; the next prepare finishes the job."""
from __future__ import annotations

import pytest

from data import load_tokenizer
from data.build import prepare_dataset
from data.dataset import open_dataset
from helpers import run_script

pytestmark = pytest.mark.slow  # prepare runs as a subprocess

OLD_TEXT = "The old dataset, prepared by characters.\n" * 300
NEW_TEXT = "A new corpus, one document per file, with a trained tokenizer. " * 60
MOMENTS = ["scanned", "train.bin", "val.bin", "tokenizer.tiktoken", "meta.json", "exchanged"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The old dataset, and the new inputs with the dataset they make, prepared once undisturbed."""
    root = tmp_path_factory.mktemp("faults")
    (root / "old.txt").write_text(OLD_TEXT)
    prepare_dataset([root / "old.txt"], "char", root / "old")
    (root / "new").mkdir()
    for i in range(20):  # 20 documents: 2 held out for validation
        (root / "new" / f"{i:02}.txt").write_text(f"Document {i}. " + NEW_TEXT)
    expected = prepare_dataset([root / "new"], "bpe", root / "expected", vocab_size=300).meta
    return root, expected


def whole_dataset(folder) -> str:
    """Which dataset the folder holds, checked by loading it and decoding every token."""
    dataset = open_dataset(folder)
    tok = load_tokenizer(folder)
    text = tok.decode(dataset.train.tolist()) + tok.decode(dataset.val.tolist())
    if text == OLD_TEXT:
        return "old"
    assert text.count("<|endoftext|>") == 20 and NEW_TEXT in text, "a mixed or damaged dataset"
    return "new"


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_killed_prepare_leaves_the_old_dataset_or_the_new_one(corpora, tmp_path, moment, signal_name):
    root, expected = corpora
    target = tmp_path / "data" / "plays"
    prepare_dataset([root / "old.txt"], "char", target)
    flags = [f"--input={root / 'new'}", "--tokenizer=bpe", "--bpe_vocab_size=300", f"--dataset={target}", "--replace_dataset=true"]
    result = run_script("tests/prepare_with_fault.py", moment, signal_name, *flags, check=False)
    assert f"fault injected: {moment}" in result.stderr
    held = whole_dataset(target)
    assert held == ("new" if moment == "exchanged" else "old")
    if signal_name == "SIGTERM":  # stopped as by Ctrl-C: one line, and its staging folder gone; 128 + SIGTERM
        assert result.returncode == 143 and result.stderr.strip().splitlines()[-1].startswith("interrupted")
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in target.parent.iterdir()) == ["plays"]
        return
    assert result.returncode == -9
    run_script("data/prepare.py", *flags)  # the next run removes what the killed one left, and finishes
    assert whole_dataset(target) == "new" and open_dataset(target).meta["fingerprint"] == expected["fingerprint"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["plays"]


def test_a_stopped_prepare_of_a_new_folder_says_the_folder_holds_nothing(corpora, tmp_path):
    root, _ = corpora
    target = tmp_path / "data" / "fresh"
    result = run_script("tests/prepare_with_fault.py", "scanned", "SIGTERM", f"--input={root / 'old.txt'}",
                        f"--dataset={target}", check=False)
    assert result.returncode == 143
    assert result.stderr.strip().splitlines()[-1].startswith(f"interrupted: {target} holds nothing or, if")
    assert not target.exists()
