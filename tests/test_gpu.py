"""The CUDA paths against the CPU as reference: the flash kernel, both optimizers (fused AdamW, Muon in
bfloat16); and the compiled decoding step's CUDA graphs against eager decoding. Skipped where no GPU is; on a GPU
machine: python -m pytest tests/test_gpu.py."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from config.settings import TrainConfig
from model import GPT, GPTConfig
from model.config import GPT2_SHAPE
from model.weights import with_weights

from training.optimizer import build_optimizers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")
MODERN = dict(pos_emb="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False, n_kv_head=2)


@pytest.fixture(autouse=True)
def full_float32():
    """Float32 matrix products in float32, not TF32: the CPU is the reference."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_the_flash_kernel_in_bfloat16_computes_the_attention_formula():
    """Forced onto the flash kernel (an error if it cannot take these inputs, GQA included), the model's
    logits in bfloat16 autocast stay within bfloat16's rounding of the explicit formula in float32."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=256, vocab_size=64, n_layer=2, n_head=4, n_embd=128, **MODERN)).eval()
    idx = torch.randint(0, 64, (4, 256))
    explicit = copy.deepcopy(model)
    for block in explicit.transformer.h:
        block.attn.use_sdpa = False
    with torch.no_grad():
        reference = explicit(idx)[0]  # (B, T, V), float32 on the CPU
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION), torch.autocast("cuda", dtype=torch.bfloat16):
            flash = model.to(CUDA)(idx.to(CUDA))[0]
    assert relative_error(flash.float().cpu(), reference) < 2e-2


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_training_steps_on_cuda_follow_the_cpu(optimizer):
    """Five steps of the recipe's optimizers (Muon orthogonalising in bfloat16 on both, fused AdamW on CUDA)
    on one batch: the CUDA model's losses and weights follow the CPU's."""
    torch.manual_seed(0)
    cfg = TrainConfig(optimizer=optimizer, learning_rate=3e-3)
    cpu_model = GPT(GPTConfig(block_size=64, vocab_size=50, n_layer=2, n_head=4, n_embd=64, **MODERN))
    cuda_model = copy.deepcopy(cpu_model).to(CUDA)
    idx = torch.randint(0, 50, (8, 65))
    losses = []  # per step: the CPU's, then CUDA's
    for model, device in ((cpu_model, torch.device("cpu")), (cuda_model, CUDA)):
        optimizers = build_optimizers(model, cfg, device)
        if "muon" in optimizers.parts:
            optimizers.parts["muon"].ns_dtype = torch.bfloat16  # a CPU without bfloat16 would use float32
        x, y = idx[:, :-1].to(device), idx[:, 1:].to(device)  # (B, T) each
        losses.append([])
        for _ in range(5):
            loss = model(x, y)[1]
            loss.backward()
            optimizers.update(torch.amp.GradScaler(enabled=False), model.parameters(), grad_clip=0.0)
            losses[-1].append(loss.item())
    cpu_losses, cuda_losses = losses
    assert cuda_losses == pytest.approx(cpu_losses, abs=2e-3)
    assert cuda_losses[-1] < cuda_losses[0] - 0.1  # it learned
    for (name, a), b in zip(cpu_model.named_parameters(), cuda_model.parameters()):
        assert relative_error(b.detach().cpu(), a.detach()) < 2e-2, name


@pytest.mark.parametrize("shape", [GPT2_SHAPE, MODERN], ids=["learned", "rope"])
def test_cuda_graphed_decoding_picks_the_eager_tokens_past_block_size(shape, tmp_path, monkeypatch):
    """The step compiled for CUDA graphs, float32, greedy, 5 * block_size steps (the learned window cut and
    re-encoded, the RoPE cache rolling over), two prompts and so two caches: the eager step's tokens."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=4, n_embd=32, **shape)).to(CUDA).eval()
    for prompt in (torch.randint(0, 40, (2, 5)), torch.randint(0, 40, (2, 48))):
        eager = model.generate(prompt.to(CUDA), 80, temperature=0)
        assert torch.equal(model.generate(prompt.to(CUDA), 80, temperature=0, compile=True), eager)


def test_cuda_graphed_decoding_with_int8_weights_agrees_with_float32():
    """int8 weight-only (Int8Linear) through the CUDA-graphed step: the greedy tokens of a model whose logits
    have clear winners mostly match float32's eager ones."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=64, n_layer=2, n_head=4, n_embd=128, **MODERN)).to(CUDA).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # sharp logits: ties that int8 rounding could flip are rare
    prompt = torch.randint(0, 64, (1, 8), device=CUDA)
    reference = model.generate(prompt, 100, temperature=0)
    with_weights(model, "int8")  # quantised in place, after the reference
    int8 = model.generate(prompt, 100, temperature=0, compile=True)
    assert (int8 == reference).float().mean() > 0.9


def test_the_logits_of_one_batch_agree_on_cuda_and_cpu_in_float32():
    """The plain forward pass (SDPA's CUDA kernels, float32) against the CPU's."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=128, vocab_size=64, n_layer=2, n_head=4, n_embd=64, **MODERN)).eval()
    idx = torch.randint(0, 64, (2, 128))
    with torch.no_grad():
        reference = model(idx)[0]
        logits = copy.deepcopy(model).to(CUDA)(idx.to(CUDA))[0].cpu()
    assert relative_error(logits, reference) < 1e-5
    assert F.softmax(logits, -1).argmax(-1).eq(F.softmax(reference, -1).argmax(-1)).float().mean() > 0.99
