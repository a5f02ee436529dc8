"""train.py then sample.py as real subprocesses, on a tiny corpus."""
import math
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
import torch

from helpers import REPO, TINY_TRAIN_FLAGS, run_script

pytestmark = pytest.mark.slow  # the commands run as subprocesses


def test_prepare_train_sample(tmp_path, corpus_file, corpus_text):
    data_dir, out_dir = tmp_path / "data" / "tiny", tmp_path / "out"
    prep = run_script(str(REPO / "data" / "prepare.py"), f"--input={corpus_file}", "--tokenizer=char",
                      "--dataset=data/tiny", cwd=tmp_path)  # a path from the current folder: named as given
    assert prep.stdout.startswith("data/tiny: ") and "train and" in prep.stdout and (data_dir / "train.bin").is_file()
    assert f"vocabulary {len(set(corpus_text)) + 1} (char: {len(set(corpus_text))} characters and <|endoftext|>)" \
        in prep.stdout

    train = run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={data_dir}", f"--out_dir={out_dir}")
    assert "step 40: train loss" in train.stderr + train.stdout
    assert "--- sample ---" in train.stdout
    assert f"the run: {out_dir / 'ckpt.pt'} (latest), best.pt, log.jsonl and loss.png in {out_dir}" in train.stdout
    for command in ("sample.py", "eval.py", "attention.py"):  # what to run next on it
        assert f"python {command} --out_dir={out_dir}" in train.stdout

    checkpoint = torch.load(out_dir / "ckpt.pt", weights_only=True)
    for key in ("model", "optimizer", "config", "model_args", "tokenizer", "iter_num", "best_val_loss"):
        assert key in checkpoint
    assert checkpoint["iter_num"] == 40
    assert checkpoint["model_args"]["n_layer"] == 2 and checkpoint["config"]["n_embd"] == 32
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in checkpoint["model"])
    counts = Counter(corpus_text)
    unigram_entropy = -sum(n / len(corpus_text) * math.log(n / len(corpus_text)) for n in counts.values())  # 3.0
    assert checkpoint["best_val_loss"] < unigram_entropy - 1.0  # it uses context, not only characters' frequencies
    assert (out_dir / "best.pt").is_file()

    args = ["sample.py", f"--out_dir={out_dir}", "--prompt=Shall I", "--max_new_tokens=60", "--num_samples=2", "--seed=7"]
    first = run_script(*args).stdout
    samples = first.split("\n---------------\n")
    assert len(samples) == 3 and samples[2] == ""  # two samples, each followed by a separator
    for sample in samples[:2]:
        assert sample.startswith("Shall I") and len(sample) == len("Shall I") + 60
        assert set(sample) <= set(corpus_text)  # only characters of the training text
    assert run_script(*args).stdout == first  # same seed, same text
    assert run_script(*args[:-1], "--seed=8").stdout != first

    timing = run_script("bench.py", "first_token", f"--out_dir={out_dir}", "--repeats=1", "--with_compile=false").stdout
    best, median = map(float, re.search(r"eager +([\d.]+) s at best, +([\d.]+) s median over 1", timing).groups())
    assert 0 < best == median
    assert float(re.search(r"import torch' alone +([\d.]+) s at best", timing).group(1)) > 0  # the floor
    refused = run_script("bench.py", "first_token", f"--out_dir={tmp_path / 'none'}", check=False)
    assert refused.returncode == 2 and "checkpoint" in refused.stderr and "Traceback" not in refused.stderr


