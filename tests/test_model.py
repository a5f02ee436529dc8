"""The network as a whole: GPT-2's parameter count, the loss, learning."""
import math
import re
from dataclasses import asdict

import pytest
import torch

from model import GPT, GPTConfig, ModelError
from helpers import gpt2_config


def test_gpt2_small_has_gpt2s_parameter_count():
    with torch.device("meta"):  # shapes only, nothing allocated
        model = GPT(gpt2_config(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768, bias=True))
    assert model.num_params() == 124_439_808
    assert model.lm_head.weight is model.transformer.wte.weight  # tied head


def test_initial_loss_is_close_to_uniform_guessing():
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=32, vocab_size=65, n_layer=2, n_head=2, n_embd=32))
    idx = torch.randint(0, 65, (8, 32))
    _, loss = model(idx, torch.randint(0, 65, (8, 32)))
    assert abs(loss.item() - math.log(65)) < 0.1


def test_loss_is_mean_cross_entropy_of_logits():
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8))
    idx, targets = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    logits, loss = model(idx, targets)
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    per_token = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    assert abs(loss.item() - per_token.mean().item()) < 1e-5
    targets[0, :3] = -1  # no target there: those positions are left out of the mean
    assert abs(model(idx, targets)[1].item() - per_token[targets != -1].mean().item()) < 1e-5


def test_residual_projections_use_gpt2_scaled_init():
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=8, vocab_size=50, n_layer=8, n_head=4, n_embd=256))
    proj = torch.cat([w.flatten() for b in model.transformer.h for w in (b.attn.o_proj.weight, b.mlp.down_proj.weight)])
    fc = torch.cat([b.mlp.up_proj.weight.flatten() for b in model.transformer.h])
    assert abs(proj.std().item() - 0.02 / math.sqrt(16)) < 5e-4
    assert abs(fc.std().item() - 0.02) < 5e-4


def test_two_layer_model_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=32, vocab_size=50, n_layer=2, n_head=2, n_embd=64, bias=False))
    x = torch.randint(0, 50, (4, 32))
    y = torch.roll(x, -1, dims=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(300):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1, f"loss {loss.item():.3f} after {step + 1} steps"


def test_a_checkpoint_of_an_earlier_format_is_refused_in_one_line():
    """One format: a state dict with one fused c_attn (an earlier layout) is refused, naming the mismatch."""
    from config.errors import UserError
    from training.checkpoint import model_from_checkpoint

    args = asdict(gpt2_config(block_size=16, vocab_size=30, n_layer=1, n_head=2, n_embd=32))
    state = GPT(GPTConfig(**args)).state_dict()
    fused = {k.replace("q_proj", "c_attn"): v for k, v in state.items() if ".k_proj." not in k and ".v_proj." not in k}
    assert model_from_checkpoint({"model": state, "model_args": args}, "now.pt").config.n_layer == 1
    with pytest.raises(UserError, match=r"^checkpoint old.pt does not match the model it describes \(.*Missing key.*q_proj.*\); "
                                        r"use another one$"):
        model_from_checkpoint({"model": fused, "model_args": args}, "old.pt")


def test_the_width_suggested_for_a_head_count_is_one_the_model_takes():
    for pos_emb in ("rope", "learned"):
        for n_head in range(2, 13):
            for n_embd in range(1, 200):
                try:
                    GPTConfig(n_embd=n_embd, n_head=n_head, pos_emb=pos_emb)
                except ModelError as e:
                    suggested = re.search(r"try n_embd=(\d+)$", str(e))
                    assert suggested, str(e)
                    config = GPTConfig(n_embd=int(suggested.group(1)), n_head=n_head, pos_emb=pos_emb)
                    assert abs(config.n_embd - n_embd) <= n_head * (2 if pos_emb == "rope" else 1)
    with pytest.raises(ModelError, match="head_size=5 must be even; try head_size=6"):  # a head size given
        GPTConfig(n_embd=32, n_head=4, head_size=5)
