"""The network and everything that only needs the network."""
from .config import GPTConfig, ModelError
from .gpt import GPT

__all__ = ["GPT", "GPTConfig", "ModelError"]
