"""Which text is held out for validation.

With several documents, k = round(n * val_fraction) of the n documents (chosen
by a generator seeded with `seed`) are the validation split, whole. With one
document, or too few for k to reach 1, the validation split is the tail of the
whole text: its last val_fraction of characters, cut at a character as before
documents existed. The plan depends on the corpus and the settings alone, never
on how many workers encode it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .sources import Piece


@dataclass(frozen=True)
class SplitPlan:
    val_documents: np.ndarray | None  # (n,) bool: True for a validation document; None: the tail
    tail_start: int  # the first character of the validation tail (when val_documents is None)

    @property
    def kind(self) -> str:
        return "tail" if self.val_documents is None else "documents"


def plan_split(documents: int, chars: int, val_fraction: float, seed: int) -> SplitPlan:
    """val_fraction (0 < val_fraction < 1, as data/build.py checks) of the documents, chosen by seed;
    the text's tail when there are too few documents to hold one out."""
    k = min(math.floor(documents * val_fraction + 0.5), documents - 1)  # round half up; keep one for training
    if k < 1:
        return SplitPlan(None, int(chars * (1 - val_fraction)))
    val = np.zeros(documents, dtype=bool)
    val[np.random.default_rng(seed).choice(documents, size=k, replace=False)] = True
    return SplitPlan(val, 0)


def label_pieces(pieces: Iterable[Piece], plan: SplitPlan) -> Iterator[tuple[str, Piece]]:
    """Each piece with its split ("train" or "val"); the tail's first piece is cut where the tail starts."""
    document, position = 0, 0  # index of the current document, characters before the piece
    for piece in pieces:
        if plan.val_documents is not None:
            yield ("val" if plan.val_documents[document] else "train"), piece
        else:
            cut = min(max(plan.tail_start - position, 0), len(piece.text))
            if cut > 0:
                yield "train", Piece(piece.text[:cut], piece.ends_document and cut == len(piece.text))
            if cut < len(piece.text):
                yield "val", Piece(piece.text[cut:], piece.ends_document)
            position += len(piece.text)
        document += piece.ends_document
