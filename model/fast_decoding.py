"""An inference-time speed-up for decoding on a CPU, applied by the sampler, never
part of the network's definition.

A decoding step multiplies every weight matrix by one vector per sequence.
PyTorch hands such a product (F.linear with one row) to MKL's matrix-vector
kernel, which on some CPUs streams float32 weights well below the memory
bandwidth. The same arithmetic written as one batched product of the matrix's
two row halves goes to MKL's batched matrix-multiply kernel instead, which reads
them several times faster there. It only pays where the weights stream from
memory: small matrices stay in cache, where F.linear wins. `python bench.py
generation` measures both routes, and decoding with and without this step, on
the machine at hand.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

FEW_ROWS = 64  # up to here the row-halves route was faster; at 128 rows (prefill) it was not
MIN_WEIGHT_NUMEL = 2**17  # 512 KiB of float32; smaller matrices stay in cache, where F.linear was faster


def matmul_by_row_halves(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (..., K) times weight (N, K) transposed -> (..., N), as one batched matmul.

    The batch is two views of weight: rows [0, half) and [N - half, N). For
    odd N they share the middle row, which is computed twice and kept once.
    """
    N, K = weight.shape
    half = (N + 1) // 2
    row_stride, col_stride = weight.stride()
    halves = weight.as_strided((2, half, K), ((N - half) * row_stride, row_stride, col_stride))  # (2, half, K)
    x_cols = x.reshape(-1, K).t()  # (K, rows)
    y = torch.bmm(halves, x_cols.expand(2, K, x_cols.size(1)))  # (2, half, rows)
    y = torch.cat([y[0], y[1, 2 * half - N :]])  # (N, rows), the shared middle row once
    return y.t().reshape(*x.shape[:-1], N)


class RowHalvesLinear(nn.Module):
    """Computes what `linear` computes, with its own weight and bias; float32 inference
    with at most FEW_ROWS rows takes the row-halves route, everything else F.linear."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.linear.weight, self.linear.bias
        few_rows = x.numel() <= FEW_ROWS * weight.size(1)
        if few_rows and x.dtype == torch.float32 and not torch.is_grad_enabled():
            y = matmul_by_row_halves(x, weight)
            return y if bias is None else y + bias
        return F.linear(x, weight, bias)


def for_cpu_decoding(model: nn.Module) -> nn.Module:
    """The model to decode with: on a CPU, a twin of `model` that shares every parameter
    and buffer (no copy of the weights) and wraps each nn.Linear of at least
    MIN_WEIGHT_NUMEL weights in RowHalvesLinear; elsewhere `model` itself."""
    weight = next(model.parameters())
    if weight.device.type != "cpu":
        return model
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    twin = copy.deepcopy(model, memo=shared)
    for parent in list(twin.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Linear and child.weight.numel() >= MIN_WEIGHT_NUMEL:
                setattr(parent, name, RowHalvesLinear(child))
    return twin
