"""Decoding: next-token logits for a growing sequence, prefill once, then a token at a time through a preallocated KV
cache of fixed shape; the choice of each token; and the one-token step (always the same shapes), compiled once per model
while prefill stays eager.

On a CPU, AOTInductor compiles an exported `DecodeStep` into a package with the weights frozen inside, kept in the
compile cache under a hash of all it depends on: a later process loads it in milliseconds. On CUDA, torch.compile's
"reduce-overhead" replays the step as one CUDA graph (a small model's step is many short kernels, whose launches would
set its pace), writing the static cache tensors in place; each process traces it again."""

import contextlib
import getpass
import hashlib
import io
import numbers
import os
import re
import tempfile
import warnings
import weakref
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig, ModelError

if TYPE_CHECKING:
    from .gpt import GPT

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
        k_all.index_copy_(2, slots, k.type_as(k_all))  # type_as: a CPU's cache is float32, and autocast's k, v are not
        v_all.index_copy_(2, slots, v.type_as(v_all))
        return k_all, v_all


def check_ids(idx: torch.Tensor, name: str = "idx", within: "GPT | None" = None) -> None:
    """Refuse what is not a batch of token ids (B, T) in int64 or int32; `within` a model, also ids outside its
    vocabulary or on another device (this reads them: a GPU waits)."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype not in (torch.long, torch.int):
        what = type(idx).__name__ if not isinstance(idx, torch.Tensor) else f"a {idx.dtype} tensor {tuple(idx.shape)}"
        raise ModelError(f"{name} is {what}; token ids go in as a tensor of int64 (B, T), e.g. "
                         f"torch.tensor([ids]) for one sequence, or {name}.long()")
    if within is not None:
        weight = within.transformer.wte.weight
        if idx.device != weight.device:
            raise ModelError(f"{name} is on {idx.device}, the model on {weight.device}: "
                             f"{name}.to({str(weight.device)!r})")
        vocab = weight.size(0)
        if idx.device.type == "meta" or not idx.numel():  # no values to read
            return
        low, high = torch.stack(torch.aminmax(idx)).tolist()  # one pass over the ids, one wait for the device
        if not 0 <= low <= high < vocab:
            bad = low if low < 0 else high
            raise ModelError(f"{name} holds the token id {bad}, outside this model's vocabulary of {vocab}: encode "
                             f"text with the model's own tokenizer")


# A decoding step: (idx (B, T), cache, positions (T,)) -> logits (B, V); the compiled one takes one token
Step = Callable[[torch.Tensor, KVCache | None, torch.Tensor], torch.Tensor]


def whole(value) -> bool:  # an integer (numpy's too), not a bool
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def real(value) -> bool:  # a number (numpy's too), not a bool
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sampling(vocab_size: int, temperature: float, top_k: int | None, top_p: float | None,
                   vocab_limit: int | None) -> None:
    """Refuse sampling options out of range, for a model of vocab_size; numpy's numbers are numbers."""
    if not (real(temperature) and temperature >= 0):  # nan too
        raise ModelError(f"temperature={temperature!r} must be 0 (greedy) or more")
    if top_k is not None and not (whole(top_k) and top_k > 0):
        raise ModelError(f"top_k={top_k!r} must be a positive integer, or None for no top-k filter")
    if top_p is not None and not (real(top_p) and 0 < top_p <= 1):
        raise ModelError(f"top_p={top_p!r} must be in (0, 1], or None for no nucleus filter")
    if vocab_limit is not None and not (whole(vocab_limit) and 0 < vocab_limit <= vocab_size):
        raise ModelError(f"vocab_limit={vocab_limit!r} must be from 1 to the model's vocabulary, {vocab_size}")


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None, vocab_limit: int | None = None) -> torch.Tensor:
    """Pick one token per row of logits (B, V) below vocab_limit (padding ids decode to nothing): ids (B, 1).
    temperature 0 is greedy, else top_k and top_p filter a sample."""
    check_sampling(logits.size(-1), temperature, top_k, top_p, vocab_limit)
    temperature, top_p = float(temperature), None if top_p is None else float(top_p)
    logits = logits[:, :vocab_limit].float()  # (B, vocab_limit): the padding ids are never candidates (None: all)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    # shifted so the largest is 0, divided by no less than float32's smallest normal number (mps has no float64):
    # a tiny temperature then gives 0 and very negative logits (greedy), never 0 / 0 = nan
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / max(temperature, torch.finfo(torch.float32).tiny)
    if top_k is not None:  # keep the top_k largest logits of each row, exactly k even among ties
        values, ids = torch.topk(logits, min(int(top_k), logits.size(-1)), dim=-1)  # (B, k) each
        logits = torch.full_like(logits, float("-inf")).scatter_(-1, ids, values)  # (B, V): the rest are never drawn
    if top_p is not None and top_p < 1.0:  # nucleus: the fewest most likely tokens holding at least top_p
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # by the mass ranked above
        drop_sorted[:, 0] = False  # the most likely always survives, whatever top_p rounds to in float32 (1e-50: 0)
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))  # vocabulary order
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)


