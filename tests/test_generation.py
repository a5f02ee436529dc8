"""Generation: the KV cache against the uncached path, and the sampling controls."""
import math
from pathlib import Path

import pytest
import torch

from sample import SampleText
from data.tokenizer import CharTokenizer, GPT2Tokenizer, load_gpt2_encoding
from model import GPT, GPTConfig, ModelError
from helpers import gpt2_config, run_main
from model.attention import rotate, rotation_tables
from model.decoding import Decoder, generation_cache, package_path, sample_next


MODERN = dict(pos_emb="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False, n_kv_head=2)


def tiny_model(block_size: int = 16, seed: int = 0, **options) -> GPT:
    torch.manual_seed(seed)
    return GPT(gpt2_config(block_size=block_size, vocab_size=40, n_layer=3, n_head=4, n_embd=32, **options)).eval()


@pytest.mark.parametrize("options", [{}, MODERN], ids=["learned", "rope"])
@pytest.mark.parametrize("block_size, prompt_len", [(16, 5), (17, 5), (16, 16), (16, 40), (2, 2), (1, 1)])
def test_cached_and_uncached_logits_agree_at_every_step_across_block_size(block_size, prompt_len, options):
    model = tiny_model(block_size, **options)
    prompt = torch.randint(0, 40, (3, prompt_len))  # longer than block_size: its last block_size tokens are read
    cached, uncached = Decoder(model, prompt, use_cache=True), Decoder(model, prompt, use_cache=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for step in range(4 * block_size + 3):  # several times block_size
            assert (cached.logits - uncached.logits).abs().max().item() < 1e-4, f"step {step}"
            next_id = sample_next(cached.logits, temperature=1.0, generator=generator)
            cached.push(next_id)
            uncached.push(next_id)
    if options:  # RoPE's cache rolls on: positions go past block_size, in as many slots
        assert cached.length == min(prompt_len, block_size) + 4 * block_size + 3 and cached.cache.slots <= block_size
    else:  # learned positions restart
        assert cached.length <= block_size


def test_uncached_learned_path_sees_exactly_the_policy_window():
    """The reference path re-runs the window: its logits equal a plain forward pass on it."""
    model = tiny_model(8)
    decoder = Decoder(model, torch.randint(0, 40, (1, 8)), use_cache=False)
    with torch.no_grad():
        decoder.push(torch.tensor([[3]]))  # 9 tokens do not fit: keep the last 4
        assert decoder.tokens.size(1) == 4
        logits, _ = model(decoder.tokens)
    assert torch.allclose(decoder.logits, logits[:, -1], atol=1e-6)


def banded_reference_logits(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """The last token's logits when every token of the whole sequence attends to its last
    block_size tokens: the explicit path, one layer at a time, with the band written here."""
    W, T = model.config.block_size, tokens.size(1)
    band = torch.tensor([[0 <= q - k < W for k in range(T)] for q in range(T)])  # (T, T)
    positions = torch.arange(T)
    x = model.transformer.wte(tokens)
    for block in model.transformer.h:
        attn, h = block.attn, block.norm_1(x)
        B = h.size(0)
        q = attn.q_norm(attn.q_proj(h).view(B, T, 4, 8)).transpose(1, 2)
        k = attn.k_norm(attn.k_proj(h).view(B, T, 2, 8)).transpose(1, 2)
        v = attn.v_proj(h).view(B, T, 2, 8).transpose(1, 2).repeat_interleave(2, dim=1)
        cos, sin = rotation_tables(positions, 8, model.config.rope_theta, q.dtype)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin).repeat_interleave(2, dim=1)
        scores = (q @ k.transpose(-2, -1) / 8**0.5).masked_fill(~band, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, 32)
        x = x + attn.o_proj(y)
        x = x + block.mlp(block.norm_2(x))
    return model.lm_head(model.transformer.norm_f(x))[:, -1]


@pytest.mark.parametrize("cropped_from", [None, 12])
def test_rope_generation_attends_to_the_last_block_size_tokens_at_every_layer(cropped_from):
    """Past block_size, each new token's logits are those of the whole sequence read with a
    sliding window of block_size at every layer: the cache rolls, and the uncached path
    re-reads n_layer * (block_size - 1) + 1 tokens. A model cropped to a shorter context
    (as fine-tuning does) slides the shorter window."""
    if cropped_from is None:
        model = tiny_model(6, **MODERN)
    else:
        model = tiny_model(cropped_from, **MODERN)
        model.crop_block_size(6)
    prompt = torch.randint(0, 40, (2, 4))
    with torch.no_grad():
        sequence = model.generate(prompt, 30, temperature=0)
        for use_cache in (True, False):
            decoder = Decoder(model, sequence[:, :6], use_cache=use_cache)
            for t in range(6, sequence.size(1)):
                assert torch.allclose(decoder.logits, banded_reference_logits(model, sequence[:, :t]), atol=1e-4)
                decoder.push(sequence[:, t : t + 1])


@pytest.mark.parametrize("options", [{}, MODERN], ids=["learned", "rope"])
def test_bfloat16_autocast_follows_float32_on_both_paths(options):
    """Under bfloat16 autocast (dtype=auto on hardware with bfloat16) both paths run, the RoPE
    tables meeting queries and keys in autocast's dtype, and the logits stay near float32's at every step."""
    model = tiny_model(8, **options)
    with torch.no_grad():  # sharp attention, which a key read from the wrong slot would change
        for projection in ("q_proj", "k_proj"):
            for block in model.transformer.h:
                getattr(block.attn, projection).weight.mul_(10)
    prompt = torch.randint(0, 40, (2, 3))

    def decoded(use_cache: bool, bfloat16: bool) -> torch.Tensor:  # (steps, B, V): the logits after each push
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            decoder = Decoder(model, prompt, use_cache=use_cache)
            steps = [decoder.logits]
            for _ in range(12):  # past block_size
                decoder.push(torch.tensor([[5], [7]]))
                steps.append(decoder.logits)
        return torch.stack(steps)

    reference = decoded(use_cache=False, bfloat16=False)  # float32, each step a plain forward pass
    for use_cache in (True, False):
        low = decoded(use_cache, bfloat16=True)
        assert low.dtype == torch.bfloat16 and (low.float() - reference).abs().max().item() < 0.01


@pytest.mark.parametrize("options", [{}, MODERN], ids=["learned", "rope"])
def test_greedy_tokens_identical_on_both_paths(options):
    model = tiny_model(16, **options)
    prompt = torch.randint(0, 40, (2, 3))
    fast = model.generate(prompt, 50, temperature=0, use_cache=True)
    slow = model.generate(prompt, 50, temperature=0, use_cache=False)
    assert fast.shape == (2, 53) and torch.equal(fast, slow)


def test_the_compiled_step_is_refused_off_the_cpu_and_cuda_before_anything_runs():
    """A model on the meta device, which holds no numbers, is refused as MPS would be: in one line."""
    model = tiny_model().to("meta")
    with pytest.raises(ModelError, match="runs on a CPU or a CUDA GPU, not meta; decode without compile"):
        model.generate(torch.zeros(1, 1, dtype=torch.long, device="meta"), 4, temperature=0, compile=True)


def test_temperature_zero_is_deterministic_whatever_the_seed():
    model = tiny_model()
    prompt = torch.randint(0, 40, (2, 4))
    outs = [model.generate(prompt, 10, temperature=0, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0][:, -1:], sample_next(model(outs[0][:, :-1])[0][:, -1], temperature=0))


def test_same_seed_same_batch_of_samples():
    model = tiny_model()
    prompt = torch.zeros(4, 1, dtype=torch.long)
    run = lambda seed: model.generate(prompt, 30, top_k=10, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def draw(logits: torch.Tensor, n: int = 2000, **kwargs) -> set[int]:
    generator = torch.Generator().manual_seed(0)
    batch = logits.expand(n, -1)
    return set(sample_next(batch, generator=generator, **kwargs)[:, 0].tolist())


def test_top_k_never_leaves_the_k_most_likely():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9, -1.0, 2.8]])
    assert draw(logits, top_k=3) == {1, 3, 5}
    assert draw(logits, top_k=1) == {1}
    assert draw(logits, top_k=100) == set(range(6))
    assert len(draw(torch.zeros(1, 6), top_k=2)) == 2  # k tokens even when all are tied


