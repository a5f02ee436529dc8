"""Preallocated key/value cache of fixed shape, for fast (and compilable) generation."""

import torch

EMPTY = torch.iinfo(torch.long).max  # the position of an empty slot: later than any query, so never visible


class KVCache:
    """Keys and values of every layer for the last `slots` positions, written in place: position p lives in
    slot p % slots, a rolling window. Every step reads all slots, and the position kept for each slot decides
    what a query may see (empty slots: nothing), so no shape changes and one compiled step serves a generation."""

    def __init__(self, slot_positions: torch.Tensor, *keys_values: torch.Tensor):
        """KVCache(*cache.tensors()) rebuilds a cache: a compiled step takes tensors only."""
        n_layer = len(keys_values) // 2
        self.slot_positions = slot_positions  # (slots,): the position held in each slot
        self.k, self.v = keys_values[:n_layer], keys_values[n_layer:]  # (B, nkv, slots, hs) per layer
        self.slots = slot_positions.numel()

    @classmethod
    def empty(cls, n_layer: int, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> "KVCache":
        """Every slot empty; keys and values of shape (B, nkv, slots, hs) for each of n_layer layers."""
        zeros = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(2 * n_layer)]
        return cls(torch.full((shape[2],), EMPTY, dtype=torch.long, device=device), *zeros)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.slot_positions, *self.k, *self.v)

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
