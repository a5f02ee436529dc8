"""The network's options with their defaults (Llama's and Qwen3's shape) and help for train.py's keys; GPTConfig."""
import math
import typing
from dataclasses import dataclass, field, fields


class ModelError(ValueError):
    """A model shape, checkpoint or pretrained folder that cannot be used as given: model/'s one exception type.
    Its message says what to change, and the command line shows it as one line."""


KIND_WORDS = {int: "an integer", float: "a number", bool: "True or False", str: "a string", type(None): "None"}
WEIGHTS = ("float32", "bfloat16", "int8")  # what a model's weights may be made for decoding (model/weights.py)

GPT2_SHAPE = dict(pos_emb="learned", norm="layernorm", qk_norm=False, mlp="gelu", tie_embeddings=True, bias=True)


def flag_value(value: object) -> str:
    """A config value as a --key=value flag writes it: true, false, none, or the value."""
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def counted(n: int, noun: str, plural: str = "") -> str:
    """1 layer, 4 layers, 1,024 tokens; the plural when not noun + s."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def shape_words(n_layer: int, n_head: int, n_embd: int, block_size: int) -> str:
    """A model's shape as the commands print it: 4 layers, 4 heads, 128 wide, context 128."""
    return f"{counted(n_layer, 'layer')}, {counted(n_head, 'head')}, {n_embd:,} wide, context {block_size:,}"


def _option(default, help: str, choices: tuple = ()):
    """A field with the one line of help and the choices that the command line shows."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class ModelOptions:
    """Every option of the network's shape, with the default run's values."""

    n_layer: int = _option(4, "number of transformer blocks")
    n_head: int = _option(4, "attention (query) heads per block")
    n_embd: int = _option(128, "embedding width (divisible by n_head)")
    block_size: int = _option(128, "context length in tokens: learned positions cover it, RoPE attends over "
                                   "the last block_size")
    dropout: float = _option(0.0, "dropout probability (0 for short runs)")
    bias: bool = _option(False, "biases in Linear layers and LayerNorms (GPT-2: true)")
    pos_emb: str = _option("rope", "rope (rotary: turns queries and keys, rotate-half as in Llama) or learned "
                                   "(GPT-2's position embedding)", ("rope", "learned"))
    rope_theta: float = _option(10000.0, "RoPE's base: the slowest pair turns once in about 2 pi theta positions")
    norm: str = _option("rmsnorm", "rmsnorm (with a weight, as in Llama) or layernorm (GPT-2)",
                        ("rmsnorm", "layernorm"))
    norm_eps: float = _option(1e-5, "the norms' epsilon")
    qk_norm: bool = _option(True, "an RMSNorm on each head's queries and keys before the dot product (Qwen3)")
    mlp: str = _option("swiglu", "swiglu (gate and up projections, then down) or gelu (GPT-2)", ("swiglu", "gelu"))
    mlp_hidden: int | None = _option(None, "MLP width (none: 4 n_embd for gelu, 8/3 n_embd rounded up to 64 for "
                                           "swiglu)")
    n_kv_head: int | None = _option(None, "key/value heads, each shared by n_head // n_kv_head query heads "
                                          "(none: n_head; 1: multi-query)")
    head_size: int | None = _option(None, "width of one head (none: n_embd // n_head)")
    tie_embeddings: bool = _option(False, "the output head is the token embedding (GPT-2)")


@dataclass
class GPTConfig(ModelOptions):
    """The network's shape: ModelOptions and a vocabulary (GPT-2's BPE by default)."""

    vocab_size: int = 50257

    def __post_init__(self) -> None:
        for f in fields(self):  # a notebook's GPTConfig(qk_norm="false") would be true, n_embd=32.0 fail deep in torch
            value, kinds = getattr(self, f.name), typing.get_args(f.type) or (f.type,)  # int | None: (int, NoneType)
            if not (type(value) in kinds or type(value) is int and float in kinds):  # an int is a float, no bool an int
                wanted = " or ".join(KIND_WORDS[kind] for kind in kinds)
                raise ModelError(f"{f.name}={value!r} must be {wanted}")
        sizes = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "mlp_hidden", "n_kv_head", "head_size")
        for name in sizes:  # the last three may be none: derived below
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ModelError(f"{name}={getattr(self, name)} must be a positive integer")
        for name in ("rope_theta", "norm_eps"):
            if not 0 < getattr(self, name) < math.inf:
                raise ModelError(f"{name}={getattr(self, name)} must be a positive number")
        for f in fields(self):
            if f.metadata.get("choices") and getattr(self, f.name) not in f.metadata["choices"]:
                raise ModelError(f"{f.name}={getattr(self, f.name)!r} is not one of {', '.join(f.metadata['choices'])}")
        rope, derived = self.pos_emb == "rope", self.head_size is None
        step = self.n_head * (2 if rope else 1)  # widths whose heads RoPE can turn (even, below)
        width = step * max(1, round(self.n_embd / step))
        fix = f"try n_embd={width}" if derived else f"try head_size={self.head_size + 1}"
        if derived:
            if self.n_embd % self.n_head != 0:
                raise ModelError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}; {fix}")
            self.head_size = self.n_embd // self.n_head
        self.n_kv_head = self.n_head if self.n_kv_head is None else self.n_kv_head
        if self.n_head % self.n_kv_head != 0:
            raise ModelError(f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} (1 is multi-query "
                             f"attention)")
        if rope and self.head_size % 2:
            raise ModelError(f"RoPE turns pairs of numbers: head_size={self.head_size} must be even; {fix}")
        if self.mlp_hidden is None:  # SwiGLU's three matrices of 8/3 n_embd hold about what GELU's two of 4 n_embd do
            self.mlp_hidden = 4 * self.n_embd if self.mlp == "gelu" else 64 * math.ceil(8 * self.n_embd / 3 / 64)
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"dropout={self.dropout} must be in [0, 1)")
