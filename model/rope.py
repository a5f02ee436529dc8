"""Rotary position embeddings (RoPE), rotate-half as in Llama: instead of adding position to the residual stream,
each query and key is turned by its position, pair (x_i, x_{i + head_size/2}) by position * theta^(-2i / head_size).
A query at m and a key at n meet at an angle that depends on m - n alone: scores depend on relative distance.
"""

import torch


def rotation_tables(positions: torch.Tensor, head_size: int, theta: float, dtype: torch.dtype
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position's angles: (T, head_size) each, computed in float32 as transformers' Llama
    does, then cast to dtype."""
    exponents = torch.arange(0, head_size, 2, dtype=torch.int64, device=positions.device).float() / head_size
    inv_freq = 1.0 / (theta**exponents)  # (head_size / 2,): one speed per pair
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, head_size / 2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, head_size): pair i's angle at i and i + head_size / 2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Turn every pair (x_i, x_{i + hs/2}) of x (B, nh, T, hs) by its angle: (B, nh, T, hs)."""
    first, second = x.chunk(2, dim=-1)  # (B, nh, T, hs / 2) each
    rotated_half = torch.cat([-second, first], dim=-1)  # (x, y) -> (-y, x): a quarter turn of each pair
    return x * cos + rotated_half * sin
