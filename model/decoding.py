"""Next-token logits for a growing sequence: prefill once, then decode a token at a time."""
from __future__ import annotations

import torch

from .errors import ModelError
from .kv_cache import KVCache


class Decoder:
    """Follows a sequence as tokens are appended and gives the logits for the next one.

    Context policy, the same with and without the cache: the window of tokens
    the model sees grows up to block_size; when one more token would not fit,
    the window is cut to its last block_size // 2 tokens, which are re-encoded
    at positions from 0 (learned absolute positions cannot simply slide).
    With the cache, the prompt is encoded once (prefill) and each later step
    feeds only the newest token (decode); without it, the whole window is re-run.
    """

    # no_grad whatever mode the caller is in: the cache is written in place and never
    # carries gradients (GPT.generate_stream runs it under the lighter inference_mode)
    @torch.no_grad()
    def __init__(self, model, idx: torch.Tensor, use_cache: bool = True):
        block_size = model.config.block_size
        if idx.size(1) > block_size:
            raise ModelError(f"prompt of {idx.size(1)} tokens is longer than block_size={block_size}")
        if idx.size(1) == 0:
            raise ModelError("the prompt needs at least one token")
        self.model = model
        self.keep = max(1, block_size // 2)  # tokens kept when the window is full
        self.cache: KVCache | None = model.new_cache(idx.size(0)) if use_cache else None
        self.window = idx  # (B, Tw), the tokens in context
        self.logits = model.next_token_logits(idx, self.cache)  # prefill: (B, V)

    @torch.no_grad()
    def push(self, next_id: torch.Tensor) -> torch.Tensor:
        """Append next_id (B, 1); return the logits (B, V) for the token after it."""
        self.window = torch.cat([self.window, next_id], dim=1)
        if self.window.size(1) > self.model.config.block_size:
            self.window = self.window[:, -self.keep :]
            if self.cache is not None:
                self.cache.reset()
            self.logits = self.model.next_token_logits(self.window, self.cache)  # re-prefill
        elif self.cache is not None:
            self.logits = self.model.next_token_logits(next_id, self.cache)  # decode one token
        else:
            self.logits = self.model.next_token_logits(self.window, None)
        return self.logits
