"""Causal multi-head self-attention: the heart of the transformer.

Every token's embedding is projected to a query, a key and a value. Each query
is compared with the keys of its own and every earlier position (scaled dot
products), the causal mask hides later positions, a softmax turns the scores
into an attention pattern whose rows sum to one, and each position takes the
pattern-weighted sum of the values. Several heads do this in parallel on slices
of the embedding; their outputs are concatenated and mixed back by an output
projection.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .kv_cache import KVCache


def causal_mask(n_query: int, n_key: int, device: torch.device) -> torch.Tensor:
    """Boolean mask (n_query, n_key), True where a query may look at a key.

    The queries are the last n_query of the n_key positions, so query i sits at
    position n_key - n_query + i and sees keys 0..that position, never later ones.
    """
    ones = torch.ones(n_query, n_key, dtype=torch.bool, device=device)
    return ones.tril(diagonal=n_key - n_query)


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out step by step.

    q: (B, nh, Tq, hs); k, v: (B, nh, Tk, hs) with Tk >= Tq.
    Returns the output (B, nh, Tq, hs) and the attention pattern (B, nh, Tq, Tk).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, Tq, Tk)
    mask = causal_mask(q.size(-2), k.size(-2), q.device)
    scores = scores.masked_fill(~mask, float("-inf"))  # no token sees the future
    pattern = F.softmax(scores, dim=-1)  # each row sums to 1
    y = dropout(pattern) @ v  # weighted sum of values: (B, nh, Tq, hs)
    return y, pattern


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with two interchangeable paths.

    `use_sdpa=True` (default) runs PyTorch's fused scaled_dot_product_attention;
    `use_sdpa=False` runs `explicit_attention`, which can hand back the pattern.
    Both compute the same function.
    """

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.layer_idx = layer_idx  # which slot of a KVCache belongs to this layer
        self.dropout = config.dropout
        self.use_sdpa = True
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v fused
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # output matrix
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        patterns: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C).

        With `cache`, x holds only the newest T positions and earlier keys and
        values come from the cache. With `patterns`, the explicit path runs and
        this layer's attention pattern (B, nh, T, Tk) is appended to the list.
        """
        B, T, C = x.size()
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, nh, Tk, hs), Tk = cached + T

        if self.use_sdpa and patterns is None:
            y = self._fused_attention(q, k, v)
        else:
            y, pattern = explicit_attention(q, k, v, self.attn_dropout)
            if patterns is not None:
                patterns.append(pattern)

        y = y.transpose(1, 2).contiguous().view(B, T, C)  # concatenate heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _fused_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """scaled_dot_product_attention with the same causal mask; (B, nh, Tq, hs)."""
        dropout_p = self.dropout if self.training else 0.0
        n_query, n_key = q.size(-2), k.size(-2)
        if n_query == n_key:  # plain causal self-attention (training, first prefill)
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        if n_query == 1:  # one new token sees every cached position
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        # is_causal aligns the mask top-left, which is wrong when keys outnumber queries
        mask = causal_mask(n_query, n_key, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
