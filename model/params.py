"""Where the parameters go (`python params.py CONFIG.toml`), counted on PyTorch's meta device: real shapes, no
storage, so even GPT-3's 175 billion cost no memory."""

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from .attention import CausalSelfAttention
from .config import GPTConfig, ModelError
from .gpt import GPT, Block


@dataclass(frozen=True)
class Row:
    """One line of the report. `key` is stable for code; `label` is for people."""

    key: str
    label: str
    depth: int
    count: int | None = None  # None for a section heading
    shape: str = ""  # as PyTorch stores the tensor, (out x in) for a matrix; "" for a sum


def one_block_model(config: GPTConfig) -> GPT:
    """The model with one of config's blocks, real parameter shapes and no storage: the blocks are alike, so a model
    of any depth is counted from it at once."""
    try:
        with torch.device("meta"):
            return GPT(replace(config, n_layer=1))
    except (RuntimeError, TypeError) as e:  # a tensor of over 2**63 bytes: torch's message names no setting
        if "overflow" not in str(e).lower():
            raise
        sizes = ", ".join(f"{key}={getattr(config, key):,}" for key in ("n_embd", "n_head", "head_size", "mlp_hidden",
                                                                          "vocab_size", "block_size"))
        raise ModelError(f"a model of this shape ({sizes}) holds a tensor too large for any machine; choose a smaller "
                         f"shape") from None


def counted_parameters(config: GPTConfig) -> list[tuple[str, nn.Parameter, int]]:
    """Each parameter of one_block_model with how many times a model of config holds it: (name, tensor, times)."""
    return [(name, p, config.n_layer if name.startswith("transformer.h.") else 1)
            for name, p in one_block_model(config).named_parameters()]  # a tied head: once, as the token embedding


def _numel(*modules: nn.Module) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def _param(key: str, label: str, t: torch.Tensor, depth: int) -> Row:
    return Row(key, label, depth, t.numel(), " x ".join(str(n) for n in t.shape))


def _biases(key: str, label: str, module: nn.Module) -> list[Row]:
    count = sum(bias.numel() for name, bias in module.named_parameters() if name.endswith("bias"))
    return [Row(key, label, 2, count)] if count else []


def attention_rows(attn: CausalSelfAttention) -> list[Row]:
    """Query, key, value and output matrices, one head's and all heads', QK-norm, biases and the sum.
    A Linear weight's rows are its outputs: one head's part of W_Q is head_size rows of it."""
    hs, nh, nkv = attn.head_size, attn.n_head, attn.n_kv_head
    shared = f", {'each ' * (nkv > 1)}shared by {nh // nkv} query heads" if nkv < nh else ""
    rows = []
    for name, symbol, w, heads in (("query", "W_Q", attn.q_proj.weight, nh), ("key", "W_K", attn.k_proj.weight, nkv),
                                   ("value", "W_V", attn.v_proj.weight, nkv)):
        rows.append(_param(f"attn.{name}.head", f"{name} {symbol}, one head", w[:hs], 2))  # (hs, C)
        every = f"all {heads} heads" if heads > 1 else "its 1 head"
        rows.append(_param(f"attn.{name}", f"{name} {symbol}, {every}{'' if name == 'query' else shared}",
                           w, 2))  # (heads * hs, C)
    out = attn.o_proj.weight  # (C, nh * hs): its columns take the concatenated heads
    rows.append(_param("attn.output.head", "output W_O, one head", out[:, :hs], 2))  # (C, hs)
    rows.append(_param("attn.output", f"output W_O, all {nh} heads", out, 2))
    if attn.q_norm is not None:
        norms = _numel(attn.q_norm, attn.k_norm)
        rows.append(Row("attn.qk_norm", "QK-norm weights (queries, keys; shared by all heads)", 2, norms))
    return [*rows, *_biases("attn.biases", "biases (query, key, value, output)", attn),
            Row("attn", "attention in this block", 2, _numel(attn))]


