"""eval.py's numbers against a plain forward pass, the loss log across resume, loss.png, the surprise page."""
from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.scoring import score_tokens, summarize
from data.tokenizer import CharTokenizer, GPT2Tokenizer, load_gpt2_encoding, tokenizer_from_description
from helpers import gpt2_config, REPO, TINY_TRAIN_FLAGS, assert_one_line_error, run_command, run_script
from model import GPT, GPTConfig

TEXT = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 8


def reference_log_probs(model: GPT, tokens: list[int]) -> torch.Tensor:
    """log p(. | context) for tokens 1..N-1 (N-1, V): a plain forward pass per non-overlapping window."""
    T, rows = model.config.block_size, []
    with torch.no_grad():
        for s in range(0, len(tokens) - 1, T):
            logits, _ = model(torch.tensor([tokens[s : s + T]]))
            rows.append(torch.log_softmax(logits[0].double(), dim=-1)[: len(tokens) - 1 - s])  # (t, V)
    return torch.cat(rows)


def reference_total_loss(model: GPT, tokens: list[int]) -> float:
    log_probs = reference_log_probs(model, tokens)
    return -log_probs[torch.arange(len(tokens) - 1), torch.tensor(tokens[1:])].sum().item()


@pytest.mark.parametrize("kind", ["char", "gpt2"])
def test_bits_per_byte_matches_an_independent_computation(kind):
    text = TEXT + "Ünïcödé — ✓\n"  # multi-byte characters: bytes differ from characters
    tok = CharTokenizer.from_text(text) if kind == "char" else GPT2Tokenizer()
    tokens = tok.encode(text)
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=24, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=16)).eval()
    scores = score_tokens(model, np.array(tokens), batch_size=5)
    summary = summarize(scores.losses, np.array(tokens), tok.token_bytes())
    if kind == "char":
        predicted_bytes = len(text[1:].encode("utf-8"))
    else:
        predicted_bytes = len(load_gpt2_encoding().decode_bytes(tokens[1:]))
    expected = reference_total_loss(model, tokens) / predicted_bytes / math.log(2)
    assert summary.tokens == len(tokens) - 1 and summary.bytes == predicted_bytes
    assert abs(summary.bits_per_byte - expected) / expected < 1e-6


def test_char_model_on_ascii_bits_per_byte_is_loss_over_ln2():
    tok = CharTokenizer.from_text(TEXT)
    tokens = np.array(tok.encode(TEXT))
    torch.manual_seed(1)
    model = GPT(gpt2_config(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=1, n_embd=8)).eval()
    summary = summarize(score_tokens(model, tokens, 3).losses, tokens, tok.token_bytes())
    assert summary.bits_per_byte == pytest.approx(summary.loss / math.log(2), rel=1e-12)
    assert summary.perplexity == pytest.approx(math.exp(summary.loss))


def test_a_text_shorter_than_the_context_is_read_in_one_window_of_its_length():
    """A model of a long context (Llama's 131,072, say) scores a short text at the text's cost, not the context's."""
    tok = CharTokenizer.from_text(TEXT)
    tokens = np.array(tok.encode(TEXT[:12]))
    torch.manual_seed(1)
    model = GPT(GPTConfig(block_size=4096, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16)).eval()
    windows = []
    model.register_forward_pre_hook(lambda module, args: windows.append(tuple(args[0].shape)))
    losses = score_tokens(model, tokens, batch_size=8).losses
    assert windows == [(1, 11)]
    assert losses.sum() == pytest.approx(reference_total_loss(model, tokens.tolist()), rel=1e-6)


def test_a_diverged_models_perplexity_is_infinite_not_an_overflow():
    summary = summarize(np.full(3, 800.0), np.zeros(4, dtype=np.int64), np.ones(1, dtype=np.int64))
    assert summary.loss == 800.0 and summary.perplexity == math.inf  # e ** 800 is past float64's range


