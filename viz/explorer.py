"""Self-contained HTML pages: the attention explorer and the per-token surprise page. The data and
the script are inline (viz/explorer.html and viz/surprise.html are the pages, with __DATA__ to fill in),
so they open from disk in any browser with no server and no network."""

import html
import json
import re
from pathlib import Path

import numpy as np
import torch

from data.tokenizer import Tokenizer
from model.scoring import TokenScores

from .maps import CMAP, token_texts

COLORMAP_STEPS = 64  # the heatmap's colours, taken from matplotlib so the page matches the PNGs
DECIMALS = 4
MAX_WEIGHTS = 3_000_000  # about 20 MB of page; a browser still opens it


def fill_page(template: str, data: object, title: str = "") -> str:
    """The page viz/template with __TITLE__ and __DATA__ filled in. The data is JSON inside a <script>: "<" occurs
    only inside JSON strings, and escaped there, no text (a token "</script>", say) can end the script early."""
    page = Path(__file__).with_name(template).read_text(encoding="utf-8")
    data_json = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    filled = {"__TITLE__": html.escape(title), "__DATA__": data_json}  # in one pass: a title may hold "__DATA__"
    return re.sub("__TITLE__|__DATA__", lambda match: filled[match.group()], page)


def weight_count(n_layer: int, n_head: int, T: int) -> int:
    """How many numbers the page stores: the lower triangle of every (T, T) pattern, every raw
    score (the masked ones too, to show the mask at work) and each head's value lengths."""
    return n_layer * n_head * (T * (T + 1) // 2 + T * T + T)


def explorer_html(patterns: torch.Tensor, scores: torch.Tensor, value_norms: torch.Tensor, head_size: int,
                  tokens: list[str], query: int, about: str) -> str:
    """The page for patterns and raw q . k scores (n_layer, nh, T, T) and value lengths
    (n_layer, nh, T) over `tokens`, opening on token `query`."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    rounded = patterns.double().cpu().numpy().round(DECIMALS)
    data = {
        "about": about,
        "tokens": tokens,
        "query": query,
        # [layer][head][query]: the query + 1 weights of the lower triangle
        "patterns": [[[head[q, : q + 1].tolist() for q in range(len(tokens))] for head in layer] for layer in rounded],
        "scores": scores.double().numpy().round(DECIMALS).tolist(),  # [layer][head][query][key], all keys
        "value_norms": value_norms.double().numpy().round(DECIMALS).tolist(),
        "head_size": head_size,
        "colormap": [to_hex(rgba) for rgba in colormaps[CMAP](np.linspace(0, 1, COLORMAP_STEPS))],
    }
    return fill_page("explorer.html", data)


SURPRISE_MARK = "<title>Per-token surprise: "  # how an earlier page of eval.py's, which it may replace, begins
EXPLORER_MARK = "<title>Attention explorer</title>"  # attention.py's, likewise


def page_marked(path: Path, mark: str) -> bool:
    """Whether the page at path begins as one of this project's (its mark within the first 200 characters)."""
    return mark in path.read_text(encoding="utf-8", errors="replace")[:200]


def surprise_page(tokenizer: Tokenizer, ids: np.ndarray, scores: TokenScores, title: str) -> str:
    """The page that shades every token of ids (N,) by the loss the model gave it; scores, from
    score_tokens with top_k, are for tokens 1.. (the first is not predicted)."""
    texts = token_texts(tokenizer, ids.tolist())
    losses = scores.losses.tolist()
    tokens = [{"text": texts[0], "loss": None, "top": []}]
    tokens += [{"text": text, "loss": round(loss, 4),
                "top": [[token_texts(tokenizer, [int(g)])[0], round(float(q), 4)] for g, q in zip(guesses, probs)
                        if g < tokenizer.vocab_size]}  # an id past the tokenizer's pads the vocabulary: no text
               for text, loss, guesses, probs in zip(texts[1:], losses, scores.top_ids, scores.top_probs)]
    scale = max(1.0, sorted(losses)[int(0.95 * (len(losses) - 1))]) if losses else 1.0  # 95th percentile is full red
    return fill_page("surprise.html", {"tokens": tokens, "scale": scale}, title)
