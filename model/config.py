"""The shape of the network: one dataclass, checked when it is made.

Two shapes share one set of options. The defaults are GPT-2's (learned
positions, LayerNorm, GELU, a tied head), so a description without the newer
options (an older checkpoint) is still GPT-2. The modern shape, the math of
Llama and Qwen3 models: pos_emb="rope", norm="rmsnorm", mlp="swiglu",
qk_norm=True (Qwen3), n_kv_head < n_head (grouped-query attention),
tie_embeddings=False.
"""
import math
from dataclasses import asdict, dataclass

from .errors import ModelError

CHOICES = {"pos_emb": ("learned", "rope"), "norm": ("layernorm", "rmsnorm"), "mlp": ("gelu", "swiglu")}


def swiglu_hidden(n_embd: int) -> int:
    """SwiGLU's hidden width: 8/3 n_embd rounded up to a multiple of 64, so its three
    matrices hold about as many weights as the GELU MLP's two of width 4 n_embd."""
    return 64 * math.ceil(8 * n_embd / 3 / 64)


@dataclass
class GPTConfig:
    """Hyperparameters that fix the network's shape (GPT-2 small by default)."""

    block_size: int = 1024  # longest context: learned positions cover it, RoPE attends over its last block_size
    vocab_size: int = 50257  # GPT-2's BPE vocabulary
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    pos_emb: str = "learned"  # "learned" (GPT-2) or "rope" (rotary, rotate-half as in Llama)
    rope_theta: float = 10000.0  # RoPE's base: the slowest pair turns once in about 2 pi theta positions
    norm: str = "layernorm"  # "layernorm" (GPT-2) or "rmsnorm" (with a weight, as in Llama)
    norm_eps: float = 1e-5
    qk_norm: bool = False  # an RMSNorm on each head's queries and keys before the dot product (Qwen3)
    mlp: str = "gelu"  # "gelu" (4 n_embd wide) or "swiglu" (gate and up projections, then down)
    mlp_hidden: int | None = None  # None: 4 n_embd for gelu, swiglu_hidden(n_embd) for swiglu
    n_kv_head: int | None = None  # key/value heads, each shared by n_head // n_kv_head query heads; None: n_head
    head_size: int | None = None  # None: n_embd // n_head
    tie_embeddings: bool = True  # the output head is the token embedding (GPT-2)

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise ModelError(f"{name}={getattr(self, name)} must be a positive integer")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ModelError(f"{name}={getattr(self, name)!r} is not one of {', '.join(choices)}")
        if self.head_size is None:
            if self.n_embd % self.n_head != 0:
                raise ModelError(
                    f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}; "
                    f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}"
                )
            self.head_size = self.n_embd // self.n_head
        self.n_kv_head = self.n_kv_head or self.n_head
        if self.n_kv_head <= 0 or self.n_head % self.n_kv_head != 0:
            raise ModelError(f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} (1 is multi-query attention)")
        if self.pos_emb == "rope" and self.head_size % 2:
            raise ModelError(f"RoPE turns pairs of numbers: head_size={self.head_size} must be even")
        self.mlp_hidden = self.mlp_hidden or (4 * self.n_embd if self.mlp == "gelu" else swiglu_hidden(self.n_embd))
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"dropout={self.dropout} must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)
