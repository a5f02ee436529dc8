"""The one-token decoding step (always the same shapes), compiled once per model; prefill stays eager.

On a CPU, AOTInductor compiles an exported `DecodeStep` into a package with the weights frozen inside, kept in
the compile cache under a hash of all it depends on: a later process loads it in about a second. On CUDA,
torch.compile's "reduce-overhead" replays the step as one CUDA graph (a small model's step is many short kernels,
whose launches would set its pace), writing the static cache tensors in place; each process traces it again.
"""

import contextlib
import getpass
import hashlib
import io
import os
import tempfile
import warnings
import weakref
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
_graphed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # GPT -> its CUDA-graphed step


class DecodeStep(nn.Module):
    """model.next_token_logits for one token, with the cache passed as tensors (what export takes)."""

    def __init__(self, model: "GPT"):
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor, positions: torch.Tensor, *cache_tensors: torch.Tensor) -> torch.Tensor:
        return self.model.next_token_logits(idx, KVCache(*cache_tensors), positions)


def package_path(model: "GPT", cache: KVCache) -> Path:
    """Where the compiled step of this model (shape, weights and their dtype), batch size, cache size,
    device and torch version lives in the compile cache (TORCHINDUCTOR_CACHE_DIR moves it)."""
    digest = hashlib.sha256(repr((model.config, cache.k[0].shape, cache.k[0].dtype, cache.k[0].device.type,
                                  torch.__version__)).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return inductor_cache() / "smallgpt-decoding" / f"{digest.hexdigest()[:32]}.pt2"


def inductor_cache() -> Path:
    """Inductor's own folder, found without importing inductor (seconds)."""
    return Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR")
                or Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}")


def compile_step(model: "GPT", cache: KVCache, path: Path) -> Path:
    """Export and compile the step for caches shaped like `cache`, and write its package to path (returned)."""
    # weights are constants, packed once for the kernels that read them; max_autotune times inductor's
    # C++ GEMM kernels against aten's and keeps the faster
    options = {"freezing": True, "max_autotune": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.pt2")  # never a half-written package under the name
    try:  # max_autotune writes its timing tables, and torch a deprecation it triggers, to stderr: not the user's
        with torch.inference_mode(False), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
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
    return path


def graphed_step(model: "GPT") -> Step:
    """The step compiled for CUDA graphs (compiled at its first call for each shape of cache)."""
    if model not in _graphed:
        # float32 products stay exact, so the graph picks eager decoding's tokens: inductor's advice to turn on
        # TF32 does not apply
        warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores", category=UserWarning)
        compiled = torch.compile(DecodeStep(model), mode="reduce-overhead", fullgraph=True, dynamic=False)

        def step(idx: torch.Tensor, cache: KVCache, positions: torch.Tensor) -> torch.Tensor:
            for tensor in cache.tensors():  # read and written where they are: a new cache re-records the graph
                torch._dynamo.mark_static_address(tensor)
            torch.compiler.cudagraph_mark_step_begin()
            return compiled(idx, positions, *cache.tensors()).clone()  # (B, V); the next replay reuses its memory

        _graphed[model] = step
    return _graphed[model]


def compile_ahead(model: "GPT", cache: KVCache) -> Path | None:
    """Compile the step for caches shaped like `cache` now, so that no token waits for it: where its
    compiled code is kept, or None when a package from an earlier run made compiling needless."""
    if cache.k[0].device.type == "cuda":  # traced in each process: run it on a scratch cache until it replays
        with torch.inference_mode():  # as generation runs it: a change of grad mode would compile it again
            step, scratch = graphed_step(model), KVCache(*(t.clone() for t in cache.tensors()))
            idx = torch.zeros(cache.k[0].size(0), 1, dtype=torch.long, device=cache.k[0].device)  # (B, 1)
            for _ in range(3):  # CUDA graph trees: a warm-up run, the recording, a replay
                step(idx, scratch, torch.zeros(1, dtype=torch.long, device=idx.device))
        return inductor_cache()
    path = package_path(model, cache)
    return None if path.exists() else compile_step(model, cache, path)


def compiled_step(model: "GPT", cache: KVCache) -> Step:
    """The compiled step for caches shaped like `cache`: CUDA-graphed, or the package from the compile cache
    (compiled now if missing, tens of seconds on a CPU), loaded once per process."""
    if cache.k[0].device.type == "cuda":
        return graphed_step(model)
    path = package_path(model, cache)
    if not path.exists():
        compile_step(model, cache, path)
    if path not in _loaded:
        runner = torch._inductor.aoti_load_package(str(path))
        _loaded[path] = lambda idx, cache, positions: runner(idx, positions, *cache.tensors())
    return _loaded[path]
