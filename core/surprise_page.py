"""A self-contained HTML page that shades every token by the loss the model gave it."""
from __future__ import annotations

import html
import json

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Per-token surprise: __TITLE__</title>
<style>
body { font: 15px/1.6 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
#text { font: 15px/1.9 ui-monospace, monospace; white-space: pre-wrap; border: 1px solid #ddd; padding: 1em; }
.tok { border-radius: 2px; cursor: default; }
.tok:hover { outline: 1px solid #333; }
#tip { position: fixed; display: none; background: #fff; border: 1px solid #888; padding: .5em .8em;
       font: 13px/1.5 ui-monospace, monospace; box-shadow: 0 2px 8px #0003; pointer-events: none; }
.scale span { display: inline-block; width: 2.2em; text-align: center; font-size: 12px; }
</style></head><body>
<h2>Per-token surprise</h2>
<p>__TITLE__. Each token is shaded by its loss (nats): white is expected, red is surprising.
Hover a token for its probability and the model's top guesses.</p>
<p class="scale" id="scale"></p>
<div id="text"></div><div id="tip"></div>
<script>
const data = __DATA__;
const shade = loss => `rgba(214, 39, 40, ${Math.min(1, loss / data.scale).toFixed(3)})`;
const show = s => JSON.stringify(s).slice(1, -1);
const text = document.getElementById("text"), tip = document.getElementById("tip");
data.tokens.forEach((t, i) => {
  const span = document.createElement("span");
  span.className = "tok";
  span.textContent = t.text;
  span.dataset.index = i;
  if (t.loss !== null) span.style.background = shade(t.loss);
  text.appendChild(span);
});
for (let k = 0; k <= 4; k++) {
  const s = document.createElement("span");
  s.style.background = shade(k * data.scale / 4);
  s.textContent = (k * data.scale / 4).toFixed(1);
  document.getElementById("scale").appendChild(s);
}
text.addEventListener("mousemove", e => {
  const i = e.target.dataset.index;
  if (i === undefined) { tip.style.display = "none"; return; }
  const t = data.tokens[i];
  tip.innerHTML = "";
  const line = s => { const d = document.createElement("div"); d.textContent = s; tip.appendChild(d); };
  line(`token "${show(t.text)}"`);
  if (t.loss === null) line("first token: not predicted");
  else {
    line(`p = ${Math.exp(-t.loss).toFixed(4)}, loss = ${t.loss.toFixed(3)} nats`);
    line("top guesses:");
    t.top.forEach(([g, p]) => line(`  "${show(g)}"  ${p.toFixed(4)}`));
  }
  tip.style.display = "block";
  tip.style.left = Math.min(e.clientX + 14, innerWidth - 320) + "px";
  tip.style.top = (e.clientY + 14) + "px";
});
text.addEventListener("mouseleave", () => { tip.style.display = "none"; });
</script></body></html>
"""


def surprise_page(pieces: list[str], losses: list[float], top: list[list[tuple[str, float]]], title: str) -> str:
    """pieces: the text of each token; losses and top guesses for tokens 1.. (the first is not predicted)."""
    tokens = [{"text": pieces[0], "loss": None, "top": []}]
    tokens += [{"text": p, "loss": round(float(loss), 4), "top": [[g, round(float(q), 4)] for g, q in guesses]}
               for p, loss, guesses in zip(pieces[1:], losses, top)]
    scale = max(1.0, sorted(losses)[int(0.95 * (len(losses) - 1))]) if losses else 1.0  # 95th percentile is full red
    data = json.dumps({"tokens": tokens, "scale": scale}).replace("</", "<\\/")  # safe inside <script>
    return PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)
