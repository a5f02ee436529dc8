"""The attention story and the modern shape's pieces, each against an independent computation."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from model import GPT, GPTConfig
from helpers import gpt2_config
from model.attention import CausalSelfAttention, Positions, rotate, rotation_tables
from model.decoding import generation_cache

from attention_reference import complex_rope, reference_attention, rms_norm

MODERN = dict(pos_emb="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False)


def make_attention(n_embd: int, n_head: int, seed: int = 0, **options) -> tuple[CausalSelfAttention, GPTConfig]:
    torch.manual_seed(seed)
    cfg = gpt2_config(block_size=64, vocab_size=10, n_layer=1, n_head=n_head, n_embd=n_embd, bias=True, **options)
    attn = CausalSelfAttention(cfg, layer_idx=0).eval()
    for p in attn.parameters():  # non-trivial biases and norm weights too
        torch.nn.init.normal_(p, mean=0.5 if p.dim() == 1 else 0.0, std=0.3)
    return attn, cfg


def first_positions(cfg: GPTConfig, T: int) -> Positions:
    """Positions 0..T-1 with no cache, as GPT.hidden_states describes them to every layer."""
    positions = torch.arange(T)
    rotation = rotation_tables(positions, cfg.head_size, cfg.rope_theta, torch.float32) if cfg.pos_emb == "rope" else None
    return Positions(positions, positions, cfg.block_size, rotation=rotation)


def set_sdpa(model: torch.nn.Module, on: bool) -> None:
    for module in model.modules():
        if isinstance(module, CausalSelfAttention):
            module.use_sdpa = on


@pytest.mark.parametrize("pos_emb, qk_norm, n_kv_head, bias",
                         list(itertools.product(["learned", "rope"], [False, True], [4, 2, 1], [False, True])))
def test_explicit_and_fused_paths_agree_for_every_option(pos_emb, qk_norm, n_kv_head, bias):
    torch.manual_seed(0)
    config = gpt2_config(block_size=24, vocab_size=30, n_layer=2, n_head=4, n_embd=32, bias=bias, pos_emb=pos_emb,
                       qk_norm=qk_norm, n_kv_head=n_kv_head, norm="rmsnorm" if qk_norm else "layernorm",
                       mlp="swiglu" if bias else "gelu", tie_embeddings=not qk_norm)
    model = GPT(config).eval()
    idx = torch.randint(0, 30, (2, 24))
    fused, _ = model(idx)
    set_sdpa(model, False)
    explicit, _ = model(idx)
    assert (fused - explicit).abs().max().item() < 1e-5


def test_rope_is_a_rotation_of_each_pair_by_its_position():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 7, 16)
    positions = torch.tensor([0, 1, 2, 5, 17, 63, 100])  # float32 angles, as transformers computes them
    cos, sin = rotation_tables(positions, 16, 10000.0, torch.float32)
    expected = complex_rope(x[0, 0], positions, 10000.0)
    assert torch.allclose(rotate(x, cos, sin)[0, 0].double(), expected, atol=1e-5)
    assert torch.allclose(rotate(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # lengths unchanged


def test_rope_scores_do_not_change_when_every_position_shifts():
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=16, vocab_size=30, n_layer=2, n_head=2, n_embd=32, **MODERN)).eval()
    idx = torch.randint(0, 30, (1, 16))
    with torch.no_grad():
        set_sdpa(model, False)
        here, there, spread = [], [], []
        model.hidden_states(idx, records=here, positions=torch.arange(16))
        model.hidden_states(idx, records=there, positions=torch.arange(777, 777 + 16))
        model.hidden_states(idx, records=spread, positions=torch.arange(16) ** 2)  # other distances between tokens
    visible_scores = torch.tril(torch.ones(16, 16, dtype=torch.bool))
    for a, b, c in zip(here, there, spread):
        assert torch.allclose(a.scores[..., visible_scores], b.scores[..., visible_scores], atol=1e-4)
        assert not torch.allclose(a.scores[..., visible_scores], c.scores[..., visible_scores], atol=1e-2)
    logits_here = model.lm_head(model.hidden_states(idx, positions=torch.arange(16)))
    logits_there = model.lm_head(model.hidden_states(idx, positions=torch.arange(777, 777 + 16)))
    assert torch.allclose(logits_here, logits_there, atol=1e-4)


def test_rmsnorm_is_its_formula():
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=16, **MODERN))
    norm = model.transformer.h[0].norm_1
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(3, 5, 16) * 4
    assert torch.allclose(norm(x).double(), rms_norm(x, norm.weight, 1e-5), atol=1e-5)


@pytest.mark.parametrize("options", [{}, dict(pos_emb="rope", qk_norm=True, n_kv_head=1),
                                     dict(pos_emb="rope", n_kv_head=3), dict(qk_norm=True)])
def test_attention_matches_head_by_head_reference(options):
    attn, cfg = make_attention(36, 6, **options)
    x = torch.randn(2, 9, 36)
    rope_theta = cfg.rope_theta if cfg.pos_emb == "rope" else None
    expected_y, expected_pattern, expected_raw, expected_norms = reference_attention(attn, x, torch.arange(9),
                                                                                     rope_theta)
    positions = first_positions(cfg, 9)
    records = []
    y = attn(x, positions, records=records)
    assert torch.allclose(y.double(), expected_y, atol=1e-5)
    assert torch.allclose(records[0].pattern.double(), expected_pattern, atol=1e-6)
    assert torch.allclose(records[0].scores.double(), expected_raw, atol=1e-5)
    assert torch.allclose(records[0].value_norms.double(), expected_norms, atol=1e-5)
    assert torch.allclose(attn(x, positions).double(), expected_y, atol=1e-5)  # the fused path too


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_under_bfloat16_autocast_a_cpu_computes_attention_in_float32(use_sdpa, monkeypatch):
    """On a CPU attention computes in float32 (torch's fused kernel is slower in bfloat16 there) whatever autocast
    does around it, on the fused and the explicit path; the layer's output keeps autocast's dtype, and gradients
    reach its weights."""
    seen, fused = [], F.scaled_dot_product_attention

    def spy(q, k, v, **options):
        out = fused(q, k, v, **options)
        seen.append((q.dtype, k.dtype, v.dtype, out.dtype))
        return out

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    attn, cfg = make_attention(32, 4, pos_emb="rope", qk_norm=True)
    records = None if use_sdpa else []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attn(torch.randn(2, 9, 32), first_positions(cfg, 9), records=records)
    y.float().square().sum().backward()
    assert y.dtype == torch.bfloat16
    if use_sdpa:
        assert seen == [(torch.float32,) * 4]
    else:
        assert not seen and records[0].scores.dtype == records[0].pattern.dtype == torch.float32
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in attn.parameters())


def test_grouped_query_attention_is_multi_head_attention_with_key_value_heads_repeated():
    torch.manual_seed(0)
    shape = dict(block_size=16, vocab_size=30, n_layer=2, n_head=6, n_embd=48, **MODERN)
    grouped = GPT(gpt2_config(**shape, n_kv_head=2)).eval()
    full = GPT(gpt2_config(**shape)).eval()
    state = grouped.state_dict()
    hs = 8
    for name, tensor in list(state.items()):
        if ".k_proj." in name or ".v_proj." in name:  # (2 * hs, ...): each kv head serves 3 query heads
            state[name] = tensor.view(2, hs, -1).repeat_interleave(3, dim=0).reshape(6 * hs, *tensor.shape[1:])
    full.load_state_dict(state)
    idx = torch.randint(0, 30, (2, 16))
    assert torch.allclose(grouped(idx)[0], full(idx)[0], atol=1e-5)
    cache = generation_cache(grouped, idx, None, compile=False)
    assert cache.k[0].shape == (2, 2, 16, hs)  # the cache holds the 2 key/value heads, not 6


def test_swiglu_is_its_formula():
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=24, bias=True, **MODERN))
    mlp = model.transformer.h[0].mlp
    assert mlp.up_proj.out_features == 64  # 8/3 * 24 = 64
    x = torch.randn(2, 5, 24)

    def linear(layer, inputs):
        return inputs.double() @ layer.weight.double().T + layer.bias.double()

    gate = linear(mlp.gate_proj, x)
    expected = linear(mlp.down_proj, gate * torch.sigmoid(gate) * linear(mlp.up_proj, x))
    assert torch.allclose(mlp(x).double(), expected, atol=1e-5)


@pytest.mark.parametrize("options", [{}, MODERN])
def test_pattern_rows_sum_to_one_and_future_is_zero(options):
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=16, vocab_size=20, n_layer=3, n_head=4, n_embd=32, **options)).eval()
    patterns = model.attention_patterns(torch.randint(0, 20, (2, 16)))
    assert len(patterns) == 3
    for p in patterns:
        assert p.shape == (2, 4, 16, 16)
        assert torch.allclose(p.sum(-1), torch.ones(2, 4, 16), atol=1e-6)
        upper = torch.triu(torch.ones(16, 16, dtype=torch.bool), diagonal=1)
        assert (p[..., upper] == 0).all()
        assert (p[..., ~upper] > 0).all()  # every visible key gets some weight


@pytest.mark.parametrize("use_sdpa", [True, False])
@pytest.mark.parametrize("options", [{}, MODERN])
def test_changing_a_token_leaves_earlier_logits_unchanged(use_sdpa, options):
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=24, vocab_size=30, n_layer=2, n_head=2, n_embd=16, **options)).eval()
    set_sdpa(model, use_sdpa)
    idx = torch.randint(0, 30, (1, 24))
    for t in (0, 5, 23):
        changed = idx.clone()
        changed[0, t] = (idx[0, t] + 1) % 30
        before, _ = model(idx)
        after, _ = model(changed)
        assert torch.equal(before[:, :t], after[:, :t])  # bit for bit
        assert not torch.allclose(before[:, t], after[:, t])  # the change is seen from t on
