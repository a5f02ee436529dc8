"""Where the parameters go, read from a model that is never allocated
(`python params.py CONFIG.toml` prints the report).

The model is built on PyTorch's meta device: every parameter has its real
shape but no storage, so even GPT-3's 175 billion cost no memory. Each row of
the report is counted from those shapes; the query, key and value matrices are
slices of the fused c_attn weight, and one head's part is a slice of those.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from .attention import CausalSelfAttention
from .config import GPTConfig
from .gpt import GPT, Block


@dataclass(frozen=True)
class Row:
    """One line of the report. `key` is stable for code; `label` is for people."""

    key: str
    label: str
    shape: str  # as PyTorch stores the tensor, (out x in) for a matrix; "" for a sum
    count: int | None  # None for a section heading
    depth: int = 0


def meta_model(config: GPTConfig) -> GPT:
    """The model with real parameter shapes and no storage."""
    with torch.device("meta"):
        return GPT(config)


def _shape(t: torch.Tensor) -> str:
    return " x ".join(str(n) for n in t.shape)


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _param(key: str, label: str, t: torch.Tensor, depth: int) -> Row:
    return Row(key, label, _shape(t), t.numel(), depth)


def _biases(module: nn.Module) -> list[torch.Tensor]:
    return [m.bias for m in module.modules() if isinstance(m, (nn.Linear, nn.LayerNorm)) and m.bias is not None]


def attention_rows(attn: CausalSelfAttention) -> list[Row]:
    """Query, key, value and output matrices, one head's and all heads', then biases and the sum."""
    C, n_head = attn.n_embd, attn.n_head
    hs = C // n_head
    q, k, v = attn.c_attn.weight.split(C, dim=0)  # 3 x (C, C): rows of the fused projection
    rows = []
    for name, symbol, w in (("query", "W_Q", q), ("key", "W_K", k), ("value", "W_V", v)):
        rows.append(_param(f"attn.{name}.head", f"{name} {symbol}, one head", w[:hs], 2))  # (hs, C)
        rows.append(_param(f"attn.{name}", f"{name} {symbol}, all {n_head} heads", w, 2))  # (C, C)
    out = attn.c_proj.weight  # (C, C): its columns take the concatenated heads
    rows.append(_param("attn.output.head", "output W_O, one head", out[:, :hs], 2))  # (C, hs)
    rows.append(_param("attn.output", f"output W_O, all {n_head} heads", out, 2))
    biases = _biases(attn)
    if biases:
        rows.append(Row("attn.biases", "biases (query, key, value, output)", "", sum(b.numel() for b in biases), 2))
    rows.append(Row("attn", "attention in this block", "", _numel(attn), 2))
    return rows


def block_rows(block: Block) -> list[Row]:
    """One block: attention in detail, the MLP, the two norms, the block's sum."""
    mlp, mlp_biases = block.mlp, _biases(block.mlp)
    rows = [Row("attn.heading", "attention", "", None, 1), *attention_rows(block.attn)]
    rows.append(Row("mlp.heading", "MLP", "", None, 1))
    rows.append(_param("mlp.c_fc", "c_fc (widen 4x)", mlp.c_fc.weight, 2))
    rows.append(_param("mlp.c_proj", "c_proj (back to n_embd)", mlp.c_proj.weight, 2))
    if mlp_biases:
        rows.append(Row("mlp.biases", "biases", "", sum(b.numel() for b in mlp_biases), 2))
    rows.append(Row("mlp", "MLP in this block", "", _numel(mlp), 2))
    rows.append(Row("norms", "LayerNorms ln_1, ln_2", "", _numel(block.ln_1) + _numel(block.ln_2), 1))
    rows.append(Row("block", "one block", "", _numel(block), 1))
    return rows


def _sum_over_blocks(model: GPT, part: str) -> int:
    """Parameters of one part (attn, mlp, ln_1 + ln_2) summed over every block."""
    names = ("ln_1", "ln_2") if part == "norms" else (part,)
    return sum(_numel(getattr(block, name)) for block in model.transformer.h for name in names)


def report_rows(model: GPT) -> list[Row]:
    """Every parameter of `model`, grouped: embeddings, one block in detail, all blocks, head, total."""
    c, tf = model.config, model.transformer
    tied = model.lm_head.weight is tf.wte.weight
    rows = [
        Row("embeddings.heading", "embeddings", "", None, 0),
        _param("wte", "token embedding wte" + (" (= lm_head, tied)" if tied else ""), tf.wte.weight, 1),
        _param("wpe", "position embedding wpe", tf.wpe.weight, 1),
        Row("block.heading", f"each of the {c.n_layer} blocks", "", None, 0),
    ]
    rows += [replace(r, key=f"block.{r.key}") for r in block_rows(tf.h[0])]
    rows.append(Row("blocks.heading", f"all {c.n_layer} blocks", "", None, 0))
    for part, label in (("attn", "attention"), ("mlp", "MLP"), ("norms", "LayerNorms")):
        rows.append(Row(f"blocks.{part}", label, "", _sum_over_blocks(model, part), 1))
    rows.append(Row("blocks", "all blocks", "", _numel(tf.h), 1))
    rows.append(Row("ln_f", "final LayerNorm ln_f", "", _numel(tf.ln_f), 0))
    head = 0 if tied else model.lm_head.weight.numel()
    rows.append(Row("lm_head", "lm_head" + (" (tied to wte: no new parameters)" if tied else ""),
                    _shape(model.lm_head.weight), head, 0))
    total = model.num_params()
    assert total == tf.wte.weight.numel() + tf.wpe.weight.numel() + _numel(tf.h) + _numel(tf.ln_f) + head
    rows.append(Row("total", "total", "", total, 0))
    return rows


def flops_per_token(model: GPT, seq_len: int) -> int:
    """6N for the weights' forward and backward matmuls plus 12 * n_layer * n_embd * seq_len
    for attention's scores and weighted sums (PaLM appendix B, as nanoGPT's MFU estimate).
    N counts every parameter once except the position embedding, which is a lookup."""
    c = model.config
    n = model.num_params() - model.transformer.wpe.weight.numel()
    return 6 * n + 12 * c.n_layer * c.n_embd * seq_len


def parameter_report(config: GPTConfig) -> list[Row]:
    """Where every parameter of GPT(config) goes, without allocating it."""
    return report_rows(meta_model(config))


def training_flops_per_token(config: GPTConfig, seq_len: int) -> int:
    """Estimated FLOPs of one training step, forward and backward, per token of context seq_len."""
    return flops_per_token(meta_model(config), seq_len)


def format_report(rows: list[Row], flops: int, seq_len: int) -> str:
    """The rows as an indented table: label, shape, count, share of the total."""
    total = next(r.count for r in rows if r.key == "total")
    width = max(2 * r.depth + len(r.label) for r in rows) + 2
    lines = [f"{'part':<{width}}{'shape':>16}{'parameters':>20}{'share':>9}"]
    for r in rows:
        label = f"{'  ' * r.depth}{r.label}"
        if r.count is None:
            lines.append(label)
        else:
            lines.append(f"{label:<{width}}{r.shape:>16}{r.count:>20,}{r.count / total:>9.2%}")
    lines.append(f"\ntraining FLOPs per token (6N + 12 * n_layer * n_embd * T, T={seq_len}): {flops:,} ({flops:.3g})")
    return "\n".join(lines)