def test_padding_ids_are_never_candidates():
    logits = torch.tensor([[0.0, 1.0, 0.5, 9.0, 8.0]])  # ids 3 and 4 pad the vocabulary, and are the likeliest
    assert draw(logits, vocab_limit=3) == {0, 1, 2}
    assert draw(logits, vocab_limit=3, temperature=0) == {1}
    assert draw(logits, vocab_limit=3, top_k=1) == {1}


@pytest.mark.parametrize("temperature", [1e-30, 1e-50, 1e-300])
def test_a_tiny_temperature_is_greedy_not_nan(temperature):
    logits = torch.randn(4, 40) * 10
    generator = torch.Generator().manual_seed(0)
    picked = sample_next(logits, temperature=temperature, top_k=5, top_p=0.9, generator=generator)
    assert torch.equal(picked, logits.argmax(dim=-1, keepdim=True))


@pytest.mark.parametrize("temperature", [-1, math.nan])
def test_a_negative_temperature_is_refused_not_taken_for_greedy(temperature):
    with pytest.raises(ModelError, match=rf"^temperature={temperature} must be 0 \(greedy\) or more$"):
        sample_next(torch.randn(2, 40), temperature=temperature)


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    logits = probs.log()
    assert draw(logits, top_p=0.45) == {1}  # the top token alone already has 0.5
    assert draw(logits, top_p=1e-50) == {1}  # 0 in float32, which every token's mass ranked above reaches
    assert draw(logits, top_p=0.7) == {1, 2}  # 0.5 + 0.3 >= 0.7
    assert draw(logits, top_p=0.9) == {1, 2, 3}  # 0.95 >= 0.9
    assert draw(logits, top_p=1.0) == {0, 1, 2, 3}
    assert draw(logits, top_p=0.9, top_k=2) == {1, 2}  # both filters apply


