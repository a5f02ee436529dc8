"""Models in and out of Hugging Face's folder format, against transformers' own GPT2LMHeadModel,
LlamaForCausalLM and Qwen3ForCausalLM built in the test (float32, no download): the same logits
to 1e-4 and the same greedy tokens."""
from __future__ import annotations

import json

import pytest
import torch

from model import GPT, GPTConfig, ModelError
from helpers import gpt2_config
from model.hf import gpt_config_from_hf, save_hf_model

transformers = pytest.importorskip("transformers")

CLASSIC = dict(pos_emb="learned", norm="layernorm", mlp="gelu", qk_norm=False)
MODERN = dict(pos_emb="rope", norm="rmsnorm", mlp="swiglu")
SHAPES = {  # name: (GPTConfig options, the class transformers must load)
    "gpt2 without biases": (dict(CLASSIC, bias=False, tie_embeddings=True), "GPT2LMHeadModel"),
    "gpt2 untied, 96 wide mlp": (dict(CLASSIC, bias=True, tie_embeddings=False, mlp_hidden=96), "GPT2LMHeadModel"),
    "llama, grouped-query": (dict(MODERN, qk_norm=False, n_kv_head=2, bias=False, tie_embeddings=False,
                                  rope_theta=500000.0), "LlamaForCausalLM"),
    "llama, biases, multi-query, tied": (dict(MODERN, qk_norm=False, n_kv_head=1, bias=True, tie_embeddings=True),
                                         "LlamaForCausalLM"),
    "qwen3, grouped-query, wide heads": (dict(MODERN, qk_norm=True, n_kv_head=2, head_size=24, bias=False,
                                              tie_embeddings=False, norm_eps=1e-6), "Qwen3ForCausalLM"),
}
VOCAB, CONTEXT = 71, 64


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Every weight moved off its initial value (zero biases, unit norms), so each one is checked."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def greedy_by_hand(hf, idx: torch.Tensor, n: int) -> torch.Tensor:
    """transformers' forward pass, argmax appended n times: a reference free of our sampler."""
    with torch.no_grad():
        for _ in range(n):
            idx = torch.cat([idx, hf(idx).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@pytest.mark.parametrize("name", SHAPES)
def test_an_exported_model_computes_what_ours_does(tmp_path, name):
    options, architecture = SHAPES[name]
    torch.manual_seed(0)
    ours = perturbed(GPT(gpt2_config(block_size=CONTEXT, vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=64, **options)))
    assert save_hf_model(ours, tmp_path, None, dict(do_sample=False))[0] == architecture
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == architecture
    idx = torch.randint(0, VOCAB, (2, CONTEXT))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4
    prompt = idx[:, :10]  # 10 + 50 tokens stay within the context, where both read every position
    assert torch.equal(ours.generate(prompt, 50, temperature=0), greedy_by_hand(hf, prompt, 50))
    assert torch.equal(hf.generate(prompt, max_new_tokens=50, do_sample=False), greedy_by_hand(hf, prompt, 50))


@pytest.mark.parametrize("options, fragment", [
    (dict(CLASSIC, norm="rmsnorm"), "norm=rmsnorm has no Hugging Face equivalent (pos_emb=learned makes it GPT-2"),
    (dict(CLASSIC, mlp="swiglu"), "mlp=swiglu has no Hugging Face equivalent"),
    (dict(CLASSIC, n_kv_head=2), "n_kv_head=2 has no Hugging Face equivalent"),
    (dict(CLASSIC, qk_norm=True), "qk_norm=true has no Hugging Face equivalent"),
    (dict(MODERN, norm="layernorm", qk_norm=False), "norm=layernorm has no Hugging Face equivalent (pos_emb=rope"),
    (dict(MODERN, mlp="gelu", qk_norm=True), "mlp=gelu has no Hugging Face equivalent"),
    (dict(MODERN, qk_norm=True, bias=True), "bias=true has no Hugging Face equivalent (pos_emb=rope with "
                                            "qk_norm=true makes it Qwen3, and Qwen3ForCausalLM needs bias=false)"),
])
def test_a_shape_without_an_equivalent_is_refused_before_anything_is_written(tmp_path, options, fragment):
    model = GPT(gpt2_config(block_size=16, vocab_size=VOCAB, n_layer=1, n_head=4, n_embd=32, **options))
    with pytest.raises(ModelError, match="^cannot export: ") as error:
        save_hf_model(model, tmp_path, None, {})
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


HF_MODELS = {  # transformers configs with grouped-query attention and every weight present
    "llama": lambda: transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=131072, attention_bias=True, mlp_bias=True,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, rms_norm_eps=1e-5),
    "qwen3": lambda: transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=24, max_position_embeddings=40960, tie_word_embeddings=True),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=48, n_layer=2, n_head=4,
                                            n_inner=80, bos_token_id=None, eos_token_id=None),
}


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory) -> dict:
    """Each model of HF_MODELS, random and saved the way the hub's are: name -> (folder, transformers model)."""
    folders = {}
    for name, config in HF_MODELS.items():
        torch.manual_seed(0)
        hf = perturbed(transformers.AutoModelForCausalLM.from_config(config()))
        folder = tmp_path_factory.mktemp(name)
        hf.save_pretrained(folder)
        folders[name] = folder, hf
    return folders


