"""The network and everything that only needs the network."""
from typing import TYPE_CHECKING

from .config import WEIGHTS, GPTConfig, ModelError

if TYPE_CHECKING:
    from .gpt import GPT

__all__ = ["GPT", "GPTConfig", "ModelError", "WEIGHTS"]


def __getattr__(name: str):
    """GPT, imported when first asked for: it loads torch, which the options (read by every command) do not need."""
    if name == "GPT":
        from .gpt import GPT

        return GPT
    raise AttributeError(f"module 'model' has no attribute {name!r}")
