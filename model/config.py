"""The shape of the network: one dataclass, checked when it is made."""
from dataclasses import asdict, dataclass

from .errors import ModelError


@dataclass
class GPTConfig:
    """Hyperparameters that fix the network's shape (GPT-2 small by default)."""

    block_size: int = 1024  # longest context the position embedding covers
    vocab_size: int = 50257  # GPT-2's BPE vocabulary
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise ModelError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.n_embd % self.n_head != 0:
            raise ModelError(
                f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}; "
                f"try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"dropout={self.dropout} must be in [0, 1)")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)