@pytest.mark.parametrize("name", HF_MODELS)
def test_an_imported_model_computes_what_transformers_does(hf_folders, name):
    folder, hf = hf_folders[name]
    ours = GPT.from_pretrained(str(folder)).eval()
    c = ours.config
    if name != "gpt2":
        assert c.n_kv_head < c.n_head and c.pos_emb == "rope" and c.block_size == hf.config.max_position_embeddings
    assert (c.qk_norm, c.tie_embeddings) == (name == "qwen3", hf.config.tie_word_embeddings)
    idx = torch.randint(0, VOCAB, (3, CONTEXT))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4
    assert torch.equal(ours.generate(idx[:, :10], 30, temperature=0), greedy_by_hand(hf, idx[:, :10], 30))


@pytest.mark.parametrize("config, fragment", [
    (lambda: transformers.LlamaConfig(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}),
     "cannot load this llama model: rope_type='linear' is not supported (RoPE here has no scaling)"),
    (lambda: transformers.LlamaConfig(hidden_act="gelu"), "hidden_act='gelu' is not supported"),
    (lambda: transformers.LlamaConfig(attention_bias=True, mlp_bias=False),
     "mlp_bias=False is not supported (attention_bias=True and smallgpt has one bias setting for every layer)"),
    (lambda: transformers.Qwen3Config(attention_bias=True), "cannot load this qwen3 model: attention_bias=True"),
    (lambda: transformers.Qwen3Config(num_hidden_layers=4, use_sliding_window=True, max_window_layers=2),
     "use_sliding_window=True is not supported (attention here sees the whole context)"),
    (lambda: transformers.GPT2Config(activation_function="relu"), "activation_function='relu' is not supported"),
    (lambda: transformers.GPT2Config(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True"),
])
def test_what_smallgpt_does_not_compute_is_refused_before_the_weights_are_read(tmp_path, config, fragment):
    with pytest.raises(ModelError, match="^cannot load this ") as error:
        gpt_config_from_hf(config())
    assert fragment in str(error.value)
    config().save_pretrained(tmp_path)  # config.json alone: the refusal comes before any weight is looked for
    with pytest.raises(ModelError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        GPT.from_pretrained(str(tmp_path))


def test_a_folder_of_another_model_type_or_without_config_json_is_one_line(tmp_path):
    (tmp_path / "best.png").touch()  # a picture of that name is no checkpoint
    with pytest.raises(ModelError, match="has no config.json, so it is not a Hugging Face model folder; give one "
                                         r"written by save_pretrained \(config.json and model.safetensors\)$"):
        GPT.from_pretrained(str(tmp_path))
    (tmp_path / "ckpt.pt").touch()  # a training run's folder
    with pytest.raises(ModelError, match=r"\(config.json and model.safetensors\); it holds ckpt.pt, so it is a "
                                         r"smallgpt run: give it as --out_dir .* with export.py$"):
        GPT.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(ModelError, match=r"model_type 'bert' is not supported; smallgpt reads gpt2, llama, qwen3"):
        GPT.from_pretrained(str(tmp_path))
