"""Decoding with lower-precision weights, made from the float32 model at sample time (the
checkpoint stays float32): bfloat16, or int8 weight-only through torchao, whose every nn.Linear
holds int8 weights with one float scale per output row and computes in the activations' dtype.
One decoded token reads every weight once, so fewer bytes per weight is fewer bytes to stream."""

import logging
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .gpt import GPT

WEIGHTS = ("float32", "bfloat16", "int8")


def quiet_torchao() -> None:
    """torchao (imported by transformers too) logs at import that its CUDA kernels do not load on a CPU,
    and torch logs a deprecation it triggers: neither is the user's business."""
    for noisy in ("torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def with_weights(model: "GPT", weights: str) -> "GPT":
    """model with its weights in `weights` (one of WEIGHTS), changed in place."""
    if weights == "bfloat16":
        model.to(torch.bfloat16)
        for block in model.transformer.h:  # QK-norm computes in float32 (model/attention.py), so its scales stay
            for norm in (block.attn.q_norm, block.attn.k_norm):  # float32, for torch's fused RMSNorm kernel
                if norm is not None:
                    norm.float()
        return model
    if weights == "int8":
        quiet_torchao()
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(model, Int8WeightOnlyConfig())
    return model
