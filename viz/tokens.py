"""Tokens as text a person can read on an axis or a page."""

from data.tokenizer import Tokenizer

VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}  # whitespace would vanish from a tick label


def token_texts(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each token decoded on its own (a BPE piece of a character may show as U+FFFD)."""
    return [tokenizer.decode([i]) for i in ids]


def tick_label(text: str) -> str:
    """Whitespace and other invisible characters made visible: ' the' -> '␣the'."""
    shown = "".join(VISIBLE.get(ch, ch if ch.isprintable() else f"\\x{ord(ch):02x}") for ch in text)
    return shown or "∅"
