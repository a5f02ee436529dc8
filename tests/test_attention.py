"""The attention story, checked against independent computations."""
import math

import pytest
import torch

from model import GPT, GPTConfig
from model.attention import CausalSelfAttention


def make_attention(n_embd: int, n_head: int, seed: int = 0) -> CausalSelfAttention:
    torch.manual_seed(seed)
    cfg = GPTConfig(block_size=64, vocab_size=10, n_layer=1, n_head=n_head, n_embd=n_embd, bias=True)
    attn = CausalSelfAttention(cfg, layer_idx=0).eval()
    for p in attn.parameters():  # non-trivial biases too
        torch.nn.init.normal_(p, std=0.3)
    return attn


@pytest.mark.parametrize("B,T,n_embd,n_head", [(1, 1, 8, 1), (2, 7, 16, 4), (3, 33, 48, 6), (2, 64, 64, 8)])
def test_explicit_and_fused_paths_agree(B, T, n_embd, n_head):
    attn = make_attention(n_embd, n_head)
    x = torch.randn(B, T, n_embd)
    fused = attn(x)
    attn.use_sdpa = False
    explicit = attn(x)
    assert (fused - explicit).abs().max().item() < 1e-5


def reference_attention(attn: CausalSelfAttention, x: torch.Tensor):
    """Multi-head attention recomputed head by head from the layer's weights, in float64."""
    B, T, C = x.shape
    nh, hs = attn.n_head, C // attn.n_head
    W, b = attn.c_attn.weight.double(), attn.c_attn.bias.double()
    x = x.double()
    outputs, patterns = [], []
    for h in range(nh):
        rows = slice(h * hs, (h + 1) * hs)
        q = x @ W[rows].T + b[rows]  # (B, T, hs)
        k = x @ W[C:][rows].T + b[C:][rows]
        v = x @ W[2 * C :][rows].T + b[2 * C :][rows]
        pattern = torch.zeros(B, T, T, dtype=torch.float64)
        for i in range(T):  # query i attends to keys 0..i only
            scores = q[:, i : i + 1] @ k[:, : i + 1].transpose(1, 2) / math.sqrt(hs)  # (B, 1, i+1)
            pattern[:, i, : i + 1] = torch.softmax(scores[:, 0], dim=-1)
        patterns.append(pattern)
        outputs.append(pattern @ v)
    y = torch.cat(outputs, dim=-1) @ attn.c_proj.weight.double().T + attn.c_proj.bias.double()
    return y, torch.stack(patterns, dim=1)  # (B, T, C), (B, nh, T, T)


def test_attention_matches_head_by_head_reference():
    attn = make_attention(24, 3)
    x = torch.randn(2, 9, 24)
    expected_y, expected_pattern = reference_attention(attn, x)
    patterns = []
    y = attn(x, patterns=patterns)
    assert torch.allclose(y.double(), expected_y, atol=1e-5)
    assert torch.allclose(patterns[0].double(), expected_pattern, atol=1e-6)


def test_pattern_rows_sum_to_one_and_future_is_zero():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=20, n_layer=3, n_head=4, n_embd=32)).eval()
    patterns = model.attention_patterns(torch.randint(0, 20, (2, 16)))
    assert len(patterns) == 3
    for p in patterns:
        assert p.shape == (2, 4, 16, 16)
        assert torch.allclose(p.sum(-1), torch.ones(2, 4, 16), atol=1e-6)
        upper = torch.triu(torch.ones(16, 16, dtype=torch.bool), diagonal=1)
        assert (p[..., upper] == 0).all()
        assert (p[..., ~upper] > 0).all()  # every visible key gets some weight


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_changing_a_token_leaves_earlier_logits_unchanged(use_sdpa):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=24, vocab_size=30, n_layer=2, n_head=2, n_embd=16)).eval()
    for block in model.transformer.h:
        block.attn.use_sdpa = use_sdpa
    idx = torch.randint(0, 30, (1, 24))
    for t in (0, 5, 23):
        changed = idx.clone()
        changed[0, t] = (idx[0, t] + 1) % 30
        before, _ = model(idx)
        after, _ = model(changed)
        assert torch.equal(before[:, :t], after[:, :t])  # bit for bit
        assert not torch.allclose(before[:, t], after[:, t])  # the change is seen from t on
