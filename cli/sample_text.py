"""From generated token ids to text: stop strings, end-of-text and streaming."""
from __future__ import annotations

import codecs

from data.tokenizer import Tokenizer


def _stop_prefix_at_end(text: str, stops: list[str]) -> int:
    """Length of the longest start of a stop string that text ends with: those
    characters may still become a stop string, so they must not be printed yet."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:n]):
                hold = n
                break
    return hold


class SampleText:
    """The text of one sample as its tokens arrive; ends at a stop string or end-of-text.

    Each token is decoded once, through an incremental UTF-8 decoder: `text`
    grows by whole characters only, and bytes of a character that a BPE token
    started wait in the decoder for the tokens that finish it.
    """

    def __init__(self, tokenizer: Tokenizer, stops: list[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.longest_stop = max((len(s) for s in self.stops), default=0)
        self.text = ""
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")  # as tokenizers decode
        self.done = False
        self.printed = 0  # characters already handed out by new_text()

    def add(self, token: int) -> None:
        if self.done:
            return
        if token == self.tokenizer.eot_token:  # the end of a document always ends a sample
            self.finish()
            return
        self._append(self.utf8.decode(self.tokenizer.decode_bytes([token])))

    def _append(self, piece: str) -> None:
        """Add decoded text and cut at the first stop string; only the tail can hold a new one."""
        search_from = max(0, len(self.text) - self.longest_stop + 1)
        self.text += piece
        cuts = [i for i in (self.text.find(s, search_from) for s in self.stops) if i >= 0]
        if cuts:
            self.text = self.text[: min(cuts)]
            self.done = True

    def finish(self) -> None:
        """No more tokens: bytes that waited for the rest of a character are final now."""
        if not self.done:
            self._append(self.utf8.decode(b"", final=True))
        self.done = True

    def new_text(self) -> str:
        """Text not handed out before that can no longer change."""
        end = len(self.text) if self.done else len(self.text) - _stop_prefix_at_end(self.text, self.stops)
        chunk = self.text[self.printed : end]
        self.printed = max(self.printed, end)
        return chunk