def cache_layout(model: "GPT", prompt_tokens: int, max_new_tokens: int | None, compile: bool
                 ) -> tuple[int, torch.dtype]:
    """generation_cache's slots and dtype: the context, or the generation (max_new_tokens, None: the context) if
    shorter, not to allocate a long context whole; for the compiled step a power of two, so one serves many lengths."""
    c, weight = model.config, model.transformer.wte.weight
    needed = min(prompt_tokens, c.block_size) + (c.block_size if max_new_tokens is None else max_new_tokens)
    slots = min(c.block_size, 1 << (needed - 1).bit_length() if compile else needed)
    return slots, attention_dtype(weight.device, weight.dtype)


def attention_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """What attention computes in, and a KV cache holds, for weights or autocast in dtype: float32 on a CPU, where
    torch's fused attention is faster in float32 than in bfloat16 (decoding's one query on a CPU with AVX2 only;
    training's backward pass, several times over at small head sizes, on one with AVX512-BF16); dtype elsewhere."""
    return torch.float32 if device.type == "cpu" else dtype


def longest_window(c: GPTConfig, use_cache: bool) -> int:
    """The most tokens a step reads (Decoder's context policy): the cache's block_size slots, or the tokens it
    re-reads without the cache."""
    return c.n_layer * (c.block_size - 1) + 1 if c.pos_emb == "rope" and not use_cache else c.block_size


def decoding_bytes(model: "GPT", prompt_tokens: int, max_new_tokens: int, use_cache: bool, compile: bool) -> int:
    """At least the bytes each sequence takes to decode: the cache's keys and values, or uncached, one block's
    residual stream and MLP activations over the longest window a step re-reads (the last token is never read)."""
    c = model.config
    if not use_cache:
        window = min(min(prompt_tokens, c.block_size) + max_new_tokens - 1, longest_window(c, use_cache=False))
        return window * (c.n_embd + c.mlp_hidden) * model.transformer.wte.weight.element_size()
    slots, dtype = cache_layout(model, prompt_tokens, max_new_tokens, compile)
    return 2 * c.n_layer * c.n_kv_head * slots * c.head_size * dtype.itemsize


def generation_cache(model, idx: torch.Tensor, max_new_tokens: int | None, compile: bool) -> KVCache:
    """The KV cache, every slot empty, of a generation from idx (B, T) (its size: cache_layout)."""
    if compile and idx.device.type not in ("cpu", "cuda"):
        raise ModelError(f"the compiled decoding step runs on a CPU or a CUDA GPU, not {idx.device.type}; "
                         "decode without compile (--compile=false)")
    c, weight = model.config, model.transformer.wte.weight
    slots, dtype = cache_layout(model, idx.size(1), max_new_tokens, compile)
    keys_values = [weight.new_zeros(idx.size(0), c.n_kv_head, slots, c.head_size, dtype=dtype)
                   for _ in range(2 * c.n_layer)]
    return KVCache(torch.full((slots,), EMPTY, dtype=torch.long, device=weight.device), *keys_values)


