"""Hugging Face's GPT-2, Llama and Qwen3 models and this project's GPT, both ways: config fields and weight names.

The math is the same on both sides, so weights map over by renaming (GPT-2's Conv1D weights also transposed, its fused
query/key/value split or joined); an option that one side lacks is refused by name."""

from pathlib import Path

import torch

from .config import GPT2_SHAPE, GPTConfig, ModelError, flag_value

ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}

# (Hugging Face's piece of a weight's name, this project's piece): applied with str.replace, either way
GPT2_RENAMES = (("ln_1.", "norm_1."), ("ln_2.", "norm_2."), ("ln_f.", "norm_f."), ("attn.c_proj.", "attn.o_proj."),
                ("mlp.c_fc.", "mlp.up_proj."), ("mlp.c_proj.", "mlp.down_proj."))
LLAMA_RENAMES = (("model.embed_tokens.", "transformer.wte."), ("model.layers.", "transformer.h."),
                 ("model.norm.", "transformer.norm_f."), ("input_layernorm.", "norm_1."),
                 ("post_attention_layernorm.", "norm_2."), ("self_attn.", "attn."))
RENAMES = {"gpt2": GPT2_RENAMES, "llama": LLAMA_RENAMES, "qwen3": LLAMA_RENAMES}
# GPT-2 stores these as Conv1D weights (in, out); nn.Linear holds (out, in)
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
QKV = ("q_proj", "k_proj", "v_proj")
# (transformers' config field: this project's GPTConfig field), read either way
SHARED_FIELDS = dict(vocab_size="vocab_size", tie_word_embeddings="tie_embeddings")
GPT2_FIELDS = dict(SHARED_FIELDS, n_positions="block_size", n_embd="n_embd", n_layer="n_layer", n_head="n_head",
                   n_inner="mlp_hidden", layer_norm_epsilon="norm_eps")
LLAMA_FIELDS = dict(SHARED_FIELDS, max_position_embeddings="block_size", hidden_size="n_embd",
                    num_hidden_layers="n_layer", num_attention_heads="n_head", num_key_value_heads="n_kv_head",
                    head_dim="head_size", intermediate_size="mlp_hidden", rms_norm_eps="norm_eps",
                    attention_bias="bias")
FIELDS = {"gpt2": GPT2_FIELDS, "llama": LLAMA_FIELDS, "qwen3": LLAMA_FIELDS}


def rename(name: str, model_type: str, to_ours: bool) -> str:
    for theirs, ours in RENAMES[model_type]:
        name = name.replace(theirs, ours) if to_ours else name.replace(ours, theirs)
    return name


