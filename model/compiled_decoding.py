"""The one-token decoding step compiled ahead of time, once per model, and loaded from disk after.

A decoding step has the same shapes every time (one new token, a KV cache of fixed size), so
torch.export captures `DecodeStep` and AOTInductor compiles it into a package (a shared library
with the weights frozen inside; on a CPU its matrix products are inductor's C++ GEMM kernels,
picked by timing them against aten's), written to the compile cache under a hash of everything
it depends on: a later process loads it in about a second. Prefill stays eager: it runs once per
sample, at a different length each time.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .errors import ModelError
from .kv_cache import KVCache

if TYPE_CHECKING:
    from .gpt import GPT

Step = Callable[[torch.Tensor, KVCache, torch.Tensor], torch.Tensor]  # (idx (B, 1), cache, positions (1,)) -> (B, V)
_loaded: dict[Path, Step] = {}  # packages this process has loaded


class DecodeStep(nn.Module):
    """model.next_token_logits for one token, with the cache passed as tensors (what export takes)."""

    def __init__(self, model: "GPT"):
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor, positions: torch.Tensor, *cache_tensors: torch.Tensor) -> torch.Tensor:
        return self.model.next_token_logits(idx, KVCache(*cache_tensors), positions)


def _tensor_bytes(tensor: torch.Tensor) -> list[bytes]:
    """The bytes of a tensor, or of each tensor inside a tensor subclass (an int8 weight and its scales)."""
    if hasattr(tensor, "__tensor_flatten__"):
        return [b for name in tensor.__tensor_flatten__()[0] for b in _tensor_bytes(getattr(tensor, name))]
    return [tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes()]


def package_path(model: "GPT", cache: KVCache) -> Path:
    """Where the compiled step of this model (shape, weights and their dtype), batch size, cache size,
    device and torch version lives in the compile cache (TORCHINDUCTOR_CACHE_DIR moves it)."""
    digest = hashlib.sha256(repr((model.config, cache.k[0].shape, cache.k[0].dtype, cache.k[0].device.type,
                                  torch.__version__)).encode())
    with torch.inference_mode(False):  # a tensor subclass (int8 weights) is not detached inside it
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            for chunk in _tensor_bytes(tensor):
                digest.update(chunk)
    # inductor's own folder, found without importing inductor (seconds): a warm start loads it after the first token
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
    return Path(cache) / "smallgpt-decoding" / f"{digest.hexdigest()[:32]}.pt2"


def compile_step(model: "GPT", cache: KVCache, path: Path) -> None:
    """Export and compile the step for caches shaped like `cache`, and write its package to path."""
    options = {"freezing": True}  # weights are constants: packed once for the kernels that read them
    if cache.slot_positions.device.type == "cpu":
        options["max_autotune"] = True  # time inductor's C++ GEMM kernels against aten's and keep the faster
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.pt2")  # never a half-written package under the name
    try:
        with torch.inference_mode(False), torch.no_grad():
            example = [torch.zeros_like(t) for t in cache.tensors()]  # not the caller's (inference-mode) tensors
            idx = torch.zeros(cache.k[0].size(0), 1, dtype=torch.long, device=example[0].device)  # (B, 1)
            args = (idx, torch.zeros(1, dtype=torch.long, device=idx.device), *example)  # positions (1,)
            exported = torch.export.export(DecodeStep(model), args, strict=False)
            torch._inductor.aoti_compile_and_package(exported, package_path=str(partial), inductor_configs=options)
    except Exception as e:  # no C++ compiler, a device AOTInductor lacks: their reports run to pages
        partial.unlink(missing_ok=True)
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"could not compile the decoding step ({type(e).__name__}: {reason}); "
                         "decode without compiling") from None
    os.replace(partial, path)


def compiled_step(model: "GPT", cache: KVCache) -> Step:
    """The compiled step for this model and caches shaped like `cache`: from the compile cache,
    or compiled now (tens of seconds on a CPU) and written there; loaded once per process."""
    path = package_path(model, cache)
    if not path.exists():
        compile_step(model, cache, path)
    if path not in _loaded:
        runner = torch._inductor.aoti_load_package(str(path))
        _loaded[path] = lambda idx, cache, positions: runner(idx, positions, *cache.tensors())
    return _loaded[path]
