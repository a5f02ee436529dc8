"""Decoding with bfloat16 or int8 weight-only weights, made from the float32 model at sample time: one decoded
token reads every weight once, so fewer bytes per weight is fewer bytes to stream."""

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import WEIGHTS, ModelError

if TYPE_CHECKING:
    from .gpt import GPT


class Int8Linear(nn.Module):
    """A Linear whose weight is stored as int8 rows times one scale per row (symmetric, per output channel)."""

    kernel_devices = ("cpu",)  # where aten has its int8 weight-only kernel (torch 2.13: not CUDA)

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()  # (out, in)
        scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,): each row's largest weight becomes +-127
        self.register_buffer("weight", torch.round(w / scales[:, None]).to(torch.int8))  # (out, in)
        self.register_buffer("scales", scales.to(linear.weight.dtype))
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        if x.device.type in self.kernel_devices:  # aten's kernel reads the int8 rows as they are
            y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.size(-1)), self.weight, self.scales)
            y = y.view(*x.shape[:-1], -1)
        else:  # elsewhere torch.compile fuses the conversion into the product
            y = F.linear(x, self.weight.to(x.dtype)) * self.scales
        return y if self.bias is None else y + self.bias


def with_weights(model: "GPT", weights: str) -> "GPT":
    """model, float32, with its weights in `weights` (one of WEIGHTS), changed in place."""
    if weights not in WEIGHTS:
        raise ModelError(f"weights={weights!r} is not one of {', '.join(WEIGHTS)}")
    if (dtype := model.transformer.wte.weight.dtype) != torch.float32:
        raise ModelError(f"with_weights makes a float32 model's weights {weights}; this model's are {dtype} already: "
                         f"load it again")
    if weights in ("bfloat16", "int8"):
        model.to(torch.bfloat16)
        for name, module in model.named_modules():  # QK-norm computes in float32 (model/attention.py), so its
            if name.endswith(("attn.q_norm", "attn.k_norm")):  # scales stay float32, for torch's fused RMSNorm kernel
                module.float()
    if weights == "int8":  # in bfloat16 activations: aten's int8 kernel in float32 is slower than float32 weights
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.Linear):
                model.set_submodule(name, Int8Linear(module))
    return model
