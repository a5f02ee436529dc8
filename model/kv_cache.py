"""Preallocated key/value cache of fixed shape, for fast (and compilable) generation."""
from __future__ import annotations

import torch

EMPTY = torch.iinfo(torch.long).max  # the position of an empty slot: later than any query, so never visible


class KVCache:
    """Keys and values of every layer for the last `slots` positions, in buffers of fixed shape.

    Buffers hold `slots` positions, allocated once and written in place, so a
    decoding step costs one token's worth of projections instead of re-running
    the context. Position p lives in slot p % slots: once every slot is full,
    each new position takes the place of the one `slots` earlier, so the cache is
    a rolling window of the last `slots` positions (what a RoPE model attends to).
    Every step reads all slots, and the position kept for each slot decides what a
    query may see (empty slots: nothing). No shape ever depends on how many
    positions were seen, so one compiled decoding step serves a whole generation
    (model/compiled_decoding.py).
    The model calls `reserve` with the new positions, each layer writes through
    `update`, and `reset` empties every slot.
    """

    def __init__(self, k: list[torch.Tensor], v: list[torch.Tensor], slot_positions: torch.Tensor):
        self.k, self.v = k, v  # a (B, nkv, slots, hs) tensor of keys and one of values per layer
        self.slot_positions = slot_positions  # (slots,): the position held in each slot
        self.slots = slot_positions.numel()

    @classmethod
    def empty(cls, n_layer: int, batch_size: int, n_kv_head: int, slots: int, head_size: int,
              device: torch.device, dtype: torch.dtype) -> "KVCache":
        shape = (batch_size, n_kv_head, slots, head_size)
        return cls([torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)],
                   [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)],
                   torch.full((slots,), EMPTY, dtype=torch.long, device=device))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor the cache holds, flat: slot_positions, then the keys, then the values (what
        `KVCache(*...)` is rebuilt from by a compiled step, which takes tensors only)."""
        return (self.slot_positions, *self.k, *self.v)

    @classmethod
    def of_tensors(cls, slot_positions: torch.Tensor, *keys_values: torch.Tensor) -> "KVCache":
        """The cache whose `tensors()` these are."""
        n_layer = len(keys_values) // 2
        return cls(list(keys_values[:n_layer]), list(keys_values[n_layer:]), slot_positions)

    def reserve(self, positions: torch.Tensor) -> None:
        """Take slots for the new positions (T,), at most `slots` of them."""
        if positions.numel() > self.slots:
            raise ValueError(f"KV cache holds {self.slots} positions; {positions.numel()} were given at once")
        self.slot_positions.index_copy_(0, positions % self.slots, positions)

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nkv, T, hs) of positions (T,) in their slots; return every slot's keys and
        values (B, nkv, slots, hs), in the order of `slot_positions`."""
        slots, k_all, v_all = positions % self.slots, self.k[layer_idx], self.v[layer_idx]
        k_all.index_copy_(2, slots, k.type_as(k_all))  # type_as: under autocast k and v come in its dtype
        v_all.index_copy_(2, slots, v.type_as(v_all))
        return k_all, v_all

    def reset(self) -> None:
        self.slot_positions.fill_(EMPTY)  # old keys and values stay, hidden, until overwritten
