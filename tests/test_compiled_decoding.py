"""The compiled decoding step (AOTInductor over the fixed-shape KV cache) picks the tokens eager
decoding picks, past block_size under both context policies, and is compiled once per model."""
import pytest
import torch

from model import GPT, GPTConfig
from model.compiled_decoding import package_path
from model.decoding import generation_cache

pytestmark = pytest.mark.slow  # compiling takes tens of seconds on a CPU

MODERN = dict(pos_emb="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False, n_kv_head=2)
BLOCK = 16


@pytest.fixture(autouse=True)
def compile_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # not the user's cache
    return tmp_path / "smallgpt-decoding"


@pytest.mark.parametrize("shape", [{}, MODERN], ids=["learned", "rope"])
def test_compiled_decoding_picks_the_eager_tokens_past_block_size(shape, compile_cache):
    """5 * block_size steps: the learned window is cut and re-encoded, the RoPE cache rolls over four
    times. The package holds the weights: once one changes, the model gets a package of its own."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=BLOCK, vocab_size=40, n_layer=2, n_head=4, n_embd=32, **shape)).eval()
    for prompt in (torch.randint(0, 40, (2, 5)), torch.randint(0, 40, (2, 3 * BLOCK))):
        eager = model.generate(prompt, 5 * BLOCK, temperature=0)
        assert torch.equal(model.generate(prompt, 5 * BLOCK, temperature=0, compile=True), eager)
    assert len(list(compile_cache.glob("*.pt2"))) == 1  # one package served both prompts
    cache = generation_cache(model, prompt, 5 * BLOCK, compile=True)
    assert package_path(model, cache).exists()
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1  # one weight changed: not that package any more
    assert not package_path(model, cache).exists()
