"""Loading OpenAI's GPT-2 weights through Hugging Face transformers."""
from __future__ import annotations

import socket
import urllib.parse
import urllib.request
from pathlib import Path

import torch

from .config import GPTConfig
from .errors import ModelError

HUB_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
# Hugging Face stores these as Conv1D weights (in, out); nn.Linear wants (out, in).
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
GPT2_RENAMES = {"ln_1.": "norm_1.", "ln_2.": "norm_2.", "ln_f.": "norm_f.", "attn.c_proj.": "attn.o_proj.",
                "mlp.c_fc.": "mlp.up_proj.", "mlp.c_proj.": "mlp.down_proj."}


class PretrainedNotFound(ModelError):
    """The weights are neither in a local directory nor in the Hugging Face cache."""


def how_to_get(name_or_dir: str) -> str:
    if name_or_dir in HUB_NAMES:
        return (
            f"GPT-2 weights '{name_or_dir}' are not in the local Hugging Face cache and the hub "
            f"cannot be reached; on a machine with internet run `python -c \"from transformers import "
            f"GPT2LMHeadModel as M; M.from_pretrained('{name_or_dir}').save_pretrained('{name_or_dir}-hf')\"`, "
            f"copy the folder here and pass init_from=/path/to/{name_or_dir}-hf"
        )
    return (
        f"'{name_or_dir}' is not a GPT-2 model name ({', '.join(HUB_NAMES)}) nor a folder holding "
        f"a Hugging Face GPT-2 (config.json and model.safetensors or pytorch_model.bin)"
    )


def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """Whether the hub's host accepts a connection. Without this, a machine with no
    internet waits through the hub client's ~25 s of retries before the same error."""
    proxies = urllib.request.getproxies()
    if proxies.get("https") or proxies.get("all"):
        return True  # only the hub client knows how to go through the proxy: let it try
    url = urllib.parse.urlsplit(endpoint)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _load_hf_model(name_or_dir: str):
    try:
        import transformers
        from huggingface_hub import constants as hub
        from huggingface_hub.utils import logging as hub_logging
        from transformers import GPT2LMHeadModel
    except ImportError as e:
        raise PretrainedNotFound("loading GPT-2 weights needs transformers: pip install transformers") from e
    transformers.utils.logging.disable_progress_bar()  # our tools report their own progress
    transformers.utils.logging.set_verbosity_error()
    hub_logging.set_verbosity_error()  # no retry chatter: the one error below says what to do
    is_dir = Path(name_or_dir).is_dir()
    if not is_dir and name_or_dir not in HUB_NAMES:
        raise PretrainedNotFound(how_to_get(name_or_dir))
    try:  # the local cache first, so a machine without internet never waits on the hub
        return GPT2LMHeadModel.from_pretrained(name_or_dir, local_files_only=True)
    except OSError:
        if is_dir or hub.HF_HUB_OFFLINE or not hub_reachable(hub.ENDPOINT):
            raise PretrainedNotFound(how_to_get(name_or_dir)) from None
    try:
        return GPT2LMHeadModel.from_pretrained(name_or_dir)
    except OSError:
        raise PretrainedNotFound(how_to_get(name_or_dir)) from None


def gpt_config_from_hf(hf_config) -> GPTConfig:
    if hf_config.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        raise PretrainedNotFound(f"unsupported activation {hf_config.activation_function!r}; GPT-2 uses gelu_new")
    return GPTConfig(
        block_size=hf_config.n_positions,
        vocab_size=hf_config.vocab_size,
        n_layer=hf_config.n_layer,
        n_head=hf_config.n_head,
        n_embd=hf_config.n_embd,
        dropout=0.0,
        bias=True,
    )


def from_gpt2_names(state: dict[str, torch.Tensor], conv1d: bool) -> dict[str, torch.Tensor]:
    """A state dict with GPT-2's names (Hugging Face's, or this project's before q, k and v were
    separate matrices) in this model's names: c_attn split into q_proj, k_proj and v_proj, and
    Conv1D weights (in, out) turned into nn.Linear's (out, in) when `conv1d`."""
    ours = {}
    for name, tensor in state.items():
        if conv1d and name.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t()
        if ".attn.c_attn." in name:  # (3C, ...): the query, key and value rows stacked
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                ours[name.replace("c_attn", part)] = chunk.contiguous()
            continue
        for old, new in GPT2_RENAMES.items():
            name = name.replace(old, new)
        ours[name] = tensor
    return ours


def load_pretrained(gpt_cls, name_or_dir: str):
    """Build gpt_cls with the GPT-2 weights found at name_or_dir."""
    hf = _load_hf_model(name_or_dir)
    model = gpt_cls(gpt_config_from_hf(hf.config))
    theirs = from_gpt2_names(hf.state_dict(), conv1d=True)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in theirs:
                raise PretrainedNotFound(f"{name_or_dir}: weight {name} is missing from the checkpoint")
            if theirs[name].shape != tensor.shape:
                raise PretrainedNotFound(f"{name_or_dir}: {name} has shape {tuple(theirs[name].shape)}, "
                                         f"expected {tuple(tensor.shape)}")
            tensor.copy_(theirs[name])
    return model
