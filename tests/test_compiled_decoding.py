"""The compiled decoding step (AOTInductor over the fixed-shape KV cache) picks the tokens eager
decoding picks, past block_size under both context policies, and is compiled once per model."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

import model.decoding as decoding
from helpers import REPO, gpt2_config
from model import GPT, GPTConfig, ModelError
from model.decoding import KVCache, compiled_step, generation_cache, package_path
from model.weights import with_weights

pytestmark = pytest.mark.slow  # compiling takes tens of seconds on a CPU

MODERN = dict(pos_emb="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False)
BLOCK = 16
# the RoPE case is compiled as sample.py compiles by default, its matrix kernels timed and picked: every matrix
# 32 x 32 (vocabulary and MLP included), so the kernels are timed for one shape; the learned case has GQA
LEARNED, ROPE = dict(n_kv_head=2, vocab_size=40), dict(MODERN, bias=False, mlp_hidden=32, vocab_size=32)


@pytest.mark.parametrize("shape", [LEARNED, ROPE], ids=["learned", "rope"])
def test_compiled_decoding_picks_the_eager_tokens_past_block_size(shape, capfd, monkeypatch):
    """5 * block_size steps: the learned window is cut and re-encoded, the RoPE cache rolls over four
    times. The package holds the weights: once one changes, the model gets a package of its own."""
    autotune = shape is ROPE  # the suite turns it off elsewhere
    monkeypatch.setenv("TORCHINDUCTOR_MAX_AUTOTUNE", "1" if autotune else "0")
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=BLOCK, n_layer=2, n_head=4, n_embd=32, **shape)).eval()
    vocab = model.config.vocab_size
    short, long = torch.randint(0, vocab, (2, 5)), torch.randint(0, vocab, (2, 3 * BLOCK))
    cache = generation_cache(model, short, 5 * BLOCK, compile=True)
    package = package_path(model, cache)  # in the suite's compile cache (conftest.py), not the user's
    assert package_path(model, generation_cache(model, long, 5 * BLOCK, compile=True)) == package
    load_step, calls = decoding.compiled_step, []

    def counted(*args):  # the compiled step, each call counted: generation runs it, not the eager one
        step = load_step(*args)
        return lambda *inputs: (calls.append(1), step(*inputs))[1]

    monkeypatch.setattr(decoding, "compiled_step", counted)
    written = None
    for prompt in (short, long):
        eager = model.generate(prompt, 5 * BLOCK, temperature=0)
        calls.clear()
        assert torch.equal(model.generate(prompt, 5 * BLOCK, temperature=0, compile=True), eager)
        assert len(calls) >= 2 * BLOCK  # every step through the cache (the learned window's re-encodings are not)
        written = written or package.stat().st_mtime_ns
    assert package.stat().st_mtime_ns == written  # compiled once: one package served both prompts
    assert capfd.readouterr().err == ""  # compiling says nothing (sample.py prints its time)
    monkeypatch.setenv("TORCHINDUCTOR_MAX_AUTOTUNE", "0" if autotune else "1")
    assert package_path(model, cache) != package  # compiled the other way: a package of its own
    monkeypatch.setenv("TORCHINDUCTOR_MAX_AUTOTUNE", "1" if autotune else "0")
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1  # one weight changed: not that package any more
    assert not package_path(model, cache).exists()


def test_the_compiled_step_with_int8_weights_gives_the_eager_logits():
    """int8 weights (aten's int8 kernel, exported into the package) through the compiled step: at each step of
    3 * block_size, fed eager's greedy pick, its logits are eager's to bfloat16's precision. Free-running tokens
    would not do: a reordered bfloat16 sum can flip a near-tie, and every token after it then differs."""
    torch.manual_seed(0)
    config = GPTConfig(block_size=BLOCK, vocab_size=40, n_layer=2, n_head=4, n_embd=64, n_kv_head=2, **MODERN)
    model = with_weights(GPT(config).eval(), "int8")
    prompt = torch.randint(0, 40, (1, 5))
    cache = generation_cache(model, prompt, 3 * BLOCK, compile=True)
    step = compiled_step(model, cache)
    with torch.inference_mode():
        logits = model.next_token_logits(prompt, cache, torch.arange(5))  # (1, V): the prefill, eager
        for t in range(5, 5 + 3 * BLOCK):
            idx, positions = logits.argmax(-1, keepdim=True), torch.tensor([t])  # (1, 1), (1,)
            eager = model.next_token_logits(idx, KVCache(*(x.clone() for x in cache.tensors())), positions)
            logits = step(idx, cache, positions)
            assert (logits.float() - eager.float()).abs().max() < 0.02 * eager.float().abs().max()


def test_a_damaged_package_is_removed_with_one_line_that_says_to_run_again():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=BLOCK, vocab_size=40, n_layer=1, n_head=2, n_embd=16)).eval()
    cache = generation_cache(model, torch.zeros(1, 1, dtype=torch.long), 8, compile=True)
    package = package_path(model, cache)  # in the suite's compile cache (conftest.py)
    package.parent.mkdir(parents=True, exist_ok=True)
    package.write_bytes(b"PK\x03\x04 cut short")  # the start of a zip archive, as a full disk leaves it
    with pytest.raises(ModelError, match=r"the compiled decoding step .* was damaged .* run again to compile it"):
        compiled_step(model, cache)
    assert not package.exists()


def test_a_package_is_damaged_when_its_zip_says_so_not_when_it_cannot_be_opened(tmp_path):
    """Damaged (removed by compiled_step): not a zip, an entry that fails its CRC, or a changed header that makes
    zipfile raise what it raises (here RuntimeError: an entry marked encrypted). A package that cannot be opened
    (gone, no right to read it) is not known to be, and is kept."""
    package = tmp_path / "step.pt2"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("data/step.so", b"\x7fELF" + bytes(range(256)) * 8)
    whole = package.read_bytes()
    assert not decoding.damaged(package) and not decoding.damaged(tmp_path / "gone.pt2")
    flipped, encrypted = bytearray(whole), bytearray(whole)
    flipped[whole.index(b"\x7fELF") + 10] ^= 1  # a byte of the entry
    encrypted[whole.rindex(b"PK\x01\x02") + 8] |= 1  # the central directory's flags: bit 0, encrypted
    for changed in (whole[: len(whole) // 2], bytes(flipped), bytes(encrypted)):
        package.write_bytes(changed)
        assert decoding.damaged(package)


COMPILE_ONE = """
import sys
import torch
from model import GPT, GPTConfig, ModelError
from model.decoding import compiled_step, generation_cache
torch.manual_seed(0)
model = GPT(GPTConfig(block_size=8, vocab_size=40, n_layer=1, n_head=2, n_embd=16)).eval()
try:
    compiled_step(model, generation_cache(model, torch.zeros(1, 1, dtype=torch.long), 4, compile=True))
except ModelError as e:
    print(e)
if "torch._dynamo" in sys.modules:  # compiling imports it; loading a package must not (over a second)
    print("compiled")
"""


def test_a_read_only_compile_cache_is_one_line_that_names_it(tmp_path):
    """Before any compiling when the step is to be compiled, and when a damaged package cannot be removed; a sound
    package loads from it. A read-only bind mount: root writes through mere permissions."""
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    mount = f"mount --bind {cache} {cache} && mount -o remount,bind,ro {cache}"
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "sh", "-c", mount]).returncode != 0:
        pytest.skip("needs unshare -m and the right to mount (root)")

    def run(read_only: bool, **more_env: str) -> str:
        command = [sys.executable, "-c", COMPILE_ONE]
        if read_only:
            command = ["unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "sh", *command]
        return subprocess.run(command, cwd=REPO, env={**env, **more_env}, capture_output=True, text=True,
                              check=True).stdout

    unwritable = f"cannot write the compile cache {cache}/smallgpt-decoding (Read-only file system); set " \
                 "TORCHINDUCTOR_CACHE_DIR to a writable folder, or decode without compiling\n"
    assert run(read_only=True) == unwritable
    assert run(read_only=False) == "compiled\n"  # its package written
    assert run(read_only=True) == ""  # loaded, nothing written, nothing compiled
    package = next(cache.glob("smallgpt-decoding/*.pt2"))
    # a sound package that cannot be unpacked (no temporary folder) is kept, not taken for a damaged one
    unpacked_nowhere = run(read_only=False, TMPDIR=str(tmp_path / "missing"))
    assert unpacked_nowhere.startswith(f"could not load the compiled decoding step {package} (")
    assert unpacked_nowhere.endswith("); decode without compiling, or remove it to compile it anew\n")
    assert unpacked_nowhere.count("\n") == 1
    assert package.exists()
    package.write_bytes(b"PK\x03\x04 cut short")  # damaged, and not to be removed from a read-only cache
    assert run(read_only=True) == unwritable
