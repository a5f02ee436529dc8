"""Look at attention: run a checkpoint over a text and draw what each head attends to.

    python attention.py [CONFIG.toml ...] [--key=value ...]

Writes, into the folder pictures_dir:
  heatmaps.png    the attention pattern of every layer and head (query down, key across)
  query_N.png     how much token N (query_index, by default the last) attends to each earlier token
  explorer.html   one self-contained page: pick a layer and a head, hover or click a token

`python attention.py --help` lists every key.
"""

import config.interrupt  # noqa: F401  first: a Ctrl-C while torch loads is one line

import sys

import torch

from config.device import pick_device
from config.errors import UserError, run_cli
from config.outputs import check_output, check_replaceable
from config.prompts import encode_prompt, read_prompt
from config.settings import AttentionConfig, read_config
from data.files import write_atomically
from model import GPT
from model.config import counted
from training.init_from import load_chosen
from viz.explorer import EXPLORER_MARK, MAX_WEIGHTS, explorer_html, page_marked, weight_count
from viz.loss_plot import drawn_by, save_png
from viz.maps import heatmap_figure, query_figure, tick_label, token_texts


def resolve_query(query_index: int | None, n_tokens: int) -> int:
    """The query token's position; None means the last token."""
    if query_index is None:
        return n_tokens - 1
    if not 0 <= query_index < n_tokens:
        raise UserError(f"query_index={query_index} is out of range: the text is {n_tokens} tokens, "
                        f"so use 0 to {n_tokens - 1} (or leave it unset for the last)")
    return query_index


def layer_records(model: GPT, ids: list[int], device: torch.device) -> tuple[torch.Tensor, ...]:
    """What the model's explicit path saw for the text ids, on the CPU: the patterns and the raw
    q . k scores (n_layer, nh, T, T), and the length of each token's value vector (n_layer, nh, T)."""
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    records = model.attention_records(idx)  # n_layer records, batch of 1
    return tuple(torch.cat([getattr(r, part) for r in records]).float().cpu()
                 for part in ("pattern", "scores", "value_norms"))


def main(argv: list[str]) -> None:
    cfg = read_config(AttentionConfig, argv)
    folder = check_output(cfg.pictures_dir, "pictures_dir", folder=True)
    device = pick_device(cfg.device)
    model, tokenizer, _, source = load_chosen(cfg, device)
    text = read_prompt(cfg.text, "text")
    if not text:
        raise UserError("the text is empty; give the text to look at with --text=TEXT or --text=FILE:path")
    default = "text" not in cfg.keys_set
    ids = encode_prompt(text, tokenizer, "text", default=default)
    if len(ids) > model.config.block_size:
        raise UserError(f"the {'default ' * default}text is {len(ids)} tokens but the model's context is "
                        f"{model.config.block_size}; " + ("give a shorter one with --text=TEXT" if default
                                                          else "shorten the text"))
    query, c = resolve_query(cfg.query_index, len(ids)), model.config
    if cfg.html and (count := weight_count(c.n_layer, c.n_head, len(ids))) > MAX_WEIGHTS:
        raise UserError(f"explorer.html would hold {count:,} attention weights (over {MAX_WEIGHTS:,}); "
                        f"use a shorter text or --html=false")
    for name in ("heatmaps.png", f"query_{query}.png"):  # before the model runs: a user's files stay
        check_replaceable(folder / name, "pictures_dir", "a picture attention.py", drawn_by("attention.py"))
    if cfg.html:
        check_replaceable(folder / "explorer.html", "pictures_dir", "a page attention.py",
                          lambda page: page_marked(page, EXPLORER_MARK))
    tokens = token_texts(tokenizer, ids)
    about = (f"{source}: {counted(len(ids), 'token')} through {counted(c.n_layer, 'layer')} "
             f"of {counted(c.n_head, 'head')}" + ("" if cfg.weights == "float32" else f", {cfg.weights} weights"))
    print(f"{about}; query token {query} {tick_label(tokens[query])!r}")
    if cfg.weights != "float32":
        print(f"note: {cfg.weights} weights compute in bfloat16: every number drawn and on the page is rounded to "
              f"about 3 digits (a row of a pattern sums to 1 only as closely)", file=sys.stderr)
    records = layer_records(model, ids, device)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # check_output passed, yet the OS refuses (a dangling link on the way, ...)
        raise UserError(f"cannot write to {folder} ({e.strerror}); choose another --pictures_dir") from None
    written = [save_png(heatmap_figure(records[0], tokens, about), folder / "heatmaps.png", "attention.py"),
               save_png(query_figure(records[0], tokens, query), folder / f"query_{query}.png", "attention.py")]
    if cfg.html:
        written.append(folder / "explorer.html")
        write_atomically(written[-1], explorer_html(*records, c.head_size, tokens, query, about).encode("utf-8"))
    for path in written:
        print(f"wrote {path}")
    if earlier := [p.name for p in (*sorted(folder.glob("query_*.png")), folder / "explorer.html")
                   if p.is_file() and p not in written]:  # of another text or query token
        print(f"note: {folder} also holds {', '.join(earlier)} from an earlier run", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
