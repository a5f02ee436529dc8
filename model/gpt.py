"""A decoder-only transformer, in the GPT-2 shape or the modern one.

idx (B, T) -> token embeddings (+ learned position embeddings in the GPT-2 shape; RoPE turns queries and keys instead)
-> n_layer pre-norm blocks (attention, then MLP, each added to the residual stream) -> final norm -> language-model head
(tied to the token embedding in GPT-2) -> logits (B, T, V)."""

import copy
import math
from collections.abc import Iterator
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import AttentionRecord, CausalSelfAttention, Positions, rotation_tables
from .config import GPTConfig, ModelError
from .decoding import Decoder, KVCache, check_ids, check_sampling, sample_next, whole


def norm_layer(config: GPTConfig) -> nn.Module:
    """LayerNorm (GPT-2: centre, scale, shift) or RMSNorm (Llama: scale by the root mean square)."""
    return (nn.RMSNorm(config.n_embd, eps=config.norm_eps) if config.norm == "rmsnorm"
            else nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias))


class MLP(nn.Module):
    """Position-wise feed-forward network: GELU (GPT-2) or SwiGLU, a gate chosen per hidden unit and per token."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        C, hidden = config.n_embd, config.mlp_hidden
        self.gate_proj = nn.Linear(C, hidden, bias=config.bias) if config.mlp == "swiglu" else None
        self.up_proj = nn.Linear(C, hidden, bias=config.bias)
        self.down_proj = nn.Linear(hidden, C, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_proj is None:
            hidden = F.gelu(self.up_proj(x), approximate="tanh")  # GPT-2's "gelu_new": (B, T, hidden)
        else:
            hidden = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (B, T, hidden)
        return self.dropout(self.down_proj(hidden))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.norm_1 = norm_layer(config)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.norm_2 = norm_layer(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, positions: Positions, cache: KVCache | None = None,
                records: list[AttentionRecord] | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x), positions, cache, records)  # attention writes into the residual stream
        x = x + self.mlp(self.norm_2(x))
        return x  # (B, T, C)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = copy.copy(config)  # its own: crop_block_size and set_dropout change it, not the caller's
        layers = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))  # token embedding
        if config.pos_emb == "learned":
            layers["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # learned position embedding
        layers.update(drop=nn.Dropout(config.dropout),
                      h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
                      norm_f=norm_layer(config))
        self.transformer = nn.ModuleDict(layers)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix reads and writes tokens
        if self.lm_head.weight.is_meta:  # shapes without values (counting parameters): nothing to draw
            return
        for module in self.modules():  # GPT-2's initialization: normal weights of std 0.02, zero biases
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.transformer.h:  # GPT-2: what writes into the residual stream is scaled down with depth,
            for p in (block.attn.o_proj.weight, block.mlp.down_proj.weight):  # so the stream's variance stays put
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def num_params(self) -> int:
        """Every parameter once (a tied head shares the token embedding)."""
        return sum(p.numel() for p in self.parameters())

    def weights_finite(self) -> bool:
        """No weight is nan or inf (as a training that diverged leaves them)."""
        return all(torch.isfinite(p).all() for p in self.parameters())

    def set_dropout(self, p: float) -> None:
        """Dropout probability p in every layer that drops (a checkpoint's or a pretrained model's included)."""
        self.config = replace(self.config, dropout=p)  # checked as any config's dropout
        for module in self.modules():
            if isinstance(module, nn.Dropout):  # attention's also sets scaled_dot_product_attention's dropout_p
                module.p = p

    def compile_blocks(self) -> None:
        """torch.compile every block in place: they share one graph, so compiling takes a fraction of the whole
        model's time. Under torch.compiler.set_stance("force_eager") it runs eagerly, as decoding and pictures need."""
        for block in self.transformer.h:
            block.compile()

    def crop_block_size(self, block_size: int) -> None:
        """Shorten the context (e.g. GPT-2's 1024), keeping the first position embeddings."""
        if not whole(block_size) or block_size < 1:
            raise ModelError(f"block_size={block_size!r} must be a whole number, 1 or more")
        block_size = int(block_size)
        if block_size > self.config.block_size:
            raise ModelError(f"block_size={block_size} is over this model's maximum of {self.config.block_size}; "
                             f"use block_size={self.config.block_size} or less")
        self.config.block_size = block_size
        if "wpe" in self.transformer:
            self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def hidden_states(self, idx: torch.Tensor, cache: KVCache | None = None,
                      records: list[AttentionRecord] | None = None, positions: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """idx (B, T) at positions (T,) (0..T-1 unless given) -> final-normed hidden states (B, T, C).
        With `cache`, idx holds the positions after those already cached. Learned positions stop at
        block_size; with RoPE a longer sequence is read with every token attending to its last block_size."""
        check_ids(idx)
        c, T = self.config, idx.size(1)
        if positions is None:
            positions = torch.arange(T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx)  # (B, T, C)
        if "wpe" in self.transformer:
            if T > c.block_size:
                raise ModelError(f"sequence of {T} tokens is longer than block_size={c.block_size}")
            x = x + self.transformer.wpe(positions)  # position added to the residual stream
        if cache is not None:
            cache.reserve(positions)
        rotation = rotation_tables(positions, c.head_size, c.rope_theta, x.dtype) if c.pos_emb == "rope" else None
        where = Positions(positions, positions if cache is None else cache.slot_positions, c.block_size, rotation)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, where, cache, records)
        return self.transformer.norm_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: (B, T) token ids -> logits (B, T, V) and mean cross-entropy (target -1 ignored) or None."""
        try:
            logits = self.lm_head(self.hidden_states(idx))  # (B, T, V)
        except IndexError:  # a CPU's id outside the vocabulary: checked only now (each step, a GPU would wait)
            check_ids(idx, within=self)  # names it
            raise
        if targets is None:
            return logits, None
        check_ids(targets, "targets")
        if targets.shape != idx.shape:
            raise ModelError(f"targets {tuple(targets.shape)} must have idx's shape, {tuple(idx.shape)}")
        return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1).long(), ignore_index=-1)

    @torch.no_grad()
    def attention_records(self, idx: torch.Tensor) -> list[AttentionRecord]:
        """What every layer's attention computed for idx (B, T), by the explicit path:
        n_layer records of raw scores, patterns (B, nh, T, T) and value lengths (B, nh, T)."""
        check_ids(idx, within=self)
        records: list[AttentionRecord] = []
        self.hidden_states(idx, records=records)
        return records

    def attention_patterns(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention pattern of every layer for idx (B, T): n_layer tensors (B, nh, T, T)."""
        return [record.pattern for record in self.attention_records(idx)]

    def next_token_logits(self, idx: torch.Tensor, cache: KVCache | None, positions: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) for the position after idx (B, T) at positions (T,); the head runs on the last one only."""
        return self.lm_head(self.hidden_states(idx, cache, positions=positions)[:, -1, :])

    def generate_stream(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                        top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
                        generator: torch.Generator | None = None, vocab_limit: int | None = None,
                        compile: bool = False) -> Iterator[torch.Tensor]:
        """Yield max_new_tokens new tokens (B, 1) one at a time, picked by `sample_next`; generation may run past
        block_size (`Decoder` has the context policy, use_cache and compile)."""
        check_ids(idx, within=self)
        if not whole(max_new_tokens) or max_new_tokens < 0:
            raise ModelError(f"max_new_tokens={max_new_tokens!r} must be an integer, 0 or more")
        check_sampling(self.config.vocab_size, temperature, top_k, top_p, vocab_limit)  # before the prefill's work
        max_new_tokens = int(max_new_tokens)
        # inference_mode, lighter than no_grad, is never held across a yield: the caller's code runs in its own mode
        with torch.inference_mode():
            decoder = Decoder(self, idx, use_cache, max_new_tokens, compile)  # prefill
        for step in range(max_new_tokens):
            with torch.inference_mode():
                if step:  # decode the last token only once the next is wanted: none for logits nobody will read
                    decoder.push(next_id)  # one new token through the cache
                next_id = sample_next(decoder.logits, temperature, top_k, top_p, generator, vocab_limit)  # (B, 1)
            yield next_id.clone()  # a plain tensor again, usable anywhere

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None,
                 vocab_limit: int | None = None, compile: bool = False) -> torch.Tensor:
        """idx (B, T) continued by max_new_tokens tokens, (B, T + max_new_tokens); the options as generate_stream's."""
        new = self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator, vocab_limit,
                                   compile)
        return torch.cat([idx, *new], dim=1)

    @classmethod
    def from_pretrained(cls, name_or_dir: str) -> "GPT":
        """OpenAI's GPT-2 (gpt2, gpt2-medium, gpt2-large, gpt2-xl), or a local Hugging Face GPT-2, Llama or Qwen3."""
        from .pretrained import load_pretrained

        return load_pretrained(cls, name_or_dir)
