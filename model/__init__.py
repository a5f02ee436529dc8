"""The network and everything that only needs the network."""
from .config import WEIGHTS, GPTConfig, ModelError

__all__ = ["GPT", "GPTConfig", "ModelError", "WEIGHTS"]


def __getattr__(name: str):
    """GPT, imported when first asked for: it loads torch, which the model's options do not need (every command
    reads them, data/prepare.py too, which never runs a model)."""
    if name == "GPT":
        from .gpt import GPT

        return GPT
    raise AttributeError(f"module 'model' has no attribute {name!r}")
