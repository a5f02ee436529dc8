"""Shared by the attention-map tests: the text they look at, the model of a
checkpoint, and attention patterns recomputed independently."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from cli.loading import load_checkpoint, model_from_checkpoint
from data.tokenizer import Tokenizer, tokenizer_from_description
from model import GPT

TEXT = "Shall I compare thee to a"  # characters of the test corpus, shorter than block_size=32


def load_trained(out_dir: Path) -> tuple[GPT, Tokenizer]:
    path = out_dir / "ckpt.pt"
    checkpoint = load_checkpoint(path)
    return model_from_checkpoint(checkpoint, path).eval(), tokenizer_from_description(checkpoint["tokenizer"])


def ln_1_outputs(model: GPT, idx: torch.Tensor) -> list[torch.Tensor]:
    """What each block's attention reads, (B, T, C) per layer, captured by hooks on ln_1
    during an ordinary forward pass (the fused attention path, not the explicit one).
    Called under reference_patterns' no_grad."""
    captured: list[torch.Tensor] = []
    hooks = [block.ln_1.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
             for block in model.transformer.h]
    try:
        model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


@torch.no_grad()
def reference_patterns(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k)) with a causal mask built here, from each layer's c_attn
    weights, in float64: (n_layer, nh, T, T) for idx (1, T)."""
    nh, T = model.config.n_head, idx.size(1)
    allowed = torch.tensor([[k <= q for k in range(T)] for q in range(T)])  # (T, T), key k at or before query q
    layers = []
    for block, x in zip(model.transformer.h, ln_1_outputs(model, idx)):
        c_attn = block.attn.c_attn
        qkv = x[0].double() @ c_attn.weight.double().T  # (T, 3C)
        if c_attn.bias is not None:
            qkv = qkv + c_attn.bias.double()
        C = qkv.size(1) // 3
        hs = C // nh
        heads = []
        for h in range(nh):
            q = qkv[:, h * hs : (h + 1) * hs]  # (T, hs)
            k = qkv[:, C + h * hs : C + (h + 1) * hs]  # (T, hs)
            scores = (q @ k.T / math.sqrt(hs)).masked_fill(~allowed, float("-inf"))  # (T, T)
            heads.append(torch.softmax(scores, dim=-1))
        layers.append(torch.stack(heads))  # (nh, T, T)
    return torch.stack(layers)  # (n_layer, nh, T, T)


def page_data(page: Path) -> dict:
    """The JSON the explorer page carries inline."""
    match = re.search(r'<script id="data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    assert match, "no data script in the page"
    return json.loads(match.group(1))