class Decoder:
    """Follows a sequence as tokens are appended and gives the logits for the next one.

    Context policy, the same with and without the cache, so both give the same tokens:
    - RoPE: every token attends to the last block_size tokens, a sliding window. The cache rolls, so a step costs the
      same however long generation runs; uncached, each step re-reads the last n_layer * (block_size - 1) + 1 tokens:
      all the newest token depends on through n_layer windows.
    - Learned positions cannot slide: the window grows to block_size; when one more token would not fit, it is cut to
      its last block_size // 2 tokens, re-encoded at positions from 0.
    A prompt longer than block_size is read from its last block_size tokens."""

    # no_grad whatever mode the caller is in: the cache is written in place and never carries gradients
    @torch.no_grad()
    def __init__(self, model, idx: torch.Tensor, use_cache: bool = True, max_new_tokens: int | None = None,
                 compile: bool = False):
        c = model.config
        if idx.size(1) == 0:
            raise ModelError("the prompt needs at least one token")
        self.model = model
        self.sliding = c.pos_emb == "rope"
        self.reach = longest_window(c, use_cache=False)  # the most tokens a step re-reads (a rolling cache: none)
        self.keep = self.reach if self.sliding else max(1, c.block_size // 2)  # tokens kept when the window is full
        self.tokens = idx[:, -c.block_size :]  # (B, T): the tokens the next step reads (uncached, or to re-encode)
        if compile and not use_cache:
            raise ModelError("the compiled decoding step runs through the KV cache: compile needs use_cache")
        self.cache = generation_cache(model, idx, max_new_tokens, compile) if use_cache else None
        self.step = None if compile else model.next_token_logits  # the compiled step: loaded when first needed
        self.length = self.tokens.size(1)  # positions so far: the newest token is at length - 1
        self.logits = self._forward(self.tokens)  # (B, V)

    def _forward(self, idx: torch.Tensor, step: Step | None = None) -> torch.Tensor:
        """Logits (B, V) after idx (B, T), the newest tokens, by `step` (eager by default)."""
        positions = torch.arange(self.length - idx.size(1), self.length, device=idx.device)  # (T,)
        return (step or self.model.next_token_logits)(idx, self.cache, positions)

    @torch.no_grad()
    def push(self, next_id: torch.Tensor) -> None:
        """Append next_id (B, 1); `logits` become those (B, V) for the token after it."""
        self.length += 1
        if self.cache is None or not self.sliding:  # a rolling cache keeps no tokens: one in, nothing to keep
            self.tokens = torch.cat([self.tokens, next_id], dim=1)
        full = self.tokens.size(1) > self.reach
        if full:
            self.tokens = self.tokens[:, -self.keep :]
            if not self.sliding:  # learned positions: re-encode the kept tokens from position 0
                self.length = self.keep
            if self.cache is not None:  # learned positions only: a rolling cache never fills
                self.cache.slot_positions.fill_(EMPTY)  # old keys and values stay, hidden, until overwritten
        if self.cache is None or full:
            self.logits = self._forward(self.tokens)
        else:  # one new token through the cache; the compiled step loaded once the prefill's token is out (a while)
            self.step = self.step or compiled_step(self.model, self.cache)
            self.logits = self._forward(next_id, self.step)


_loaded: dict[Path, Step] = {}  # packages this process has loaded
_graphed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # GPT -> its CUDA-graphed step


class DecodeStep(nn.Module):
    """model.next_token_logits for one token, with the cache passed as tensors (what export takes)."""

    def __init__(self, model: "GPT"):
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor, positions: torch.Tensor, *cache_tensors: torch.Tensor) -> torch.Tensor:
        return self.model.next_token_logits(idx, KVCache(*cache_tensors), positions)


def autotuned() -> bool:
    """Whether the step's matrix kernels are timed and picked: yes unless TORCHINDUCTOR_MAX_AUTOTUNE=0 (inductor's
    switch, which is off unless set for its other compiles), for a compile a few times shorter and a slower step."""
    return os.environ.get("TORCHINDUCTOR_MAX_AUTOTUNE", "1") != "0"


def package_path(model: "GPT", cache: KVCache) -> Path:
    """Where the compiled step of this model (shape, weights and their dtype, the code of model/), batch size,
    cache size, device, autotuning and torch version lives in the compile cache (TORCHINDUCTOR_CACHE_DIR moves it)."""
    digest = hashlib.sha256(repr((model.config, cache.k[0].shape, cache.k[0].dtype, cache.k[0].device.type,
                                  autotuned(), torch.__version__)).encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):  # an edited model is compiled anew
        digest.update(source.read_bytes())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return inductor_cache() / "smallgpt-decoding" / f"{digest.hexdigest()[:32]}.pt2"


