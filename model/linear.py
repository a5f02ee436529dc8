"""nn.Linear with a faster route for the few-row products of decoding on a CPU.

A decoding step multiplies every weight matrix by one vector per sequence.
PyTorch hands such a product to MKL's matrix-vector kernel, which streams
float32 weights at well under the memory bandwidth on some CPUs: on the 2-core
AMD EPYC this was measured on, the 6x384 benchmark model's 43 MB took 3.2 ms
(13 GB/s). The same arithmetic written as one batched product of the matrix's
two row halves takes MKL's batched GEMM route instead and read them in 1.1 ms
(39 GB/s): 2.3 to 3.0x faster at 1 row over the day's runs (`python bench.py
generation` prints the ratio for the model's own matrices), 1.2x at 64, no
faster from 128 rows on (prefill, training). It only pays where the weights stream from memory: for a matrix
that stays in cache the extra steps cost more than they save, and the default
4x128 model decoded about 20% slower when every matrix took this route. So
matrices under MIN_WEIGHT_NUMEL keep F.linear: the default model decodes as
fast as with F.linear alone, the 6x384 benchmark model and GPT-2 small about
2x faster.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FEW_ROWS = 64  # up to here the row-halves route was faster; at 128 rows it was not
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


class Linear(nn.Linear):
    """nn.Linear (same parameters, state dict and initialisation) that computes
    float32 inference on a CPU by `matmul_by_row_halves` when at most FEW_ROWS
    rows meet a weight of at least MIN_WEIGHT_NUMEL elements. Training and
    everything else run F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._takes_row_halves(x):
            y = matmul_by_row_halves(x, self.weight)
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.weight, self.bias)

    def _takes_row_halves(self, x: torch.Tensor) -> bool:
        few_rows = x.numel() <= FEW_ROWS * self.in_features
        large = self.weight.numel() >= MIN_WEIGHT_NUMEL
        cpu_inference = x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
        return few_rows and large and cpu_inference
