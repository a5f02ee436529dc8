"""Preallocated key/value cache for fast generation."""
from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for the positions seen so far.

    Buffers hold `slots` positions (block_size), allocated once and filled in
    place, so a decoding step costs one token's worth of projections instead of
    re-running the context. Position p lives in slot p % slots: once every slot
    is full, each new position takes the place of the one `slots` earlier, so
    the cache is a rolling window of the last `slots` positions (what a RoPE
    model attends to). The model calls `reserve` with the new positions, each
    layer writes through `update`, and `reset` starts over.
    """

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, slots: int, head_size: int,
                 device: torch.device, dtype: torch.dtype):
        shape = (n_layer, batch_size, n_kv_head, slots, head_size)
        k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nkv, slots, hs)
        v = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nkv, slots, hs)
        self.k = [k[i] for i in range(n_layer)]  # per-layer views (B, nkv, slots, hs), indexed once
        self.v = [v[i] for i in range(n_layer)]
        self.slot_positions = torch.zeros(slots, dtype=torch.long, device=device)  # the position in each slot
        self.slots = slots
        self.length = 0  # positions seen so far: the next one is at position `length`
        self._new_slots: slice | torch.Tensor = slice(0, 0)

    def reserve(self, positions: torch.Tensor) -> None:
        """Take slots for the next positions (T,), which must follow the ones seen."""
        T = positions.numel()
        if T > self.slots:
            raise ValueError(f"KV cache holds {self.slots} positions; {T} were given at once")
        start = self.length % self.slots
        self._new_slots = slice(start, start + T) if start + T <= self.slots else positions % self.slots
        self.slot_positions[self._new_slots] = positions
        self.length += T

    def filled_positions(self) -> torch.Tensor:
        """The position held in every filled slot (Tk,), Tk = min(length, slots): what `update` returns."""
        return self.slot_positions[: min(self.length, self.slots)]

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nkv, T, hs) in the reserved slots; return every filled slot's keys and
        values (B, nkv, Tk, hs), in the order of `filled_positions`."""
        self.k[layer_idx][:, :, self._new_slots] = k
        self.v[layer_idx][:, :, self._new_slots] = v
        filled = min(self.length, self.slots)
        return self.k[layer_idx][:, :, :filled], self.v[layer_idx][:, :, :filled]

    def reset(self) -> None:
        self.length = 0  # old entries are overwritten before they are read again