def stream(tokenizer, ids: list[int], stops: list[str]) -> tuple[str, str]:
    """What sample.py prints for these tokens, chunk by chunk, and the sample's final text."""
    sample, printed = SampleText(tokenizer, stops), ""
    for token in ids:
        sample.add(token)
        printed += sample.new_text()
    sample.finish()
    return printed + sample.new_text(), sample.text


def test_stop_strings_cut_the_text_where_they_appear():
    tok = CharTokenizer.from_text("abcdefghlrt\n ")
    assert stream(tok, tok.encode("abc de\nab\n\nlater"), ["\n\n", "fg"]) == ("abc de\nab", "abc de\nab")
    other = SampleText(tok, ["fg"])
    for ch in "abcdefgh":
        other.add(tok.encode(ch)[0])
    assert other.done and other.text == "abcde"


def test_streamed_text_holds_back_a_possible_stop_until_it_is_decided():
    tok = CharTokenizer.from_text("ab\n")
    sample = SampleText(tok, ["\n\n"])
    sample.add(tok.encode("a")[0])
    sample.add(tok.encode("\n")[0])
    assert sample.new_text() == "a"  # the newline may start the stop string
    sample.add(tok.encode("b")[0])
    assert sample.new_text() == "\nb"


def test_end_of_text_always_stops_a_gpt2_sample():
    tok = GPT2Tokenizer()
    sample = SampleText(tok, [])
    for token in tok.encode("Hello world") + [tok.eot_token] + tok.encode(" more"):
        sample.add(token)
    assert sample.done and sample.text == "Hello world"


def test_bpe_tokens_that_end_one_character_and_start_the_next():
    """b'\\xb6\\xe6' finishes one 时 and starts the next: no token boundary is a character's."""
    encoding = load_gpt2_encoding()
    ids = [encoding.encode_single_token(b) for b in (b"\xe6", b"\x97", b"\xb6\xe6", b"\x97", b"\xb6")]
    assert stream(GPT2Tokenizer(), ids, []) == ("时时", "时时")
    assert stream(GPT2Tokenizer(), ids[:-1], []) == ("时\ufffd", "时\ufffd")  # cut short: as tiktoken decodes it
    assert GPT2Tokenizer().decode(ids[:-1]) == "时\ufffd"


@pytest.mark.parametrize("stop", ["日本", "🙂", "語 a", "\n\n", "ü", "end", "not in the text"])
def test_streamed_bpe_text_with_multibyte_characters_ends_at_the_stop(stop):
    """Tokens that end inside a UTF-8 character are held until it is whole; reference:
    the whole token list decoded at once and cut at the first stop."""
    tok = GPT2Tokenizer()
    text = "Hi 日本語 and ünïcödé 🙂🙂 text, 日本 again\n\nthe end"
    ids = tok.encode(text)
    assert any(tok.decode([i]).endswith("\ufffd") for i in ids)  # some tokens really split a character
    whole = tok.decode(ids)
    expected = whole[: whole.find(stop)] if stop in whole else whole
    assert stream(tok, ids, [stop]) == (expected, expected)


@pytest.mark.slow
def test_ctrl_c_prints_each_sample_of_a_batch_so_far(trained_out, monkeypatch, capsys):
    import sample

    flags = [f"--out_dir={trained_out}", "--num_samples=2", "--seed=3", "--prompt=the"]
    sample.main([*flags, "--max_new_tokens=10"])
    ten_tokens_each = capsys.readouterr().out
    calls, add = 0, SampleText.add

    def add_until_ctrl_c(self, token):
        nonlocal calls
        calls += 1
        if calls == 21:  # the first sample's 11th token: each sample holds 10
            raise KeyboardInterrupt
        add(self, token)

    monkeypatch.setattr(SampleText, "add", add_until_ctrl_c)
    result = run_main(sample.main, *flags, "--max_new_tokens=1000")
    assert result.returncode == 130 and result.stderr.strip() == "interrupted"
    assert capsys.readouterr().out == ten_tokens_each


def test_a_package_is_named_by_the_models_code_too(tmp_path, monkeypatch):
    """An edited model/ is compiled anew, never served by the package of the code before the edit."""
    import shutil

    import model.decoding as decoding

    model = GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=1, n_head=2, n_embd=16)).eval()
    cache = generation_cache(model, torch.zeros(1, 1, dtype=torch.long), 8, compile=True)
    before = package_path(model, cache)
    copy = shutil.copytree(Path(decoding.__file__).parent, tmp_path / "model")
    monkeypatch.setattr(decoding, "__file__", str(copy / "decoding.py"))
    assert package_path(model, cache) == before  # the same code
    (copy / "gpt.py").write_text((copy / "gpt.py").read_text().replace("return self.lm_head(", "return -self.lm_head("))
    assert package_path(model, cache) != before


def test_the_compile_cache_of_a_user_with_no_name_is_named_as_inductor_names_it(monkeypatch):
    import getpass
    import os

    from model.decoding import inductor_cache

    def no_passwd_entry():
        raise KeyError("getpwuid(): uid not found")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    assert inductor_cache().name == f"torchinductor_uid_{os.getuid()}"