def block_rows(block: Block) -> list[Row]:
    """One block: attention in detail, the MLP, the two norms, the block's sum."""
    mlp = block.mlp
    rows = [Row("attn.heading", "attention", 1), *attention_rows(block.attn)]
    rows.append(Row("mlp.heading", "MLP (SwiGLU)" if mlp.gate_proj is not None else "MLP (GELU)", 1))
    for name, role in (("gate_proj", "the gate"), ("up_proj", "widen"), ("down_proj", "back to n_embd")):
        if getattr(mlp, name) is not None:  # GELU's MLP has no gate
            rows.append(_param(f"mlp.{name}", f"{name} ({role})", getattr(mlp, name).weight, 2))
    return [*rows, *_biases("mlp.biases", "biases", mlp), Row("mlp", "MLP in this block", 2, _numel(mlp)),
            Row("norms", "norms norm_1, norm_2", 1, _numel(block.norm_1, block.norm_2)),
            Row("block", "one block", 1, _numel(block))]


def report_rows(c: GPTConfig) -> list[Row]:
    """Every parameter of a model of config c, grouped: embeddings, one block in detail, all blocks, head, total."""
    model = one_block_model(c)
    tf = model.transformer
    tied = model.lm_head.weight is tf.wte.weight
    rows = [Row("embeddings.heading", "embeddings", 0),
            _param("wte", "token embedding wte" + (" (= lm_head, tied)" if tied else ""), tf.wte.weight, 1)]
    rows.append(_param("wpe", "position embedding wpe", tf.wpe.weight, 1) if "wpe" in tf
                else Row("wpe", "positions: RoPE turns queries and keys, no weights", 1, 0))
    rows.append(Row("block.heading", f"each of the {c.n_layer} blocks", 0))
    rows += [replace(r, key=f"block.{r.key}") for r in block_rows(tf.h[0])]
    rows.append(Row("blocks.heading", f"all {c.n_layer} blocks", 0))
    for part, label, names in (("attn", "attention", ("attn",)), ("mlp", "MLP", ("mlp",)),
                               ("norms", "norms", ("norm_1", "norm_2"))):
        rows.append(Row(f"blocks.{part}", label, 1, c.n_layer * _numel(*(getattr(tf.h[0], n) for n in names))))
    rows.append(Row("blocks", "all blocks", 1, c.n_layer * _numel(tf.h[0])))
    rows.append(Row("norm_f", f"final norm norm_f ({c.norm})", 0, _numel(tf.norm_f)))
    head = _param("lm_head", "lm_head" + (" (tied to wte: no new parameters)" if tied else ""), model.lm_head.weight, 0)
    rows.append(replace(head, count=0) if tied else head)
    total = model.num_params() + (c.n_layer - 1) * _numel(tf.h[0])  # the one block counted n_layer times
    assert total == sum(r.count for r in rows if r.key in ("wte", "wpe", "blocks", "norm_f", "lm_head"))
    rows.append(Row("total", "total", 0, total))
    return rows


def training_flops_per_token(c: GPTConfig, seq_len: int) -> int:
    """Training FLOPs (forward and backward) per token at context seq_len: 6N for the weights' matmuls plus
    12 * n_layer * (n_head * head_size) * seq_len for attention (PaLM appendix B, as nanoGPT's MFU estimate). N counts
    every parameter once but the lookups: the position embedding, and the token embedding unless it is the head."""
    lookups = ("transformer.wpe.weight",) + (() if c.tie_embeddings else ("transformer.wte.weight",))
    n = sum(p.numel() * times for name, p, times in counted_parameters(c) if name not in lookups)
    return 6 * n + 12 * c.n_layer * c.n_head * c.head_size * seq_len


def format_report(rows: list[Row], flops: int, seq_len: int) -> str:
    """The rows as an indented table: label, shape, count, share of the total."""
    total = next(r.count for r in rows if r.key == "total")
    width = max(2 * r.depth + len(r.label) for r in rows) + 2
    lines = [f"{'part':<{width}}{'shape':>16}{'parameters':>20}{'share':>9}"]
    for r in rows:
        line = f"{'  ' * r.depth}{r.label}"  # a heading (count None) is its label alone
        lines.append(line if r.count is None else f"{line:<{width}}{r.shape:>16}{r.count:>20,}{r.count / total:>9.2%}")
    lines.append(f"\ntraining FLOPs per token (6N + 12 * n_layer * n_head * head_size * T, T={seq_len}): "
                 f"{flops:,} ({flops:.3g})")
    return "\n".join(lines)