def gpt_state_from_hf(state: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """A Hugging Face model's state dict in this project's names and layouts (GPT-2's c_attn split, Conv1D turned)."""
    ours = {}
    for name, tensor in state.items():
        if model_type == "gpt2" and name.endswith(CONV1D_SUFFIXES):  # GPT-2's Conv1D weights, stored (in, out)
            tensor = tensor.t()
        if ".attn.c_attn." in name:  # (3C, ...): the query, key and value rows stacked
            ours.update((name.replace("c_attn", part), chunk.contiguous()) for part, chunk in zip(QKV, tensor.chunk(3)))
        else:
            ours[rename(name, model_type, to_ours=True)] = tensor
    return ours


def hf_state_from_gpt(state: dict[str, torch.Tensor], config: GPTConfig, model_type: str) -> dict[str, torch.Tensor]:
    """This project's state dict in Hugging Face's names and layouts (GPT-2's: one c_attn, Conv1D weights, biases
    always): contiguous tensors, none shared (safetensors stores each once), a tied head left to transformers."""
    theirs, gpt2 = {}, model_type == "gpt2"
    for name, tensor in state.items():
        if config.tie_embeddings and name == "lm_head.weight" or gpt2 and (".k_proj." in name or ".v_proj." in name):
            continue  # a tied head is transformers' to tie; GPT-2's keys and values join the queries in c_attn
        if gpt2 and ".attn.q_proj." in name:  # GPT-2's one c_attn: (3C, ...)
            tensor = torch.cat([state[name.replace("q_proj", part)] for part in QKV])
            name = name.replace("q_proj", "c_attn")
        name = rename(name, model_type, to_ours=False)
        theirs[name] = (tensor.t() if gpt2 and name.endswith(CONV1D_SUFFIXES) else tensor).detach().contiguous()
        if gpt2 and (name.endswith(CONV1D_SUFFIXES) or ".ln_" in name and name.endswith(".weight")):
            # GPT-2 always adds biases: zeros (out,) where a bias=False model has none; a real one replaces them
            # (len: `tensor` is still ours, (out, in), not the turned one just stored)
            theirs.setdefault(name.removesuffix("weight") + "bias", tensor.new_zeros(len(tensor)))
    return theirs


def hf_model_type(config: GPTConfig) -> str:
    """gpt2, llama or qwen3: the Hugging Face model that computes what this GPT does, or a ModelError naming the
    option that has no equivalent."""
    if config.pos_emb == "learned":
        model_type, family = "gpt2", "pos_emb=learned makes it GPT-2"
        needs = {"norm": "layernorm", "mlp": "gelu", "qk_norm": False, "n_kv_head": config.n_head,
                 "head_size": config.n_embd // config.n_head}
    elif config.qk_norm:
        model_type, family = "qwen3", "pos_emb=rope with qk_norm=true makes it Qwen3"
        needs = {"norm": "rmsnorm", "mlp": "swiglu", "bias": False}  # Qwen3's MLP has no biases
    else:
        model_type, family = "llama", "pos_emb=rope makes it Llama"
        needs = {"norm": "rmsnorm", "mlp": "swiglu"}
    architecture = ARCHITECTURES[model_type]
    for key, value in needs.items():
        if getattr(config, key) != value:
            raise ModelError(f"cannot export: {key}={flag_value(getattr(config, key))} has no Hugging Face equivalent "
                             f"({family}, and {architecture} needs {key}={flag_value(value)})")
    if model_type != "qwen3" and config.n_embd % config.n_head:  # Qwen3's heads need not add up to its width
        raise ModelError(f"cannot export: n_embd={config.n_embd} is not a multiple of n_head={config.n_head}, "
                         f"which {architecture} requires")
    return model_type


def save_hf_model(model: torch.nn.Module, folder: Path, eot_token: int | None, generation: dict) -> tuple[str, int]:
    """Write a GPT's config.json, generation_config.json and model.safetensors into folder, refusing a shape with no
    equivalent first; returns the architecture and its parameters (GPT-2's zero biases included)."""
    import transformers
    from safetensors.torch import save

    model_type, c = hf_model_type(model.config), model.config
    common = {theirs: getattr(c, ours) for theirs, ours in FIELDS[model_type].items()}
    common.update(bos_token_id=eot_token, eos_token_id=eot_token, pad_token_id=None,
                  architectures=[ARCHITECTURES[model_type]], dtype="float32")
    if model_type == "gpt2":
        config = transformers.GPT2Config(activation_function="gelu_new", resid_pdrop=c.dropout, embd_pdrop=c.dropout,
                                         attn_pdrop=c.dropout, **common)
    else:
        common.update(hidden_act="silu", rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
                      attention_dropout=c.dropout)
        config = (transformers.LlamaConfig(mlp_bias=c.bias, **common) if model_type == "llama"
                  else transformers.Qwen3Config(**common))
    tensors = hf_state_from_gpt(model.state_dict(), c, model_type)
    config.save_pretrained(folder)
    transformers.GenerationConfig(bos_token_id=eot_token, eos_token_id=eot_token, **generation).save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(save(tensors, metadata={"format": "pt"}))
    return config.architectures[0], sum(tensor.numel() for tensor in tensors.values())


def _require(hf, key: str, value: object, allowed: tuple, why: str) -> None:
    if value not in allowed:
        raise ModelError(f"cannot load this {hf.model_type} model: {key}={value!r} is not supported ({why})")


def gpt_config_from_hf(hf) -> GPTConfig:
    """The GPTConfig of a transformers config of a GPT-2, Llama or Qwen3 model (model/pretrained.py
    checks the model type); a ModelError names an option that smallgpt does not compute."""
    fields = {ours: getattr(hf, theirs) if theirs != "head_dim" else getattr(hf, theirs, None)  # none: n_embd / n_head
              for theirs, ours in FIELDS[hf.model_type].items()}
    if hf.model_type == "gpt2":
        _require(hf, "activation_function", hf.activation_function, ("gelu_new", "gelu_pytorch_tanh"),
                 "GPT-2's MLP here is GELU's tanh approximation, gelu_new")
        scaling = "attention scores here are scaled by 1/sqrt(head_size) alone"
        _require(hf, "scale_attn_weights", hf.scale_attn_weights, (True,), scaling)
        _require(hf, "scale_attn_by_inverse_layer_idx", hf.scale_attn_by_inverse_layer_idx, (False,), scaling)
        return GPTConfig(**{**GPT2_SHAPE, **fields})
    rope = dict(hf.rope_parameters or {})
    _require(hf, "hidden_act", hf.hidden_act, ("silu",), "SwiGLU here gates with silu")
    _require(hf, "rope_type", rope.get("rope_type", "default"), ("default",), "RoPE here has no scaling")
    _require(hf, "partial_rotary_factor", rope.get("partial_rotary_factor", 1.0), (1.0,),
             "RoPE here turns every number of a head")
    one_bias = "smallgpt has one bias setting for every layer"
    if hf.model_type == "qwen3":
        _require(hf, "attention_bias", hf.attention_bias, (False,), f"Qwen3's MLP has no biases and {one_bias}")
        sliding = any(kind != "full_attention" for kind in hf.layer_types or ())
        _require(hf, "use_sliding_window", sliding, (False,), "attention here sees the whole context")
    else:
        _require(hf, "mlp_bias", hf.mlp_bias, (hf.attention_bias,),
                 f"attention_bias={hf.attention_bias} and {one_bias}")
    return GPTConfig(**fields, pos_emb="rope", rope_theta=rope.get("rope_theta", 10000.0), norm="rmsnorm",
                     qk_norm=hf.model_type == "qwen3", mlp="swiglu")
