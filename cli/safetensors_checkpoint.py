"""Checkpoints as safetensors files, for people who share weights with no pickle at all.

Every tensor of the checkpoint (the model's weights, the optimizers' moments, the random
states) goes into the file's tensor table under its path in the checkpoint ("model.lm_head.weight",
"optimizer.adamw.state.0.exp_avg"); the rest (config, model_args, tokenizer, counters, the
loader's position, the optimizers' param groups) is one JSON document in the file's metadata,
with a {"$tensor": name} where each tensor stood. A tensor that shares its memory with an
earlier one (a tied head) is stored once.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

METADATA_KEY = "smallgpt_checkpoint"
TENSOR, ITEMS, TUPLE = "$tensor", "$items", "$tuple"  # markers of what JSON has no word for


def _pack(value, path: str, tensors: dict[str, torch.Tensor], stored: dict[tuple, str]):
    if isinstance(value, torch.Tensor):
        memory = (value.device, value.data_ptr(), value.dtype, value.shape, value.stride())
        if value.numel() and memory in stored:
            return {TENSOR: stored[memory]}
        tensors[path] = value.detach().contiguous()
        stored[memory] = path
        return {TENSOR: path}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _pack(item, f"{path}.{key}", tensors, stored) for key, item in value.items()}
        return {ITEMS: [[key, _pack(item, f"{path}.{key}", tensors, stored)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_pack(item, f"{path}.{i}", tensors, stored) for i, item in enumerate(value)]
        return {TUPLE: items} if isinstance(value, tuple) else items
    return value  # str, int, float (inf and nan included), bool, None


def _unpack(value, tensors: dict[str, torch.Tensor]):
    if isinstance(value, list):
        return [_unpack(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if TENSOR in value:
        return tensors[value[TENSOR]]
    if ITEMS in value:
        return {key: _unpack(item, tensors) for key, item in value[ITEMS]}
    if TUPLE in value:
        return tuple(_unpack(item, tensors) for item in value[TUPLE])
    return {key: _unpack(item, tensors) for key, item in value.items()}


def to_safetensors(checkpoint: dict) -> bytes:
    """The checkpoint as the bytes of a safetensors file."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    skeleton = {key: _pack(value, key, tensors, {}) for key, value in checkpoint.items()}
    return save(tensors, metadata={"format": "pt", METADATA_KEY: json.dumps(skeleton)})


def from_safetensors(path: Path, device: str | torch.device = "cpu") -> dict | None:
    """The checkpoint in a safetensors file, or None for a safetensors file that holds no checkpoint
    (an exported model.safetensors). A damaged file raises ValueError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            skeleton = (f.metadata() or {}).get(METADATA_KEY)
            if skeleton is None:
                return None
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        return _unpack(json.loads(skeleton), tensors)
    except (SafetensorError, KeyError) as e:
        raise ValueError(f"not a whole safetensors file: {e}") from None
