"""Causal multi-head self-attention: the heart of the transformer.

Every token's embedding is projected to a query, a key and a value. Each query is compared with the keys of its own and
every earlier position (scaled dot products), the causal mask hides later positions, a softmax turns the scores into an
attention pattern whose rows sum to one, and each position takes the pattern-weighted sum of the values. Several heads
do this in parallel; their outputs are concatenated and mixed back by an output projection.

The modern shape changes three things and nothing else: RoPE turns queries and keys by their position, QK-norm scales
each head's queries and keys to a fixed size first, and with grouped-query attention several query heads share one
key/value head.

RoPE (rotate-half, as in Llama) turns each pair (x_i, x_{i + head_size/2}) of a query or key by position *
theta^(-2i / head_size): a query at m and a key at n meet at an angle that depends on m - n alone, so scores depend on
relative distance."""

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .decoding import KVCache, attention_dtype


@dataclass
class AttentionRecord:
    """What one layer's explicit path computed, for pictures: (B, nh, Tq, Tk) each but value_norms."""

    scores: torch.Tensor  # raw q . k, before scaling and masking
    pattern: torch.Tensor  # softmax of the scaled, masked scores: rows sum to 1
    value_norms: torch.Tensor  # (B, nh, Tk): the length of each key's value vector, as each query head sees it


@dataclass
class Positions:
    """Where one forward pass's tokens sit, worked out once for every layer."""

    query: torch.Tensor  # (Tq,): the positions of this pass's tokens
    key: torch.Tensor  # (Tk,): the positions of the keys they read, their own or every cache slot's
    window: int  # a query sees keys fewer than this many positions earlier (block_size)
    rotation: tuple[torch.Tensor, torch.Tensor] | None  # RoPE's cos and sin (Tq, hs), or None: learned positions

    def visible(self) -> torch.Tensor:
        """Boolean mask (Tq, Tk), True where a key is neither later than the query nor `window` positions earlier."""
        distance = self.query[:, None] - self.key[None, :]  # (Tq, Tk)
        return (distance >= 0) & (distance < self.window)


def rotation_tables(positions: torch.Tensor, head_size: int, theta: float, dtype: torch.dtype
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position's angles, (T, head_size) each: in float32 as transformers' Llama, then dtype."""
    exponents = torch.arange(0, head_size, 2, dtype=torch.int64, device=positions.device).float() / head_size
    inv_freq = 1.0 / (theta**exponents)  # (head_size / 2,): one speed per pair
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, head_size / 2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, head_size): pair i's angle at i and i + head_size / 2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Turn every pair (x_i, x_{i + hs/2}) of x (B, heads, T, hs), queries or keys, by its angle: same shape."""
    first, second = x.chunk(2, dim=-1)  # (B, heads, T, hs / 2) each
    rotated_half = torch.cat([-second, first], dim=-1)  # (x, y) -> (-y, x): a quarter turn of each pair
    return x * cos + rotated_half * sin


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: nn.Module
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention written out step by step. q: (B, nh, Tq, hs); k, v: (B, nh, Tk, hs); mask: (Tq, Tk).
    Returns the output (B, nh, Tq, hs), the raw scores and the pattern (B, nh, Tq, Tk)."""
    raw = q @ k.transpose(-2, -1)  # (B, nh, Tq, Tk): every query against every key
    scores = raw / math.sqrt(q.size(-1))  # scaled so they do not grow with head_size
    scores = scores.masked_fill(~mask, float("-inf"))  # no token sees the future
    pattern = F.softmax(scores, dim=-1)  # each row sums to 1
    y = dropout(pattern) @ v  # weighted sum of values: (B, nh, Tq, hs)
    return y, raw, pattern


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: PyTorch's fused scaled_dot_product_attention (use_sdpa, the default)
    or the same function by `explicit_attention`, which can hand back what it saw."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        C, hs, nh, nkv = config.n_embd, config.head_size, config.n_head, config.n_kv_head
        self.n_head, self.n_kv_head, self.head_size = nh, nkv, hs
        self.layer_idx = layer_idx  # which slot of a KVCache belongs to this layer
        self.use_sdpa = True
        self.q_proj = nn.Linear(C, nh * hs, bias=config.bias)  # queries: what each token looks for
        self.k_proj = nn.Linear(C, nkv * hs, bias=config.bias)  # keys: what each token offers
        self.v_proj = nn.Linear(C, nkv * hs, bias=config.bias)  # values: what it passes on when attended to
        self.o_proj = nn.Linear(nh * hs, C, bias=config.bias)  # output matrix: concatenated heads back to C
        self.q_norm = nn.RMSNorm(hs, eps=config.norm_eps) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(hs, eps=config.norm_eps) if config.qk_norm else None
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, positions: Positions, cache: KVCache | None = None,
                records: list[AttentionRecord] | None = None) -> torch.Tensor:
        """x: (B, T, C) at `positions` -> (B, T, C). With `cache`, x holds only the newest positions, earlier keys
        and values come from the cache; with `records`, the explicit path runs and appends what it saw."""
        B, T, _ = x.size()
        q = self.q_proj(x).view(B, T, self.n_head, self.head_size)  # (B, T, nh, hs)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_size)  # (B, T, nkv, hs)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, nkv, T, hs)
        if self.q_norm is not None:  # QK-norm: each head's query and key get a fixed size first (in float32)
            q, k = self.q_norm(q.float()).type_as(q), self.k_norm(k.float()).type_as(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, nh, T, hs), (B, nkv, T, hs)
        if positions.rotation is not None:  # RoPE acts here, on queries and keys only
            cos, sin = (table.to(q.dtype) for table in positions.rotation)  # autocast's dtype, if on
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        dtype = q.dtype  # the projections' (autocast's, if on), which the output keeps
        if cache is not None:  # every cache slot's keys and values, in the cache's dtype
            k, v = cache.update(self.layer_idx, k, v, positions.query)  # (B, nkv, Tk, hs), Tk: every cache slot
        compute = attention_dtype(x.device, dtype)  # float32 on a CPU
        q, k, v = q.to(compute), k.to(compute), v.to(compute)
        # autocast would compute attention's products in its own dtype again
        with contextlib.nullcontext() if compute == dtype else torch.autocast(x.device.type, enabled=False):
            if self.use_sdpa and records is None:  # PyTorch's fused kernel, under the same mask
                # plain causal for training and uncached decoding; otherwise is_causal would align the mask wrongly,
                # and a cache's empty slots must stay hidden
                causal = cache is None and T <= positions.window
                y = F.scaled_dot_product_attention(  # (B, nh, T, hs)
                    q, k, v, attn_mask=None if causal else positions.visible(), is_causal=causal,
                    dropout_p=self.attn_dropout.p if self.training else 0.0, enable_gqa=self.n_kv_head != self.n_head)
            else:
                group = self.n_head // self.n_kv_head  # query heads per key/value head
                k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, nh, Tk, hs)
                y, raw, pattern = explicit_attention(q, k, v, positions.visible(), self.attn_dropout)
                if records is not None:
                    records.append(AttentionRecord(raw, pattern, v.norm(dim=-1)))
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_size)  # concatenate heads: (B, T, nh * hs)
        return self.resid_dropout(self.o_proj(y.to(dtype)))