@pytest.fixture(scope="module")
def trained(char_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-run")
    run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={char_dataset}", f"--out_dir={out}")
    return out


@pytest.mark.slow
def test_eval_py_reports_the_validation_split(trained, char_dataset):
    result = run_script("eval.py", f"--out_dir={trained}", "--json=true", "--batch_size=3")
    report = json.loads(result.stdout)
    checkpoint = torch.load(trained / "ckpt.pt", weights_only=True)
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict(checkpoint["model"])
    model.eval()
    val = np.fromfile(char_dataset / "val.bin", dtype=np.uint16).tolist()
    total = reference_total_loss(model, val)
    tokenizer = tokenizer_from_description(checkpoint["tokenizer"], Path("ckpt.pt"))
    assert report["tokens"] == len(val) - 1  # every token after the first is predicted
    assert report["bytes"] == sum(len(tokenizer.decode_bytes([t])) for t in val[1:])  # end-of-text holds none
    assert report["loss"] == pytest.approx(total / (len(val) - 1), rel=1e-6)
    assert report["bits_per_byte"] == pytest.approx(total / report["bytes"] / math.log(2), rel=1e-6)
    assert "batch/s" in result.stderr  # the progress bar
    first = json.loads(run_script("eval.py", f"--out_dir={trained}", "--json=true", "--max_tokens=100").stdout)
    assert first["tokens"] == 100 and first["loss"] == pytest.approx(reference_total_loss(model, val[:101]) / 100,
                                                                     rel=1e-6)
    said = run_script("eval.py", f"--out_dir={trained}", "--max_tokens=100").stdout
    assert f"100 tokens predicted (the first of {len(val) - 1:,}: --max_tokens), " in said


@pytest.mark.slow
def test_a_text_of_two_characters_is_one_token_of_one_byte(trained, tmp_path):
    (tmp_path / "two.txt").write_text("th")
    result = run_script("eval.py", f"--out_dir={trained}", f"--text_file={tmp_path / 'two.txt'}")
    assert result.stdout.startswith(f"{trained / 'ckpt.pt'} on {tmp_path / 'two.txt'}: 1 token predicted, 1 byte\n"), \
        result.stdout  # which model scored it, too


@pytest.mark.slow
def test_a_diverged_model_is_scored_with_numbers_json_can_hold(trained, tmp_path):
    checkpoint = torch.load(trained / "ckpt.pt", weights_only=True)
    head = checkpoint["model"]["lm_head.weight"].clone()
    checkpoint["model"]["lm_head.weight"] = head * 1e6  # logits in the millions: a loss far past e's float64 range
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    printed = run_script("eval.py", f"--out_dir={tmp_path}", "--json=true").stdout
    report = json.loads(printed)
    assert "Infinity" not in printed and report["loss"] > 1000 and report["perplexity"] is None  # strict JSON
    assert "perplexity inf," in run_script("eval.py", f"--out_dir={tmp_path}").stdout
    checkpoint["model"]["lm_head.weight"] = torch.full_like(head, math.nan)  # weights broken outright
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    printed = run_script("eval.py", f"--out_dir={tmp_path}", "--json=true").stdout
    assert "NaN" not in printed and json.loads(printed)["loss"] is None


@pytest.mark.slow
def test_surprise_page_holds_the_forward_pass_losses(trained, tmp_path):
    text = "Shall I compare thee to a summer's day?\nThou art more lovely"
    (tmp_path / "in.txt").write_text(text)
    page = tmp_path / "surprise.html"
    run_script("eval.py", f"--out_dir={trained}", f"--text_file={tmp_path / 'in.txt'}", f"--surprise={page}")
    data = json.loads(re.search(r"const data = (.*?);\n", page.read_text()).group(1))
    checkpoint = torch.load(trained / "ckpt.pt", weights_only=True)
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict(checkpoint["model"])
    tok = tokenizer_from_description(checkpoint["tokenizer"], Path("ckpt.pt"))
    log_probs = reference_log_probs(model, tok.encode(text))
    assert "".join(t["text"] for t in data["tokens"]) == text
    assert data["tokens"][0]["loss"] is None
    for i, t in enumerate(data["tokens"][1:]):
        assert t["loss"] == pytest.approx(-log_probs[i, tok.encode(text[i + 1])[0]].item(), abs=1e-4)
        guesses = log_probs[i].topk(5).indices.tolist()
        assert [g for g, _ in t["top"]] == [tok.decode([g]) for g in guesses]


@pytest.mark.slow
def test_the_surprise_page_replaces_only_an_earlier_one(trained, tmp_path):
    (tmp_path / "in.txt").write_text("Shall I compare thee")
    mine, page = tmp_path / "mine.html", tmp_path / "surprise.html"
    mine.write_text("<html>my own notes</html>")
    args = [f"--out_dir={trained}", f"--text_file={tmp_path / 'in.txt'}"]
    assert_one_line_error(run_command("eval.py", *args, f"--surprise={mine}"), "is a page eval.py did not write",
                          "choose another --surprise")
    assert mine.read_text() == "<html>my own notes</html>"
    run_script("eval.py", *args, f"--surprise={page}")
    page.write_text(page.read_text() + "<!-- earlier -->")
    run_script("eval.py", *args, f"--surprise={page}")  # an earlier page of eval.py's: replaced
    assert "const data = " in page.read_text() and "<!-- earlier -->" not in page.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("content, fragment", [(b"", "is empty"), (b"ok \xff\xfe", "not UTF-8 (invalid byte at offset 3)")])
def test_bad_eval_input_is_a_one_line_error(trained, tmp_path, content, fragment):
    (tmp_path / "bad.txt").write_bytes(content)
    assert_one_line_error(run_command("eval.py", f"--out_dir={trained}", f"--text_file={tmp_path / 'bad.txt'}"), fragment)


@pytest.mark.slow
def test_a_dataset_recorded_relative_to_another_folder_is_named_as_such(trained, tmp_path):
    checkpoint = torch.load(trained / "ckpt.pt", weights_only=True)
    checkpoint["config"]["dataset"] = "mydata/plays"  # as given to a train.py run in another folder
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    assert_one_line_error(run_command("eval.py", f"--out_dir={tmp_path}"),
                          "the checkpoint's dataset, mydata/plays from the folder train.py ran in, is not found from "
                          "here; run eval.py there, or evaluate a text with --text_file=FILE")
    checkpoint["config"]["dataset"] = str(tmp_path / "removed")  # a dataset folder since deleted
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    assert_one_line_error(run_command("eval.py", f"--out_dir={tmp_path}"),
                          f"the checkpoint's dataset: {tmp_path / 'removed'}/meta.json not found; make the dataset "
                          f"with python data/prepare.py; or evaluate a text with --text_file=FILE")


@pytest.mark.slow
def test_loss_png_is_a_real_picture(trained):
    image = np.asarray(Image.open(trained / "loss.png").convert("RGB"), dtype=int)  # (H, W, 3)
    assert 300 <= image.shape[0] <= 1000 and 500 <= image.shape[1] <= 1400
    # matplotlib's tab:blue train curve, tab:orange val curve and tab:red star for the best val point
    for curve, rgb in (("train", (31, 119, 180)), ("val", (255, 127, 14)), ("best", (214, 39, 40))):
        assert (np.abs(image - rgb).sum(axis=-1) < 30).sum() > 50, f"no {curve} pixels"


@pytest.mark.slow
def test_log_has_each_step_once_across_an_interrupted_run(char_dataset, tmp_path):
    flags = [*TINY_TRAIN_FLAGS, "--log_interval=1", "--eval_interval=10", "--max_iters=60", "--lr_decay_iters=60",
             f"--dataset={char_dataset}", f"--out_dir={tmp_path}"]
    process = subprocess.Popen([sys.executable, "train.py", *flags], cwd=REPO, stderr=subprocess.PIPE, text=True)
    while not (tmp_path / "log.jsonl").exists() or len((tmp_path / "log.jsonl").read_text().splitlines()) < 25:
        assert process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_script("train.py", *flags, "--init_from=resume")
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    batch_steps = [r["step"] for r in rows if r["kind"] == "batch"]
    eval_steps = [r["step"] for r in rows if r["kind"] == "eval"]
    assert batch_steps == list(range(1, 61))
    assert eval_steps == [10, 20, 30, 40, 50, 60]
    elapsed = [r["elapsed_s"] for r in rows if r["kind"] == "batch"]
    assert elapsed == sorted(elapsed)  # time carries on across the resume
    assert [r["tokens"] for r in rows if r["kind"] == "batch"] == [8 * 32 * s for s in range(1, 61)]


def test_the_surprise_page_leaves_out_guesses_of_padding_ids():
    """A model whose vocabulary is padded past its tokenizer's may guess a padding id early in training."""
    from model.scoring import TokenScores
    from viz.explorer import surprise_page

    tokenizer = CharTokenizer.from_text("ab")
    scores = TokenScores(np.array([0.5]), np.array([[5, 1]]), np.array([[0.6, 0.3]]))  # id 5: padding
    page = surprise_page(tokenizer, np.array([0, 1]), scores, "padded")
    data = json.loads(re.search(r"(\{\"tokens\".*\})", page).group(1))
    assert data["tokens"][1]["top"] == [["b", 0.3]]


def test_the_surprise_page_shows_the_bytes_of_a_token_that_holds_part_of_a_character():
    from model.scoring import TokenScores
    from viz.explorer import surprise_page

    tokenizer = GPT2Tokenizer()
    ids = tokenizer.encode("界")  # one character, three bytes: two GPT-2 tokens, b"\xe7\x95" and b"\x8c"
    scores = TokenScores(np.array([0.5]), np.array([[ids[0]]]), np.array([[0.6]]))
    page = surprise_page(tokenizer, np.array(ids), scores, "bytes")
    data = json.loads(re.search(r"(\{\"tokens\".*\})", page).group(1))
    assert [t["text"] for t in data["tokens"]] == ["\\xe7\\x95", "\\x8c"]  # not U+FFFD twice
    assert data["tokens"][1]["top"] == [["\\xe7\\x95", 0.6]]


def test_the_surprise_page_shows_its_title_as_written():
    """A title (a text file's path) holding a placeholder's name is text, not a place for the data."""
    from model.scoring import TokenScores
    from viz.explorer import surprise_page

    tokenizer = CharTokenizer.from_text("ab")
    scores = TokenScores(np.array([0.5]), np.array([[1]]), np.array([[0.6]]))
    page = surprise_page(tokenizer, np.array([0, 1]), scores, "ckpt.pt on /tmp/__DATA__ & __TITLE__.txt")
    assert page.count('{"tokens"') == 1
    assert "<title>Per-token surprise: ckpt.pt on /tmp/__DATA__ &amp; __TITLE__.txt</title>" in page