def inductor_cache() -> Path:
    """Inductor's own folder, found without importing inductor (seconds)."""
    if folder := os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(folder)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's --user UID): named as inductor names it
        user = f"uid_{os.getuid()}"
    return Path(tempfile.gettempdir()) / ("torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user))


def damaged(package: Path) -> bool:
    """Whether a package (a zip archive) is damaged: not a zip, or an entry that fails its CRC. A file that cannot be
    read (no right to, gone) is not known to be."""
    try:
        with zipfile.ZipFile(package) as archive:
            return archive.testzip() is not None
    except OSError:
        return False
    except Exception:  # BadZipFile, or what a changed header makes zipfile raise (zlib.error, RuntimeError, EOFError)
        return True


def unwritable_cache(folder: Path, e: OSError) -> ModelError:
    return ModelError(f"cannot write the compile cache {folder} ({e.strerror or e}); set TORCHINDUCTOR_CACHE_DIR to a "
                      f"writable folder, or decode without compiling")


def compile_step(model: "GPT", cache: KVCache, path: Path) -> Path:
    """Export and compile the step for caches shaped like `cache`, and write its package to path (returned)."""
    # weights are constants, packed once for the kernels that read them; max_autotune times inductor's
    # C++ GEMM kernels against aten's and keeps the faster
    options = {"freezing": True, "max_autotune": autotuned()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path.parent).close()  # writable: found now, not after a minute of compiling
    except OSError as e:
        raise unwritable_cache(path.parent, e) from None
    partial = path.with_name(f"{path.stem}.{os.getpid()}.pt2")  # never a half-written package under the name
    try:  # max_autotune writes its timing tables, and torch a deprecation it triggers, to stderr: not the user's
        with torch.inference_mode(False), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            example = [torch.zeros_like(t) for t in cache.tensors()]  # not the caller's (inference-mode) tensors
            idx = torch.zeros(cache.k[0].size(0), 1, dtype=torch.long, device=example[0].device)  # (B, 1)
            exported = torch.export.export(DecodeStep(model), (idx, idx.new_zeros(1), *example), strict=False)
            torch._inductor.aoti_compile_and_package(exported, package_path=str(partial), inductor_configs=options)
    except Exception as e:  # no C++ compiler, a device AOTInductor lacks: their reports run to pages
        partial.unlink(missing_ok=True)
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"could not compile the decoding step ({type(e).__name__}: {reason}); "
                         "decode without compiling") from None
    with open(partial, "rb") as f:
        os.fsync(f.fileno())  # on disk before it takes the name: a crash leaves no empty package there
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


def compile_ahead(model: "GPT", cache: KVCache, announce: Callable[[], None] = lambda: None) -> Path | None:
    """Compile the step for caches shaped like `cache` now (after `announce`), so no token waits for it: where its
    code is kept, or None when an earlier run's package made compiling needless."""
    if cache.k[0].device.type == "cuda":
        announce()  # traced in each process: run it on a scratch cache until it replays
        with torch.inference_mode():  # as generation runs it: a change of grad mode would compile it again
            step, scratch = graphed_step(model), KVCache(*(t.clone() for t in cache.tensors()))
            idx = torch.zeros(cache.k[0].size(0), 1, dtype=torch.long, device=cache.k[0].device)  # (B, 1)
            for _ in range(3):  # CUDA graph trees: a warm-up run, the recording, a replay
                step(idx, scratch, torch.zeros(1, dtype=torch.long, device=idx.device))
        return inductor_cache()
    path = package_path(model, cache)
    if path.exists():
        return None
    announce()
    return compile_step(model, cache, path)


def compiled_step(model: "GPT", cache: KVCache) -> Step:
    """The compiled step for caches shaped like `cache`: CUDA-graphed, or the package from the compile cache
    (compiled now if missing, tens of seconds on a CPU), loaded once per process."""
    if cache.k[0].device.type == "cuda":
        return graphed_step(model)
    path = package_path(model, cache)
    if not path.exists():
        compile_step(model, cache, path)
    if path not in _loaded:
        try:  # aoti_load_package's own loader, called directly: importing inductor (torch._dynamo) takes seconds
            runner = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
        except RuntimeError as e:
            reason = str(e).splitlines()[0][:240]
            if not damaged(path):  # kept: sound, its unpacking failed (no temporary folder, ...), or unreadable
                raise ModelError(f"could not load the compiled decoding step {path} ({reason}); decode without "
                                 f"compiling, or remove it to compile it anew") from None
            try:  # a package cut short (a full disk, a copy): compiled anew by the next run
                path.unlink(missing_ok=True)
            except OSError as refused:
                raise unwritable_cache(path.parent, refused) from None
            raise ModelError(f"the compiled decoding step {path} was damaged ({reason}) and is removed; run again to "
                             f"compile it anew") from None
        # the step's call spec: its tensors flat in, one tensor out
        _loaded[path] = lambda idx, cache, positions: runner.boxed_run([idx, positions, *cache.tensors()])[0]
    return _loaded[path]
