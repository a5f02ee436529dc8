"""From generated token ids to text: stop strings, end-of-text and streaming."""
from __future__ import annotations

from data.tokenizer import Tokenizer


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters might still turn into a stop string or a
    multi-byte character, and so must not be printed yet."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    incomplete = len(text) - len(text.rstrip("\ufffd"))  # BPE tokens that end inside a UTF-8 character
    return max(hold, incomplete)


class SampleText:
    """The text of one sample as its tokens arrive; ends at a stop string or end-of-text."""

    def __init__(self, tokenizer: Tokenizer, stops: list[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.ids: list[int] = []
        self.text = ""
        self.done = False
        self.printed = 0  # characters already handed out by new_text()

    def add(self, token: int) -> None:
        if self.done:
            return
        if token == self.tokenizer.eot_token:  # <|endoftext|> always ends a GPT-2 sample
            self.done = True
            return
        self.ids.append(token)
        self.text = self.tokenizer.decode(self.ids)
        cuts = [self.text.find(s) for s in self.stops if s in self.text]
        if cuts:
            self.text = self.text[: min(cuts)]
            self.done = True

    def finish(self) -> None:
        self.done = True

    def new_text(self) -> str:
        """Text not handed out before that can no longer change."""
        end = len(self.text) if self.done else len(self.text) - _held_back(self.text, self.stops)
        chunk = self.text[self.printed : end]
        self.printed = max(self.printed, end)
        return chunk
