"""Decoding with lower-precision weights, made from the float32 model at sample time (the
checkpoint stays float32): bfloat16, or int8 weight-only through torchao, whose every nn.Linear
holds int8 weights with one float scale per output row and computes in the activations' dtype.
One decoded token reads every weight once, so fewer bytes per weight is fewer bytes to stream."""
from __future__ import annotations

import logging

import torch

from .gpt import GPT

WEIGHTS = ("float32", "bfloat16", "int8")


def with_weights(model: GPT, weights: str) -> GPT:
    """model with its weights in `weights` (one of WEIGHTS), changed in place."""
    if weights == "bfloat16":
        return model.to(torch.bfloat16)
    if weights == "int8":
        for noisy in ("torchao", "torch.utils._pytree"):  # CUDA kernels that fail to load on a CPU; a deprecation
            logging.getLogger(noisy).setLevel(logging.ERROR)
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(model, Int8WeightOnlyConfig())
    return model
