"""The sampler's CPU decoding step computes what the model's plain nn.Linear layers
compute, shares their weights, and leaves the model itself untouched."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import GPT, GPTConfig
from model.fast_decoding import FEW_ROWS, MIN_WEIGHT_NUMEL, RowHalvesLinear, for_cpu_decoding, matmul_by_row_halves

BENCH_SHAPE = GPTConfig(block_size=64, vocab_size=65, n_layer=2, n_head=6, n_embd=384, bias=True)


@pytest.mark.parametrize("n_out", [1, 65, 384, 1153])  # odd counts share a middle row
@pytest.mark.parametrize("lead_shape", [(1,), (3, 1), (2, 5)])
def test_row_halves_match_float64_reference(n_out, lead_shape):
    torch.manual_seed(n_out)
    weight = torch.randn(n_out, 48)
    x = torch.randn(*lead_shape, 48)
    reference = (x.double() @ weight.double().T).float()  # (..., n_out)
    got = matmul_by_row_halves(x, weight)
    assert got.shape == (*lead_shape, n_out)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


def test_row_halves_of_a_non_contiguous_weight():
    base = torch.randn(40, 70)
    weight = base[:, 3:51]  # (40, 48), rows 70 apart
    x = torch.randn(2, 48)
    torch.testing.assert_close(matmul_by_row_halves(x, weight), x @ weight.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_row_halves_only_for_few_row_inference(bias):
    torch.manual_seed(0)
    layer = RowHalvesLinear(nn.Linear(512, MIN_WEIGHT_NUMEL // 512 + 1, bias=bias))  # odd rows: a shared middle one
    weight, b = layer.linear.weight, layer.linear.bias
    few, many = torch.randn(2, 1, 512), torch.randn(FEW_ROWS + 1, 512)
    halves = matmul_by_row_halves(few, weight.detach())
    if bias:
        halves = halves + b.detach()
    with torch.inference_mode():
        assert torch.equal(layer(few), halves)
        assert torch.equal(layer(many), F.linear(many, weight, b))
    out = layer(few)  # with gradients on: plain F.linear
    assert out.requires_grad and torch.equal(out, F.linear(few, weight, b))
    torch.testing.assert_close(halves, out.detach(), rtol=1e-5, atol=1e-5)


def test_every_linear_of_the_model_is_exactly_nn_linear():
    for config in (BENCH_SHAPE, GPTConfig(n_layer=1)):
        linears = [m for m in GPT(config).modules() if isinstance(m, nn.Linear)]
        assert linears and all(type(m) is nn.Linear for m in linears)


def test_the_decoding_twin_shares_weights_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = GPT(BENCH_SHAPE).eval()
    names = [name for name, _ in model.named_modules()]
    twin = for_cpu_decoding(model)
    assert [name for name, _ in model.named_modules()] == names  # the model is unchanged
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))
    wrapped = [m for m in twin.modules() if isinstance(m, RowHalvesLinear)]
    big = [m for m in model.modules() if type(m) is nn.Linear and m.weight.numel() >= MIN_WEIGHT_NUMEL]
    assert len(wrapped) == len(big) > 0  # attention and MLP matrices; the 65-row head stays plain
    assert {p.data_ptr() for p in twin.parameters()} == {p.data_ptr() for p in model.parameters()}
    idx = torch.randint(0, 65, (2, 7))
    a = model.generate(idx, 40, temperature=0)
    assert torch.equal(twin.generate(idx, 40, temperature=0), a)
    with torch.no_grad():
        model.transformer.h[0].attn.q_proj.weight.mul_(0.5)  # a weight changed in the model is changed in the twin
    assert torch.equal(twin.generate(idx, 40, temperature=0), model.generate(idx, 40, temperature=0))
