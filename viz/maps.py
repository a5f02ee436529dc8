"""Attention patterns as PNG pictures, drawn with matplotlib, and tokens as text a person can read on them.

patterns: (n_layer, nh, T, T) from `GPT.attention_patterns`, row i the weights query token i gives to key tokens 0..i
(the rest is the causal mask). The figures are plain matplotlib Figures (no pyplot, no global state)."""

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from data.tokenizer import Tokenizer

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CMAP = "viridis"  # weight 0 is dark, so the white masked triangle reads as empty, not as zero
MAX_TICKS = 48  # more labels than this on an axis and every k-th is shown
DPI = 100
VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}  # whitespace would vanish from a tick label
LABEL_FONT = "DejaVu Sans Mono"


def token_texts(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each token decoded on its own; a BPE piece of a character shows its bytes (\\xe6\\x9d), not U+FFFD."""
    return [tokenizer.decode_bytes([i]).decode("utf-8", errors="backslashreplace") for i in ids]


def tick_label(text: str) -> str:
    """Whitespace and other invisible characters made visible: ' the' -> '␣the'."""
    return "".join(VISIBLE.get(ch, ch if ch.isprintable() else ascii(ch)[1:-1]) for ch in text) or "∅"  # \x01, \u200b


@functools.cache
def _code_points(font_file: str) -> frozenset[int]:
    from matplotlib import font_manager

    return frozenset(font_manager.get_font(font_file).get_charmap())


@functools.cache
def _family_drawing(ch: str) -> str | None:
    """The family of the first font matplotlib finds with a glyph for ch, the labels' own first; not its
    last-resort font, whose glyphs are boxes."""
    from matplotlib import font_manager

    fonts = sorted(font_manager.fontManager.ttflist, key=lambda font: font.name != LABEL_FONT)
    return next((font.name for font in fonts
                 if not font.name.startswith("Last Resort") and ord(ch) in _code_points(font.fname)), None)


def drawable(texts: list[str]) -> tuple[list[str], list[str]]:
    """texts with each character that no font here draws shown as its code point ([U+6771]), not as an empty box;
    and the font families for them: the labels' font, then one for each character it lacks (CJK, say)."""
    shown = ["".join(ch if _family_drawing(ch) else f"[U+{ord(ch):04X}]" for ch in text).replace("$", r"\$")
             for text in texts]  # a $ drawn as itself, never as the start of mathtext
    families = dict.fromkeys([LABEL_FONT, *(_family_drawing(ch) for text in shown for ch in text)])
    return shown, [family for family in families if family]


def panel_inches(n_tokens: int) -> float:
    """Side of one panel: room for a 6-point label per token, within limits."""
    return min(5.0, max(2.0, 0.085 * min(n_tokens, MAX_TICKS) + 0.7))


def _set_ticks(ax: "Axes", labels: list[str], axis: str) -> None:
    """Tokens as tick labels (every k-th when there are many); long ones stand upright on x."""
    positions = range(0, len(labels), math.ceil(len(labels) / MAX_TICKS))
    shown, families = drawable([tick_label(labels[i]) for i in positions])
    upright = axis == "x" and max(map(len, shown)) > 2
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_ticks(positions, shown, rotation=90 if upright else 0, fontsize=7, fontfamily=families)


def heatmap_figure(patterns: torch.Tensor, tokens: list[str], title: str) -> "Figure":
    """Grid of heatmaps, a row per layer and a column per head: query token down,
    key token across, tokens as tick labels, the masked upper triangle left white."""
    import matplotlib
    from matplotlib.figure import Figure

    n_layer, n_head, T, _ = patterns.shape  # (n_layer, nh, T, T)
    side = panel_inches(T)
    fig = Figure(figsize=(n_head * side + 1.2, n_layer * side + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(n_layer, n_head, squeeze=False, sharex=True, sharey=True)
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad="white")
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T), True above the diagonal: keys after the query
    for (layer, head), ax in np.ndenumerate(axes):
        pattern = np.ma.masked_array(patterns[layer, head].float().cpu().numpy(), mask=future)  # the mask not drawn
        image = ax.imshow(pattern, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"layer {layer}, head {head}", fontsize=8)
        _set_ticks(ax, tokens, "x")
        _set_ticks(ax, tokens, "y")
    for ax in axes[-1]:
        ax.set_xlabel("key (attended to)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("query (attending)", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    (title,), families = drawable([title])
    fig.suptitle(title, fontsize=10, fontfamily=families)
    return fig


def query_figure(patterns: torch.Tensor, tokens: list[str], query: int) -> "Figure":
    """Bar charts of the weights query token `query` gives to tokens 0..query:
    a row per layer, a column per head and a last one for the mean over heads."""
    from matplotlib.figure import Figure

    n_layer, n_head = patterns.shape[:2]
    weights = patterns[:, :, query, : query + 1].float().cpu()  # (n_layer, nh, query + 1)
    columns = torch.cat([weights, weights.mean(dim=1, keepdim=True)], dim=1)  # (n_layer, nh + 1, query + 1)
    width = panel_inches(query + 1)
    fig = Figure(figsize=((n_head + 1) * width + 0.6, n_layer * 1.8 + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(n_layer, n_head + 1, squeeze=False, sharex=True, sharey=True)
    for (layer, col), ax in np.ndenumerate(axes):
        mean = col == n_head
        ax.bar(range(query + 1), columns[layer, col].numpy(), color="tab:orange" if mean else "tab:blue")
        ax.set_title(f"layer {layer}, " + ("mean of heads" if mean else f"head {col}"), fontsize=8)
        ax.set_ylim(0.0, float(columns.max()) * 1.05)
        _set_ticks(ax, tokens[: query + 1], "x")
        ax.tick_params(axis="y", labelsize=6)
    for ax in axes[:, 0]:
        ax.set_ylabel("weight", fontsize=7)
    (title,), families = drawable([f"what token {query} {tick_label(tokens[query])!r} attends to"])
    fig.suptitle(title, fontsize=10, fontfamily=families)
    return fig

