"""Shared by the attention tests: the text they look at, the model of a checkpoint,
and attention recomputed independently, head by head in float64."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from training.checkpoint import load_checkpoint, model_from_checkpoint
from data.tokenizer import Tokenizer, tokenizer_from_description
from model import GPT
from model.attention import CausalSelfAttention

TEXT = "Shall I compare thee to a"  # characters of the test corpus, shorter than block_size=32


def load_trained(out_dir: Path) -> tuple[GPT, Tokenizer]:
    path = out_dir / "ckpt.pt"
    checkpoint = load_checkpoint(path)
    tokenizer = tokenizer_from_description(checkpoint["tokenizer"], path)
    return model_from_checkpoint(checkpoint, path).eval(), tokenizer


def norm_1_outputs(model: GPT, idx: torch.Tensor) -> list[torch.Tensor]:
    """What each block's attention reads, (B, T, C) per layer, captured by hooks on norm_1
    during an ordinary forward pass (the fused attention path, not the explicit one).
    Called under reference_patterns' no_grad."""
    captured: list[torch.Tensor] = []
    hooks = [block.norm_1.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
             for block in model.transformer.h]
    try:
        model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def complex_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE as complex multiplication, in float64: pair i of x (T, hs) is the complex number
    x_i + j x_{i + hs/2}, turned by e^(j position theta^(-2i/hs))."""
    hs = x.size(-1)
    pairs = torch.complex(x[..., : hs // 2].double(), x[..., hs // 2 :].double())  # (T, hs/2)
    speeds = theta ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)  # (hs/2,)
    turned = pairs * torch.polar(torch.ones_like(speeds), positions.double()[:, None] * speeds)
    return torch.cat([turned.real, turned.imag], dim=-1)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.double()
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.double()


def reference_attention(attn: CausalSelfAttention, x: torch.Tensor, positions: torch.Tensor,
                        rope_theta: float | None):
    """Attention recomputed query head by query head from the layer's weights, in float64:
    QK-norm by its formula, RoPE (unless rope_theta is None) as complex rotation, query head h reading key/value head
    h // (n_head // n_kv_head), the causal mask as a loop."""
    B, T, C = x.shape
    nh, nkv, hs = attn.n_head, attn.n_kv_head, attn.head_size
    x = x.double()

    def project(linear, head):
        rows = slice(head * hs, (head + 1) * hs)
        bias = 0 if linear.bias is None else linear.bias.double()[rows]
        return x @ linear.weight.double()[rows].T + bias  # (B, T, hs)

    outputs, patterns, raws, value_norms = [], [], [], []
    for h in range(nh):
        q, k, v = project(attn.q_proj, h), project(attn.k_proj, h // (nh // nkv)), project(attn.v_proj, h // (nh // nkv))
        if attn.q_norm is not None:
            q, k = rms_norm(q, attn.q_norm.weight, attn.q_norm.eps), rms_norm(k, attn.k_norm.weight, attn.k_norm.eps)
        if rope_theta is not None:
            q = torch.stack([complex_rope(q[b], positions, rope_theta) for b in range(B)])
            k = torch.stack([complex_rope(k[b], positions, rope_theta) for b in range(B)])
        raws.append(q @ k.transpose(1, 2))  # (B, T, T): every query against every key, before the mask
        value_norms.append(v.norm(dim=-1))  # (B, T)
        pattern = torch.zeros(B, T, T, dtype=torch.float64)
        for i in range(T):  # query i attends to keys 0..i only
            scores = q[:, i : i + 1] @ k[:, : i + 1].transpose(1, 2) / math.sqrt(hs)  # (B, 1, i+1)
            pattern[:, i, : i + 1] = torch.softmax(scores[:, 0], dim=-1)
        patterns.append(pattern)
        outputs.append(pattern @ v)
    y = torch.cat(outputs, dim=-1) @ attn.o_proj.weight.double().T
    if attn.o_proj.bias is not None:
        y = y + attn.o_proj.bias.double()
    # (B, T, C); (B, nh, T, T) patterns and raw scores; (B, nh, T) value lengths
    return y, torch.stack(patterns, dim=1), torch.stack(raws, dim=1), torch.stack(value_norms, dim=1)


@torch.no_grad()
def reference_records(model: GPT, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each layer's patterns and raw scores (n_layer, nh, T, T) and value lengths (n_layer, nh, T)
    for idx (1, T), recomputed by reference_attention from what each layer reads (captured in an
    ordinary fused forward pass)."""
    positions, c = torch.arange(idx.size(1)), model.config
    layers = [reference_attention(block.attn, x, positions, c.rope_theta if c.pos_emb == "rope" else None)[1:]
              for block, x in zip(model.transformer.h, norm_1_outputs(model, idx))]
    return tuple(torch.stack([layer[part][0] for layer in layers]) for part in range(3))


def reference_patterns(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    return reference_records(model, idx)[0]  # (n_layer, nh, T, T)


def page_data(page: Path) -> dict:
    """The JSON the explorer page carries inline."""
    match = re.search(r'<script id="data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    assert match, "no data script in the page"
    return json.loads(match.group(1))
