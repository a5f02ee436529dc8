"""prepare's memory does not grow with the corpus: the peak resident memory of a
prepare subprocess for a 16 MB text is that of a 4 MB one. (Holding the text whole,
or its tokens as Python ints, would add well over 40 MB at 16 MB.)"""
from __future__ import annotations

import pytest

from bench import peak_rss_of_prepare

pytestmark = pytest.mark.slow  # prepare runs as a subprocess


def test_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    line = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer 1600.\n"
    peaks = {}
    for mb in (4, 16):
        source = tmp_path / f"{mb}.txt"
        source.write_text(line * (mb * 2**20 // len(line)))
        peaks[mb], _ = peak_rss_of_prepare([f"--input={source}", "--tokenizer=gpt2", f"--dataset={tmp_path / str(mb)}"])
    assert peaks[16] - peaks[4] < 40, peaks
    assert peaks[4] < 1000, peaks
