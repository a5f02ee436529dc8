"""Lower-precision weights for decoding (--weights): the same text as float32, nearly, and the same
bits per byte, nearly; a dtype that does not exist is one line."""
import importlib
import json
import warnings

import pytest
import torch

from helpers import assert_one_line_error, run_command
from model import GPT, GPTConfig
from model.decoding import generation_cache
from model.weights import Int8Linear, with_weights
from training.init_from import load_model

pytestmark = pytest.mark.slow  # a trained checkpoint


PROMPT = "Shall I compare thee"


def next_token_picks(model, text: torch.Tensor, start: int) -> torch.Tensor:
    """The model's greedy pick after each prefix of text past the prompt, from at most block_size tokens
    before it: every pick follows the same text, so one pick that differs does not change the next ones."""
    T = model.config.block_size
    with torch.no_grad():
        return torch.stack([model(text[:, max(0, t - T):t])[0][0, -1].argmax() for t in range(start, text.size(1))])


@pytest.mark.parametrize("weights", ["int8", "bfloat16"])
def test_lower_precision_weights_pick_the_float32_tokens(trained_out, weights):
    """Over 200 tokens of float32's greedy text. A pick can flip where float32's two best logits nearly tie,
    and a free-running comparison would then differ at every later token: it tells of one tie, not quality."""
    float32, tokenizer, *_ = load_model(str(trained_out), "ckpt.pt", "", torch.device("cpu"), "float32")
    prompt = torch.tensor([tokenizer.encode(PROMPT)])
    text = float32.generate(prompt, 200, temperature=0)  # (1, prompt + 200)
    model, *_ = load_model(str(trained_out), "ckpt.pt", "", torch.device("cpu"), weights)
    picks = next_token_picks(model, text, prompt.size(1))
    assert (picks == next_token_picks(float32, text, prompt.size(1))).float().mean() >= 0.9
    linears = {name for name, module in float32.named_modules() if isinstance(module, torch.nn.Linear)}
    if weights == "int8":  # every Linear holds int8 weights, and a scale per output row
        assert {name for name, module in model.named_modules() if isinstance(module, Int8Linear)} == linears
        assert all(module.weight.dtype == torch.int8 for module in model.modules() if isinstance(module, Int8Linear))
        assert model.lm_head.scales.shape == (model.config.vocab_size,)
    else:
        assert {module.weight.dtype for name, module in model.named_modules() if name in linears} == {torch.bfloat16}
    assert model.generate(prompt, 20, temperature=0).shape == (1, prompt.size(1) + 20)  # it decodes


def test_eval_scores_int8_weights_within_a_hundredth_of_a_bit(trained_out, capsys):
    evaluate = importlib.import_module("eval").main  # eval.py's main, as its command line runs it
    for weights in ("float32", "int8"):
        evaluate([f"--out_dir={trained_out}", f"--weights={weights}", "--json=true"])
    float32, int8 = (json.loads(line)["bits_per_byte"] for line in capsys.readouterr().out.strip().splitlines())
    assert 0 < abs(int8 - float32) < 0.01  # int8's rounding shows, slightly


def test_a_weight_dtype_that_does_not_exist_is_one_line(trained_out):
    assert_one_line_error(run_command("sample.py", f"--out_dir={trained_out}", "--weights=int4"),
                          "weights='int4' is not one of float32, bfloat16, int8")


def test_bfloat16_weights_keep_the_qk_norm_in_float32_and_warn_of_nothing():
    """QK-norm computes in float32, so its scales stay float32 (torch's fused RMSNorm then takes them,
    with no warning about mismatched dtypes); every other weight is bfloat16."""
    model = GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=32, pos_emb="rope",
                          norm="rmsnorm", qk_norm=True)).eval()
    with_weights(model, "bfloat16")
    float32 = {name for name, p in model.named_parameters() if p.dtype == torch.float32}
    assert float32 == {f"transformer.h.{i}.attn.{qk}_norm.weight" for i in range(2) for qk in "qk"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(torch.zeros(1, 1, dtype=torch.long), 4, temperature=0)


@pytest.mark.parametrize("product", ["aten's int8 kernel", "dequantized (the path off a CPU)"])
def test_an_int8_linear_is_its_rows_rounded_to_255_levels_times_a_scale(product, monkeypatch):
    """Each weight is off by at most half its row's step (the row's largest |weight| / 127), and the product is
    the float32 product with those weights, computed in bfloat16: by aten's kernel, and by the product every
    other device takes, run here on the CPU."""
    if product.startswith("dequantized"):
        monkeypatch.setattr(Int8Linear, "kernel_devices", ())
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    int8 = Int8Linear(linear)
    w, scales = linear.weight.detach(), linear.weight.detach().abs().amax(1) / 127  # (48, 64), (48,)
    dequantized = int8.weight.float() * int8.scales[:, None]
    assert int8.weight.dtype == torch.int8 and int8.weight.abs().amax(1).eq(127).all()
    assert ((dequantized - w).abs() <= scales[:, None] / 2 + 1e-7).all()
    x = torch.randn(3, 5, 64)
    reference = torch.nn.functional.linear(x, dequantized, linear.bias.detach())  # (3, 5, 48)
    out = int8.to(torch.bfloat16)(x.bfloat16()).float()
    assert out.shape == (3, 5, 48)
    assert (out - reference).abs().max() < 0.02 * reference.abs().max()


def test_a_cpu_cache_is_float32_whatever_the_weights():
    """On a CPU attention reads a float32 cache (generation_cache), and the step's logits keep the weights' dtype:
    those of a plain forward pass with the same weights, and near float32's."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=32)).eval()
    tokens = torch.tensor([[3, 5, 9, 1]])
    with torch.no_grad():
        full, _ = model(tokens)  # (1, 4, V): float32's logits at every position
        with_weights(model, "bfloat16")
        plain, _ = model(tokens)  # the bfloat16 weights' own, without a cache
        cache = generation_cache(model, tokens, None, compile=False)
        logits = model.next_token_logits(tokens[:, :2], cache, torch.arange(2))  # the prompt, then a token at a time
        steps = [model.next_token_logits(tokens[:, i : i + 1], cache, torch.arange(i, i + 1)) for i in (2, 3)]
    assert {t.dtype for t in (*cache.k, *cache.v)} == {torch.float32}
    assert logits.dtype == torch.bfloat16
    cached = torch.stack([logits, *steps]).float()  # (3, 1, V): for positions 1, 2 and 3
    assert (cached - plain[0, 1:, None].float()).abs().max().item() < 5e-3  # bfloat16's step near 0.3 is 2e-3
    assert (cached - full[0, 1:, None]).abs().max().item() < 0.01  # bfloat16's rounding of the weights
