"""A decoder-only transformer in the GPT-2 shape.

idx (B, T) -> token + position embeddings -> n_layer pre-norm blocks
(attention, then MLP, each added to the residual stream) -> final LayerNorm
-> language-model head tied to the token embedding -> logits (B, T, V).
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .config import GPTConfig
from .decoding import Decoder
from .errors import ModelError
from .kv_cache import KVCache
from .sampling import sample_next


class MLP(nn.Module):
    """Position-wise feed-forward network, 4x wider inside, GELU between."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        patterns: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, patterns)  # attention writes into the residual stream
        x = x + self.mlp(self.ln_2(x))
        return x  # (B, T, C)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
                wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embedding
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # GPT-2: scale residual projections so the stream's variance stays put with depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Every parameter once (the tied head shares the token embedding)."""
        return sum(p.numel() for p in self.parameters())

    def crop_block_size(self, block_size: int) -> None:
        """Shorten the context (e.g. GPT-2's 1024) by keeping the first position embeddings."""
        if block_size > self.config.block_size:
            raise ModelError(f"block_size={block_size} is over this model's maximum of {self.config.block_size}")
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def hidden_states(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        patterns: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """idx (B, T) -> final-normed hidden states (B, T, C).

        With `cache`, idx holds the positions after those already cached.
        """
        B, T = idx.size()
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ModelError(
                f"sequence of {start + T} tokens is longer than block_size={self.config.block_size}"
            )
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cache, patterns)
        if cache is not None:
            cache.advance(T)
        return self.transformer.ln_f(x)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: (B, T) token ids -> logits (B, T, V) and mean cross-entropy
        over targets (positions whose target is -1 are ignored), or None."""
        logits = self.lm_head(self.hidden_states(idx))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def attention_patterns(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention pattern of every layer for idx (B, T): a list of n_layer
        tensors (B, nh, T, T), computed by the explicit path."""
        patterns: list[torch.Tensor] = []
        self.hidden_states(idx, patterns=patterns)
        return patterns

    def new_cache(self, batch_size: int) -> KVCache:
        c = self.config
        weight = self.transformer.wte.weight
        return KVCache(c.n_layer, batch_size, c.n_head, c.block_size, c.head_size, weight.device, weight.dtype)

    def next_token_logits(self, idx: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        """Logits (B, V) for the position after idx; the head runs on the last position only."""
        return self.lm_head(self.hidden_states(idx, cache)[:, -1, :])

    def generate_stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield max_new_tokens new tokens (B, 1), one step at a time.

        Generation may run past block_size; see `Decoder` for the context policy.
        """
        # inference_mode is lighter than no_grad (no view or version tracking): ~8% faster decoding.
        # It is never held across a yield, so the caller's code runs in its own mode.
        with torch.inference_mode():
            decoder = Decoder(self, idx, use_cache)  # prefill
        for step in range(max_new_tokens):
            with torch.inference_mode():
                next_id = sample_next(decoder.logits, temperature, top_k, top_p, generator)  # (B, 1)
            yield next_id.clone()  # a plain tensor again, usable anywhere
            if step + 1 < max_new_tokens:  # no forward pass for logits nobody will read
                with torch.inference_mode():
                    decoder.push(next_id)  # decode: one new token through the cache

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue idx (B, T) by max_new_tokens tokens; returns (B, T + max_new_tokens)."""
        new = self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator)
        return torch.cat([idx, *new], dim=1)

    @classmethod
    def from_pretrained(cls, name_or_dir: str) -> "GPT":
        """GPT-2 weights (gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a local
        Hugging Face directory) in this model."""
        from .pretrained import load_pretrained

        return load_pretrained(cls, name_or_dir)
