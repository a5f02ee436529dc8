"""Next-token logits for a growing sequence: prefill once, then decode a token at a time."""
from __future__ import annotations

import torch

from .errors import ModelError
from .kv_cache import KVCache


class Decoder:
    """Follows a sequence as tokens are appended and gives the logits for the next one.

    Context policy, the same with and without the cache, so both give the same tokens:
    - RoPE: every token attends to the last block_size tokens, a sliding window.
      With the cache, the cache is a rolling window and a step costs the same
      however long generation runs. Without it, each step re-reads the last
      n_layer * (block_size - 1) + 1 tokens: all that the newest token's output
      depends on through n_layer windows.
    - Learned positions cannot slide: the window grows to block_size; when one
      more token would not fit, it is cut to its last block_size // 2 tokens,
      which are re-encoded at positions from 0.
    A prompt longer than block_size is read from its last block_size tokens.
    Given max_new_tokens, the cache holds no more positions than the generation needs.
    """

    # no_grad whatever mode the caller is in: the cache is written in place and never
    # carries gradients (GPT.generate_stream runs it under the lighter inference_mode)
    @torch.no_grad()
    def __init__(self, model, idx: torch.Tensor, use_cache: bool = True, max_new_tokens: int | None = None):
        c = model.config
        if idx.size(1) == 0:
            raise ModelError("the prompt needs at least one token")
        self.model = model
        self.sliding = c.pos_emb == "rope"
        self.reach = c.n_layer * (c.block_size - 1) + 1 if self.sliding else c.block_size  # tokens re-read uncached
        self.keep = max(1, c.block_size // 2)  # learned positions: tokens kept when the window is full
        self.tokens = idx[:, -c.block_size :]  # (B, T): the tokens the next step reads (uncached, or to re-encode)
        # a cache as long as the context, or as this generation if that is shorter (a model with a long
        # context, say 131,072 positions, would otherwise allocate them all)
        slots = c.block_size if max_new_tokens is None else min(c.block_size, self.tokens.size(1) + max_new_tokens)
        self.cache: KVCache | None = model.new_cache(idx.size(0), slots) if use_cache else None
        self.start = 0  # position of tokens[:, 0]
        self.logits = model.next_token_logits(self.tokens, self.cache)  # prefill: (B, V)

    @torch.no_grad()
    def push(self, next_id: torch.Tensor) -> torch.Tensor:
        """Append next_id (B, 1); return the logits (B, V) for the token after it."""
        if self.cache is not None and self.sliding:  # the cache rolls: one token in, nothing to keep
            self.logits = self.model.next_token_logits(next_id, self.cache)
            return self.logits
        self.tokens = torch.cat([self.tokens, next_id], dim=1)
        if self.tokens.size(1) > self.reach:
            cut = self.tokens.size(1) - (self.reach if self.sliding else self.keep)
            self.tokens, self.start = self.tokens[:, cut:], (self.start + cut if self.sliding else 0)
            if self.cache is not None:  # learned positions: re-encode the kept tokens from position 0
                self.cache.reset()
                self.logits = self.model.next_token_logits(self.tokens, self.cache)
                return self.logits
        if self.cache is not None:
            self.logits = self.model.next_token_logits(next_id, self.cache)  # decode one token
        else:
            self.logits = self.model.next_token_logits(self.tokens, None, start=self.start)
        return self.logits
