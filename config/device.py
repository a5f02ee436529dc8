"""Choosing the device and the precision of the forward pass."""

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from .errors import UserError


def pick_device(name: str) -> torch.device:
    """'auto' means cuda, then mps, then cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device = None
    with contextlib.suppress(RuntimeError):
        device = torch.device(name)
    if device is None or device.type not in ("cpu", "cuda", "mps"):  # meta, xpu, ...: torch's, not this project's
        raise UserError(f"device={name!r} is not a device this project runs on; use auto, cpu, cuda, cuda:N or mps")
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if device.type in available and not available[device.type]():
        raise UserError(f"device={name} but {device.type.upper()} is not available here; use --device=cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device={name} but there are {torch.cuda.device_count()} GPU(s) here, "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cpu") if device.type == "cpu" else device  # one CPU device: cpu:0 is cpu (torch.load)


def memory_bytes(device: torch.device) -> int:
    """The device's memory: a GPU's own, else the machine's (a CPU's, and Apple's, which its GPU shares)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """'auto' is bfloat16 where the hardware computes it natively (recent GPUs; CPUs with AVX512-BF16 or AMX; bench.py
    precision measures it), else float32. float16 on a CPU is refused: its autocast has no fast kernels there."""
    if dtype == "float16" and device.type == "cpu":
        raise UserError("dtype=float16 has no fast path on a CPU (autocast runs it slower than float32); "
                        "use --dtype=bfloat16 or float32")
    if dtype != "auto":
        return dtype
    native = (torch.cuda.is_bf16_supported() if device.type == "cuda" else
              device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()))
    return "bfloat16" if native else "float32"


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a GPU, so that a clock read after it measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable, *args: Any, device: torch.device = torch.device("cpu"), **kwargs: Any) -> tuple[Any, float]:
    """fn's result and the wall seconds it took, the work it queued on the device included."""
    synchronize(device)
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    synchronize(device)
    return result, time.perf_counter() - start


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass; float32 runs as it is."""
    return (contextlib.nullcontext() if dtype == "float32"
            else torch.autocast(device_type=device.type, dtype=getattr(torch, dtype)))  # torch.bfloat16 or float16
