"""Loading OpenAI's GPT-2 from the hub (gpt2 ... gpt2-xl), or a local folder of a Hugging Face GPT-2, Llama or Qwen3
model (model/hf.py maps it), into this project's GPT."""

import json
import pickle
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import torch

from .config import GPTConfig, ModelError
from .hf import ARCHITECTURES, gpt_config_from_hf, gpt_state_from_hf

HUB_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


class PretrainedNotFound(ModelError):
    """The weights are neither in a local directory nor in the Hugging Face cache."""


def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """Whether the hub's host accepts a connection: offline, the hub client retries for ~25 s before failing."""
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


def _quiet_transformers():
    try:
        import transformers
        from huggingface_hub.utils import logging as hub_logging
    except ImportError as e:
        raise PretrainedNotFound("loading Hugging Face models needs transformers: pip install transformers") from e
    transformers.utils.logging.disable_progress_bar()  # our tools report their own progress
    transformers.utils.logging.set_verbosity_error()
    hub_logging.set_verbosity_error()  # no retry chatter: the one error below says what to do
    return transformers


def folder_config(folder: Path):
    """The transformers config of a model folder, whose model type is checked first (transformers' error is long)."""
    path = folder / "config.json"
    if not path.is_file():
        run = sorted(p.name for p in folder.glob("*.*")  # a training run's folder: its checkpoints
                     if p.stem in ("ckpt", "best") and p.suffix in (".pt", ".safetensors"))
        hint = (f"; it holds {run[0]}, so it is a smallgpt run: give it as --out_dir instead (train.py continues "
                f"it with --init_from=resume), or make a model folder of it with export.py" if run else "")
        raise ModelError(f"{folder} has no config.json, so it is not a Hugging Face model folder; "
                         f"give one written by save_pretrained (config.json and model.safetensors){hint}")
    try:
        model_type = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as e:
        raise ModelError(f"{path} is not a JSON object ({e}); give a folder written by save_pretrained") from None
    if model_type not in ARCHITECTURES:
        raise ModelError(f"{folder}: model_type {model_type!r} is not supported; smallgpt reads "
                         f"{', '.join(ARCHITECTURES)} models ({', '.join(ARCHITECTURES.values())})")
    from huggingface_hub.errors import StrictDataclassError

    try:
        return _quiet_transformers().AutoConfig.from_pretrained(folder)
    except (StrictDataclassError, ValueError, TypeError) as e:  # a field of the wrong type or value
        raise ModelError(f"{path} does not describe a {model_type} model ({' '.join(str(e).split())[:200]}); fix it "
                         f"or save the model again with save_pretrained") from None


def _hf_model(name_or_dir: str) -> tuple[torch.nn.Module, GPTConfig]:
    """The transformers model and the GPTConfig it maps to; a folder's config is checked first, and a hub name is
    looked for in the local cache first, so a machine without internet never waits."""
    if Path(name_or_dir).is_dir():
        hf_config = folder_config(Path(name_or_dir))
        config = gpt_config_from_hf(hf_config)  # refuses what smallgpt does not compute, before the weights
        from safetensors import SafetensorError

        try:
            return _checked_load(name_or_dir, config=hf_config, local_files_only=True), config
        except (SafetensorError, OSError, RuntimeError, pickle.UnpicklingError) as e:  # missing, cut short, damaged
            # but not a path this user may not read (run_cli names it), nor a RuntimeError but torch.load's zip reader's
            if isinstance(e, PermissionError) or isinstance(e, RuntimeError) and "PytorchStreamReader" not in str(e):
                raise
            which = ""
            if isinstance(e, SafetensorError):  # one file, or shards: model-00001-of-000NN.safetensors, ...
                one = Path(name_or_dir, "model.safetensors").is_file()
                which = "(model.safetensors) " if one else "(its .safetensors shards) "
            raise ModelError(f"{name_or_dir}: its weights {which}cannot be read ({' '.join(str(e).split())[:150]}); "
                             f"copy or save the folder again") from None
    if name_or_dir not in HUB_NAMES:
        raise PretrainedNotFound(f"'{name_or_dir}' is not a GPT-2 model name ({', '.join(HUB_NAMES)}) nor a folder "
                                 f"holding a Hugging Face GPT-2, Llama or Qwen3 model (config.json and "
                                 f"model.safetensors or pytorch_model.bin)")
    from huggingface_hub import constants as hub

    for local_files_only in (True, False):  # the hub only where the local cache lacks it and the hub can be reached
        try:
            hf = _checked_load(name_or_dir, local_files_only=local_files_only)
            return hf, gpt_config_from_hf(hf.config)
        except OSError:
            if not local_files_only or hub.HF_HUB_OFFLINE or not hub_reachable(hub.ENDPOINT):
                raise PretrainedNotFound(
                    f"GPT-2 weights '{name_or_dir}' are not in the local Hugging Face cache and the hub cannot be "
                    f"reached; on a machine with internet run `python -c \"from transformers import GPT2LMHeadModel as "
                    f"M; M.from_pretrained('{name_or_dir}').save_pretrained('{name_or_dir}-hf')\"`, copy the folder "
                    f"here and give its path where you gave '{name_or_dir}': /path/to/{name_or_dir}-hf") from None


def _checked_load(name_or_dir: str, **kwargs) -> torch.nn.Module:
    """transformers' model, refused where a weight is missing, has no place in it or another shape than config.json
    gives: transformers would start it at random or drop it, with a warning that _quiet_transformers silences."""
    hf, found = _quiet_transformers().AutoModelForCausalLM.from_pretrained(
        name_or_dir, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    different = "the config and the weights are of different models; save the folder again"
    for names, problem in ((found["missing_keys"], "is missing from its weights file; copy or save the folder again"),
                           (found["unexpected_keys"], f"has no place in the model config.json describes: {different}")):
        if names := sorted(names):  # an unexpected one transformers drops: the model would compute otherwise
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            raise ModelError(f"{name_or_dir}: weight {names[0]}{more} {problem}")
    if mismatched := sorted(found["mismatched_keys"]):
        name, stored, wanted = mismatched[0]
        raise ModelError(f"{name_or_dir}: weight {name} has shape {tuple(stored)}, but config.json makes it "
                         f"{tuple(wanted)}: {different}")
    return hf


def load_pretrained(gpt_cls, name_or_dir: str):
    """Build gpt_cls with the weights of the Hugging Face model at name_or_dir."""
    hf, config = _hf_model(name_or_dir)
    model = gpt_cls(config)
    theirs = gpt_state_from_hf(hf.state_dict(), hf.config.model_type)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in theirs:
                raise PretrainedNotFound(f"{name_or_dir}: weight {name} is missing from the checkpoint")
            if theirs[name].shape != tensor.shape:
                raise PretrainedNotFound(f"{name_or_dir}: {name} has shape {tuple(theirs[name].shape)}, "
                                         f"expected {tuple(tensor.shape)}")
            tensor.copy_(theirs[name])
    return model
