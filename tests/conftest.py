"""Shared fixtures: a tiny corpus, a dataset made from it, one tiny trained run
and one attention.py run over it.

Two tiers: `python -m pytest -m "not slow"` after every change, the whole suite
before a commit. A test is slow when it is marked so (it starts the commands as
subprocesses) or when it needs the session's trained run (marked here).

The tests run in one worker process per core (pytest-xdist, pytest.ini). Each worker,
and every command it starts, computes on its share of the cores, and all of them
compile into one inductor cache for the session: never the user's.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from attention_reference import TEXT
from helpers import TINY_TRAIN_FLAGS, prepare_text, run_script

SLOW_FIXTURES = {"trained_out", "attention_run"}  # each starts train.py or attention.py once per session


def pytest_configure() -> None:
    # a suite started with Ctrl-C ignored (a background job, nohup) passes that on to every worker and command,
    # which the tests of Ctrl-C would then see ignored: each process starts with the OS's action, as from a terminal
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # the tests never download: the hub client is offline in every process (it reads this at its import)
    os.environ["HF_HUB_OFFLINE"] = "1"
    # compiled decoding without timing its matrix kernels: the compile takes a third of the time (the tests check
    # tokens, not speed; test_compiled_decoding.py's RoPE case times them, as sample.py does by default)
    os.environ["TORCHINDUCTOR_MAX_AUTOTUNE"] = "0"
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # more threads than cores would make every process wait on the others
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        # inductor compiles kernels in a pool of one process per core: a compiling test would take every core
        # from its neighbours in bursts, and the time-budget tests measure the pace of the machine
        os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory) -> Path:
    """The session's inductor cache, shared by the workers (in their temporary folders' parent): kernels one
    compile built and timed serve the next."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "inductor-cache"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


VERSES = [
    "Shall I compare thee to a summer's day?",
    "Thou art more lovely and more temperate:",
    "Rough winds do shake the darling buds of May,",
    "And summer's lease hath all too short a date;",
    "Sometime too hot the eye of heaven shines,",
    "And often is his gold complexion dimm'd;",
]


@pytest.fixture(scope="session")
def corpus_text() -> str:
    """About 25 kB of verse, sonnet-like and deterministic."""
    lines = [VERSES[(i * 7 + i // 6) % len(VERSES)] for i in range(600)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, corpus_text) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "input.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def char_dataset(tmp_path_factory, corpus_text) -> Path:
    folder = tmp_path_factory.mktemp("data") / "tiny_char"
    prepare_text(corpus_text, "char", folder)
    return folder


@pytest.fixture(scope="session")
def trained_out(char_dataset, tmp_path_factory) -> Path:
    """out_dir of a finished tiny training run (train.py as a subprocess, 20 steps).
    Shared by many tests: read it, or copy it before changing anything."""
    out = tmp_path_factory.mktemp("trained")
    run_script("train.py", *TINY_TRAIN_FLAGS, "--max_iters=20", "--sample_tokens=0",
               f"--dataset={char_dataset}", f"--out_dir={out}")
    return out


@pytest.fixture(scope="session")
def attention_run(trained_out, tmp_path_factory) -> Path:
    """The folder one end-to-end run of attention.py wrote (its stdout saved as stdout.txt)."""
    folder = tmp_path_factory.mktemp("attention_run")
    result = run_script("attention.py", f"--out_dir={trained_out}", f"--text={TEXT}", f"--pictures_dir={folder}", "--device=cpu")
    (folder / "stdout.txt").write_text(result.stdout)
    return folder
