"""The optimizers: which parameters Muon moves, and that a step is torch.optim.Muon's and AdamW's own."""
import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz  # torch's own iteration, the reference

from config.settings import TrainConfig
from helpers import gpt2_config
from model import GPT
from training.optimizer import Muon, build_optimizers, lr_scale, orthogonalise

CFG = TrainConfig(optimizer="muon", muon_lr=0.03, muon_momentum=0.9, learning_rate=2e-3, weight_decay=0.05)
SHAPE = gpt2_config(block_size=16, vocab_size=30, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, bias=True,
                  pos_emb="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False)


def with_gradients(model: GPT) -> GPT:
    idx = torch.randint(0, 30, (3, 16), generator=torch.Generator().manual_seed(1))
    model(idx, torch.roll(idx, -1, dims=1))[1].backward()
    return model


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    torch.manual_seed(0)
    model = GPT(SHAPE)
    parts = build_optimizers(model, CFG, torch.device("cpu")).parts
    on_muon = {id(p) for group in parts["muon"].param_groups for p in group["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in on_muon} == {n for n, p in model.named_parameters()
                                          if n.startswith("transformer.h.") and p.dim() == 2}
    on_adamw = {names[id(p)] for group in parts["adamw"].param_groups for p in group["params"]}
    assert {"transformer.wte.weight", "lm_head.weight", "transformer.norm_f.weight"} <= on_adamw
    assert any(n.endswith("q_norm.weight") for n in on_adamw) and any(n.endswith(".bias") for n in on_adamw)
    assert len(on_muon) + len(on_adamw) == len(list(model.parameters()))  # every parameter, once


def test_the_schedule_warms_up_linearly_then_decays_on_a_cosine_to_min_lr():
    cfg = TrainConfig(learning_rate=1e-3, min_lr=1e-4, warmup_iters=9, lr_decay_iters=109)
    assert [lr_scale(cfg, step) for step in (0, 4, 8)] == pytest.approx([0.1, 0.5, 0.9])  # (step + 1) / 10
    assert lr_scale(cfg, 9) == pytest.approx(1.0)
    assert lr_scale(cfg, 34) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))  # a quarter through
    assert lr_scale(cfg, 59) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway: cos(pi / 2) = 0
    assert lr_scale(cfg, 109) == lr_scale(cfg, 500) == pytest.approx(0.1)  # min_lr / learning_rate, then flat
    assert lr_scale(dataclasses.replace(cfg, decay_lr=False), 4) == 1.0


def test_one_step_is_torch_muon_and_adamw_called_directly():
    torch.manual_seed(0)
    ours = GPT(SHAPE)
    theirs, before = copy.deepcopy(ours), copy.deepcopy(ours)
    optimizers = build_optimizers(with_gradients(ours), CFG, torch.device("cpu"))
    optimizers.parts["muon"].ns_dtype = torch.bfloat16  # as on a GPU: bit for bit torch.optim.Muon
    scale = lr_scale(dataclasses.replace(CFG, warmup_iters=10, lr_decay_iters=100), 3)  # in warmup: both peaks alike
    optimizers.set_lr_scale(scale)
    optimizers.update(torch.amp.GradScaler(enabled=False), ours.parameters(), grad_clip=0.0)

    with_gradients(theirs)
    named = list(theirs.named_parameters())
    matrices = [p for n, p in named if n.startswith("transformer.h.") and p.dim() == 2]
    rest = [p for n, p in named if not (n.startswith("transformer.h.") and p.dim() == 2)]
    torch.optim.Muon(matrices, lr=0.03 * scale, momentum=0.9, weight_decay=0.05).step()
    torch.optim.AdamW([{"params": [p for p in rest if p.dim() >= 2], "weight_decay": 0.05},
                       {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}],
                      lr=2e-3 * scale, betas=(CFG.beta1, CFG.beta2)).step()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(a, b), name
    assert not any(torch.equal(a, b) for a, b in zip(ours.parameters(), before.parameters()))  # every one moved


def test_muon_orthogonalises_in_float32_where_bfloat16_is_emulated():
    """A CPU without bfloat16 arithmetic runs Muon's iteration in float32. The iteration is torch's own,
    bit for bit in bfloat16 and to 1e-5 of float64's in float32; a step differs from torch.optim.Muon's
    by exactly the learning rate times the difference of the two iterations."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # Linux: what the CPU reports of itself, not torch's view of it
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "").split()
        wanted = torch.bfloat16 if "avx512_bf16" in flags or "amx_tile" in flags else torch.float32
        assert build_optimizers(GPT(SHAPE), CFG, torch.device("cpu")).parts["muon"].ns_dtype == wanted
    torch.manual_seed(0)
    start = GPT(SHAPE)
    ours, theirs = with_gradients(copy.deepcopy(start)), with_gradients(copy.deepcopy(start))
    matrices = lambda model: [p for n, p in model.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2]
    Muon(matrices(ours), torch.float32, lr=0.03, momentum=0.9, weight_decay=0.05).step()
    torch.optim.Muon(matrices(theirs), lr=0.03, momentum=0.9, weight_decay=0.05).step()
    ns = (3.4445, -4.775, 2.0315), 5, 1e-7  # torch.optim.Muon's defaults
    with torch.no_grad():
        for a, b in zip(matrices(ours), matrices(theirs)):
            update = a.grad.lerp(torch.zeros_like(a).lerp(a.grad, 0.1), 0.9)  # first step, nesterov
            ortho = orthogonalise(update[None], *ns)[0]  # a stack of one
            assert torch.equal(orthogonalise(update.bfloat16()[None], *ns)[0], _zeropower_via_newtonschulz(update, *ns))
            assert torch.allclose(ortho.double(), orthogonalise(update.double()[None], *ns)[0], atol=1e-5)
            lr = 0.03 * max(1, a.size(0) / a.size(1)) ** 0.5
            gap = -lr * (ortho - _zeropower_via_newtonschulz(update, *ns).float())
            assert torch.allclose(a - b, gap, atol=1e-6)


def test_adamw_alone_in_the_classic_recipe():
    model = GPT(gpt2_config(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=16))
    parts = build_optimizers(model, TrainConfig(optimizer="adamw"), torch.device("cpu")).parts
    assert list(parts) == ["adamw"]
    decayed, plain = parts["adamw"].param_groups
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() < 2 for p in plain["params"])
    assert plain["weight_decay"] == 0.0


def test_a_resume_keeps_the_configs_betas_weight_decay_and_momentum_over_the_saved_ones():
    model = with_gradients(GPT(SHAPE))
    saved = build_optimizers(model, CFG, torch.device("cpu"))
    saved.update(torch.amp.GradScaler(enabled=False), model.parameters(), grad_clip=0.0)
    changed = dataclasses.replace(CFG, beta2=0.9, weight_decay=0.0, muon_momentum=0.5)
    resumed = build_optimizers(model, changed, torch.device("cpu"))
    resumed.load_state_dict(saved.state_dict())
    assert all(g["betas"] == (CFG.beta1, 0.9) and g["weight_decay"] == 0.0 for g in resumed.parts["adamw"].param_groups)
    assert [(g["momentum"], g["weight_decay"]) for g in resumed.parts["muon"].param_groups] == [(0.5, 0.0)]
    assert resumed.state_dict()["adamw"]["state"].keys() == saved.state_dict()["adamw"]["state"].keys()  # the moments
