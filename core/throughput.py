"""Model FLOPs utilisation: the FLOPs a step needs over the peak the device can give."""
from __future__ import annotations

import time

import torch

# Dense peak TFLOP/s from the vendors' data sheets; float32 means TF32 tensor cores (enabled on CUDA).
PEAK_TFLOPS = {  # matched against torch.cuda.get_device_name(), most specific first
    "H100 PCIe": {"bfloat16": 756.0, "float16": 756.0, "float32": 378.0},
    "H100": {"bfloat16": 989.0, "float16": 989.0, "float32": 494.0},
    "H200": {"bfloat16": 989.0, "float16": 989.0, "float32": 494.0},
    "A100": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0},
    "L4": {"bfloat16": 121.0, "float16": 121.0, "float32": 60.0},
    "RTX 4090": {"bfloat16": 165.2, "float16": 165.2, "float32": 82.6},
}


def measure_matmul_flops(dtype: torch.dtype, size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of this CPU on a square matrix multiply: the best of a few runs."""
    generator = torch.Generator().manual_seed(0)  # leaves the global generator (dropout, resume) alone
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(device: torch.device, dtype: str) -> tuple[float | None, str]:
    """Peak FLOP/s of the device for dtype, and where the figure comes from; None if unknown."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in PEAK_TFLOPS.items():
            if key in name:
                return peaks[dtype] * 1e12, f"{name} data sheet"
        return None, f"{name} is not in the peak table"
    if device.type == "cpu":
        return measure_matmul_flops(getattr(torch, dtype)), "measured matmul probe"
    return None, f"no peak known for {device.type}"


class MFUMeter:
    """MFU = flops_per_token * tokens per second / peak."""

    def __init__(self, flops_per_token: int, device: torch.device, dtype: str):
        self.flops_per_token = flops_per_token
        self.peak, self.peak_source = peak_flops(device, dtype)

    def mfu(self, tokens_per_second: float) -> float | None:
        return self.flops_per_token * tokens_per_second / self.peak if self.peak else None
