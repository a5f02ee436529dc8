"""A self-contained HTML page that shades every token by the loss the model gave it."""

import html
import json
from pathlib import Path

TEMPLATE = Path(__file__).with_name("surprise.html")  # the page, with __TITLE__ and __DATA__ to fill in


def surprise_page(pieces: list[str], losses: list[float], top: list[list[tuple[str, float]]], title: str) -> str:
    """pieces: the text of each token; losses and top guesses for tokens 1.. (the first is not predicted)."""
    tokens = [{"text": pieces[0], "loss": None, "top": []}]
    tokens += [{"text": p, "loss": round(float(loss), 4), "top": [[g, round(float(q), 4)] for g, q in guesses]}
               for p, loss, guesses in zip(pieces[1:], losses, top)]
    scale = max(1.0, sorted(losses)[int(0.95 * (len(losses) - 1))]) if losses else 1.0  # 95th percentile is full red
    data = json.dumps({"tokens": tokens, "scale": scale}).replace("</", "<\\/")  # safe inside <script>
    return TEMPLATE.read_text(encoding="utf-8").replace("__TITLE__", html.escape(title)).replace("__DATA__", data)
