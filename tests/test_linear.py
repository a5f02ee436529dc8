"""The decoding route of model.linear.Linear computes nn.Linear's function."""
import pytest
import torch
import torch.nn.functional as F

from model.linear import FEW_ROWS, MIN_WEIGHT_NUMEL, Linear, matmul_by_row_halves


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
def test_linear_takes_row_halves_only_for_few_row_inference_through_a_large_weight(bias):
    torch.manual_seed(0)
    layer = Linear(512, MIN_WEIGHT_NUMEL // 512 + 1, bias=bias)  # odd row count: a shared middle row
    few = torch.randn(2, 1, 512)
    many = torch.randn(FEW_ROWS + 1, 512)
    halves = matmul_by_row_halves(few, layer.weight.detach())
    if bias:
        halves = halves + layer.bias.detach()
    with torch.inference_mode():
        assert torch.equal(layer(few), halves)
        assert torch.equal(layer(many), F.linear(many, layer.weight, layer.bias))
    out = layer(few)  # training: plain F.linear, with gradients
    assert out.requires_grad
    assert torch.equal(out, F.linear(few, layer.weight, layer.bias))
    torch.testing.assert_close(halves, out.detach(), rtol=1e-5, atol=1e-5)


def test_a_small_weight_keeps_f_linear():
    layer = Linear(128, 384)  # stays in cache: F.linear was faster
    x = torch.randn(1, 128)
    with torch.inference_mode():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
