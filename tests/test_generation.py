"""Generation: the KV cache against the uncached path, and the sampling controls."""
import pytest
import torch

from core.generation import SampleText
from data.tokenizer import CharTokenizer, GPT2Tokenizer
from model import GPT, GPTConfig
from model.decoding import Decoder
from model.sampling import sample_next


def tiny_model(block_size: int = 16, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=block_size, vocab_size=40, n_layer=3, n_head=4, n_embd=32)).eval()


@pytest.mark.parametrize("block_size", [16, 17])
def test_cached_and_uncached_logits_agree_at_every_step_across_block_size(block_size):
    model = tiny_model(block_size)
    prompt = torch.randint(0, 40, (3, 5))
    cached, uncached = Decoder(model, prompt, use_cache=True), Decoder(model, prompt, use_cache=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for step in range(3 * block_size):  # the window is cut and re-encoded several times
            assert (cached.logits - uncached.logits).abs().max().item() < 1e-4, f"step {step}"
            next_id = sample_next(cached.logits, temperature=1.0, generator=generator)
            cached.push(next_id)
            uncached.push(next_id)
    assert cached.cache.length == cached.window.size(1) <= block_size


def test_uncached_path_sees_exactly_the_policy_window():
    """The reference path re-runs the window: its logits equal a plain forward pass on it."""
    model = tiny_model(8)
    decoder = Decoder(model, torch.randint(0, 40, (1, 8)), use_cache=False)
    with torch.no_grad():
        decoder.push(torch.tensor([[3]]))  # 9 tokens do not fit: keep the last 4
        assert decoder.window.size(1) == 4
        logits, _ = model(decoder.window)
    assert torch.allclose(decoder.logits, logits[:, -1], atol=1e-6)


def test_greedy_tokens_identical_on_both_paths():
    model = tiny_model(16)
    prompt = torch.randint(0, 40, (2, 3))
    fast = model.generate(prompt, 50, temperature=0, use_cache=True)
    slow = model.generate(prompt, 50, temperature=0, use_cache=False)
    assert fast.shape == (2, 53) and torch.equal(fast, slow)


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


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    logits = probs.log()
    assert draw(logits, top_p=0.45) == {1}  # the top token alone already has 0.5
    assert draw(logits, top_p=0.7) == {1, 2}  # 0.5 + 0.3 >= 0.7
    assert draw(logits, top_p=0.9) == {1, 2, 3}  # 0.95 >= 0.9
    assert draw(logits, top_p=1.0) == {0, 1, 2, 3}
    assert draw(logits, top_p=0.9, top_k=2) == {1, 2}  # both filters apply


def test_stop_strings_cut_the_text_where_they_appear():
    tok = CharTokenizer.from_text("abcdefghlrt\n ")
    sample = SampleText(tok, ["\n\n", "fg"])
    streamed = ""
    for ch in "abc de\nab\n\nlater":
        sample.add(tok.encode(ch)[0])
        streamed += sample.new_text()
    sample.finish()
    streamed += sample.new_text()
    assert sample.text == streamed == "abc de\nab"
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
