"""Next-token logits for a growing sequence: prefill once, then decode a token at a time."""

import torch

from .compiled_decoding import compiled_step
from .errors import ModelError
from .kv_cache import KVCache


def generation_cache(model, idx: torch.Tensor, max_new_tokens: int | None, compile: bool) -> KVCache:
    """The KV cache a generation from idx (B, T) uses: as long as the context, or as the generation if
    that is shorter (a model with a context of, say, 131,072 positions would otherwise allocate them
    all); for the compiled step rounded up to a power of two, so one compilation serves many lengths."""
    if compile and idx.device.type not in ("cpu", "cuda"):
        raise ModelError(f"the compiled decoding step runs on a CPU or a CUDA GPU, not {idx.device.type}; "
                         "decode without compile (--compile=false)")
    block_size = model.config.block_size
    needed = min(idx.size(1), block_size) + (block_size if max_new_tokens is None else max_new_tokens)
    return model.new_cache(idx.size(0), min(block_size, 1 << (needed - 1).bit_length() if compile else needed))


class Decoder:
    """Follows a sequence as tokens are appended and gives the logits for the next one.

    Context policy, the same with and without the cache, so both give the same tokens:
    - RoPE: every token attends to the last block_size tokens, a sliding window. The cache rolls, so
      a step costs the same however long generation runs; uncached, each step re-reads the last
      n_layer * (block_size - 1) + 1 tokens: all the newest token depends on through n_layer windows.
    - Learned positions cannot slide: the window grows to block_size; when one more token would not
      fit, it is cut to its last block_size // 2 tokens, re-encoded at positions from 0.
    A prompt longer than block_size is read from its last block_size tokens. With `compile`, the
    one-token step is the compiled one (model/compiled_decoding.py).
    """

    # no_grad whatever mode the caller is in: the cache is written in place and never
    # carries gradients (GPT.generate_stream runs it under the lighter inference_mode)
    @torch.no_grad()
    def __init__(self, model, idx: torch.Tensor, use_cache: bool = True, max_new_tokens: int | None = None,
                 compile: bool = False):
        c = model.config
        if idx.size(1) == 0:
            raise ModelError("the prompt needs at least one token")
        self.model = model
        self.sliding = c.pos_emb == "rope"
        self.reach = c.n_layer * (c.block_size - 1) + 1 if self.sliding else c.block_size  # tokens re-read uncached
        self.keep = max(1, c.block_size // 2)  # learned positions: tokens kept when the window is full
        self.tokens = idx[:, -c.block_size :]  # (B, T): the tokens the next step reads (uncached, or to re-encode)
        if compile and not use_cache:
            raise ModelError("the compiled decoding step runs through the KV cache: compile needs use_cache")
        self.cache = generation_cache(model, idx, max_new_tokens, compile) if use_cache else None
        self.step = None if compile else model.next_token_logits  # the compiled step: loaded when first needed
        self.start = 0  # position of tokens[:, 0]
        self.length = 0  # positions in the cache: the next one is at position `length`
        self.logits = self._prefill(self.tokens)  # (B, V)

    def _prefill(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) after idx (B, T): the window itself uncached, or T tokens after the cached ones."""
        start = self.start if self.cache is None else self.length
        positions = torch.arange(start, start + idx.size(1), device=idx.device)  # (T,)
        self.length += idx.size(1) if self.cache is not None else 0
        return self.model.next_token_logits(idx, self.cache, positions)

    def _step(self, next_id: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) after one new token next_id (B, 1), through the cache."""
        positions = torch.arange(self.length, self.length + 1, device=next_id.device)  # (1,)
        self.length += 1
        if self.step is None:  # after the prefill's token is out: loading the compiled step takes a while
            self.step = compiled_step(self.model, self.cache)
        return self.step(next_id, self.cache, positions)

    @torch.no_grad()
    def push(self, next_id: torch.Tensor) -> None:
        """Append next_id (B, 1); `logits` become those (B, V) for the token after it."""
        if self.cache is not None and self.sliding:  # the cache rolls: one token in, nothing to keep
            self.logits = self._step(next_id)
            return
        self.tokens = torch.cat([self.tokens, next_id], dim=1)
        full = self.tokens.size(1) > self.reach
        if full:
            cut = self.tokens.size(1) - (self.reach if self.sliding else self.keep)
            self.tokens, self.start = self.tokens[:, cut:], (self.start + cut if self.sliding else 0)
        if self.cache is not None and full:  # learned positions: re-encode the kept tokens from position 0
            self.cache.reset()
            self.length = 0
        self.logits = self._step(next_id) if self.cache is not None and not full else self._prefill(self.tokens)