def test_sample_streams_and_stops_quietly_when_its_reader_leaves(trained_out):
    """One sample is printed token by token: the reader takes the prompt and the first new
    character, then closes the pipe, and sample.py's next write finds it closed.

    5,000 characters fit in Python's 8 KB stdout buffer and take seconds to generate, so a
    sample.py that printed only at the end would write them all and exit 0 instead."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered as for a user's pipe
    command = [sys.executable, "sample.py", f"--out_dir={trained_out}", "--prompt=Shall I", "--max_new_tokens=5000"]
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        head = proc.stdout.read(len("Shall I") + 1)
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        proc.wait(timeout=300)
    assert head.startswith(b"Shall I") and len(head) == len("Shall I") + 1
    assert proc.returncode == 141, stderr  # 128 + SIGPIPE: it was still writing, like `head` makes any Unix tool
    assert stderr == ""  # no traceback, no message


def test_sample_py_cached_and_uncached_print_the_same_greedy_text(trained_out):
    """500 tokens through a 32-token context: the window is cut and re-encoded many times."""
    args = ["sample.py", f"--out_dir={trained_out}", "--prompt=Shall I", "--max_new_tokens=500", "--temperature=0"]
    cached = run_script(*args).stdout
    assert len(cached) == len("Shall I") + 500 + len("\n---------------\n")
    assert run_script(*args, "--use_cache=false").stdout == cached


def test_sample_py_stops_each_sample_of_a_batch_at_its_stop_string(trained_out):
    args = ["sample.py", f"--out_dir={trained_out}", "--prompt=Shall I", "--max_new_tokens=300", "--num_samples=3"]
    full = run_script(*args).stdout.split("\n---------------\n")[:3]  # the same seed: the same samples, uncut
    cut = run_script(*args, "--stop=e", "--stop=\\n").stdout.split("\n---------------\n")[:3]
    for whole, stopped in zip(full, cut):
        rest = whole[len("Shall I"):]
        first = min(i for i in (rest.find("e"), rest.find("\n"), len(rest)) if i >= 0)
        assert stopped == "Shall I" + rest[:first]


def test_a_prompt_longer_than_the_context_is_read_from_its_end(trained_out, tmp_path):
    """block_size is 32: the model reads the prompt's last 32 characters, so a prompt that
    differs only before them gives the same continuation; sample.py says so in one line."""
    tail = "Shall I compare thee to a summer"  # 32 characters
    args = ["sample.py", f"--out_dir={trained_out}", "--max_new_tokens=40", "--temperature=0"]
    long_a = run_script(*args, f"--prompt={'And often ' * 6}{tail}")
    long_b = run_script(*args, f"--prompt={'Rough winds ' * 5}{tail}")
    assert long_a.stderr.strip() == "note: the prompt is 92 tokens; the model reads its last 32 (block_size)"
    continuation = long_a.stdout.split(tail, 1)[1]
    assert len(continuation) == 40 + len("\n---------------\n")
    assert long_b.stdout.split(tail, 1)[1] == continuation
    assert run_script(*args, f"--prompt={tail}").stdout.split(tail, 1)[1] == continuation


def test_prepare_a_folder_with_a_trained_bpe_then_train_and_sample(tmp_path, corpus_text):
    """A multilingual folder plus a JSONL of verses, a BPE trained on it, a tiny model trained on that;
    sample.py then runs from the checkpoint alone (the dataset folder removed)."""
    import json
    import shutil

    from corpus_files import write_corpus

    corpus = write_corpus(tmp_path / "corpus")
    stanzas = corpus_text.split("\n")
    (corpus / "verses.jsonl").write_text("".join(json.dumps({"text": "\n".join(stanzas[i : i + 6])}) + "\n"
                                                 for i in range(0, 600, 6)))
    data_dir, out_dir = tmp_path / "data" / "bpe", tmp_path / "out"
    prep = run_script("data/prepare.py", f"--input={corpus}", "--tokenizer=bpe", "--bpe_vocab_size=320",
                      f"--dataset={data_dir}")
    assert "vocabulary 320 (bpe)" in prep.stdout and (data_dir / "tokenizer.tiktoken").is_file()
    run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={data_dir}", f"--out_dir={out_dir}")
    checkpoint = torch.load(out_dir / "ckpt.pt", weights_only=True)
    assert checkpoint["tokenizer"]["kind"] == "bpe" and checkpoint["model_args"]["vocab_size"] == 320
    scores = json.loads(run_script("eval.py", f"--out_dir={out_dir}", "--json=true").stdout)
    meta = json.loads((data_dir / "meta.json").read_text())
    assert scores["tokens"] == meta["val_tokens"] - 1  # every token of the split but the first is predicted
    assert meta["val_bytes"] - 16 <= scores["bytes"] < meta["val_bytes"]  # end-of-text tokens count no bytes
    shutil.rmtree(data_dir)
    prompt = "Shall I 日本"  # characters the tokenizer never saw in this order still encode, byte by byte
    sample = run_script("sample.py", f"--out_dir={out_dir}", f"--prompt={prompt}", "--max_new_tokens=30").stdout
    assert sample.startswith(prompt) and sample.endswith("\n---------------\n")
    unprompted = run_script("sample.py", f"--out_dir={out_dir}", "--max_new_tokens=30", "--seed=3").stdout
    assert "<|endoftext|>" not in unprompted  # end-of-text ends a sample, it is never printed
