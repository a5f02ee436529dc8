"""Shared fixtures: a tiny corpus, a dataset made from it, tiny model configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from data.prepare import prepare_dataset

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
    prepare_dataset(corpus_text, "char", folder)
    return folder
