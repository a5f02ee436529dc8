"""Preallocated key/value cache for fast generation."""
from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for the positions seen so far.

    Buffers are allocated once at full context length and filled in place, so a
    decoding step costs one token's worth of projections instead of re-running
    the whole context. Layers write through `update`; the model calls `advance`
    once all layers have seen the new positions.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_len: int,
        head_size: int,
        device: torch.device,
        dtype: torch.dtype,
    ):
        shape = (n_layer, batch_size, n_head, max_len, head_size)
        k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nh, max_len, hs)
        v = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nh, max_len, hs)
        self.k = [k[i] for i in range(n_layer)]  # per-layer views (B, nh, max_len, hs), indexed once
        self.v = [v[i] for i in range(n_layer)]
        self.max_len = max_len
        self.length = 0  # positions already cached

    def update(
        self, layer_idx: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) after the cached positions; return all (B, nh, length+T, hs)."""
        end = self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} were asked for")
        k_cache, v_cache = self.k[layer_idx], self.v[layer_idx]
        k_cache[:, :, self.length : end] = k
        v_cache[:, :, self.length : end] = v
        return k_cache[:, :, :end], v_cache[:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reset(self) -> None:
        self.length = 0  # old entries are overwritten before they are read again
