"""GPT-2 compatibility: the same logits as Hugging Face transformers' GPT2LMHeadModel."""
import json
import os
import re
import socket
import time

import pytest
import torch

from config.errors import UserError
from training.init_from import load_model
from helpers import assert_one_line_error, correlation, prepare_text, run_command, run_script
from model import GPT
from model.pretrained import PretrainedNotFound

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_model_dir(tmp_path_factory):
    """A small random GPT-2 saved the way Hugging Face saves real ones (no download)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_positions=32, n_embd=48, n_layer=3, n_head=4, vocab_size=97)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # the defaults zero the biases: give every weight a value to map
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    folder = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    hf.save_pretrained(folder)
    return folder, hf


def test_logits_match_transformers(hf_model_dir):
    folder, hf = hf_model_dir
    ours = GPT.from_pretrained(str(folder)).eval()
    assert ours.config.block_size == 32 and ours.config.vocab_size == 97
    idx = torch.randint(0, 97, (3, 32))
    with torch.no_grad():
        expected = hf(idx).logits
        logits, _ = ours(idx)
    assert (logits - expected).abs().max().item() < 1e-4


def test_greedy_continuations_match_transformers(hf_model_dir):
    """60 new tokens after 5 run past the 32 positions twice; on the reference side the
    context policy is written out: a full window is cut to its last 16 tokens."""
    folder, hf = hf_model_dir
    ours = GPT.from_pretrained(str(folder)).eval()
    idx = torch.randint(0, 97, (2, 5))
    expected, window = idx, idx
    with torch.no_grad():
        for _ in range(60):  # Hugging Face's forward, greedy
            next_id = hf(window).logits[:, -1].argmax(-1, keepdim=True)
            expected = torch.cat([expected, next_id], dim=1)
            window = torch.cat([window, next_id], dim=1)
            if window.size(1) > 32:
                window = window[:, -16:]
    for use_cache in (True, False):
        assert torch.equal(ours.generate(idx, 60, temperature=0, use_cache=use_cache), expected)


def test_sampling_needs_gpt2s_vocabulary(hf_model_dir):
    folder, _ = hf_model_dir  # a vocabulary of 97: GPT-2's BPE ids would not fit
    message = (f"{folder} has a vocabulary of 97 tokens, fewer than the 50257 of the tokenizer it runs with "
               "(GPT-2's BPE, as it has no tokenizer.json); use a model whose vocabulary covers its tokenizer")
    with pytest.raises(UserError, match=re.escape(message)):
        load_model("out", "ckpt.pt", str(folder), torch.device("cpu"))


def test_a_weight_missing_extra_or_of_another_shape_than_config_json_is_refused(hf_model_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from model.config import ModelError

    folder = shutil.copytree(hf_model_dir[0], tmp_path / "damaged")
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if k != "transformer.h.2.mlp.c_proj.weight"},
              folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"weight transformer.h.2.mlp.c_proj.weight is missing from its weights file"):
        GPT.from_pretrained(str(folder))  # transformers would start it at random
    extra = {**weights, "transformer.h.0.attn.q_norm.weight": torch.ones(8)}  # a Qwen3 weight GPT-2 has no place for
    save_file(extra, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"weight transformer.h.0.attn.q_norm.weight has no place in the model "
                                         r"config.json describes: the config and the weights are of different models"):
        GPT.from_pretrained(str(folder))  # transformers would drop it
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    with pytest.raises(ModelError, match=r"c_attn.bias has shape \(144,\), but config.json makes it \(192,\)"):
        GPT.from_pretrained(str(folder))


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(PretrainedNotFound, match="not a GPT-2 model name"):
        GPT.from_pretrained(str(tmp_path / "nowhere"))


def closed_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once the socket is closed


@pytest.mark.slow
@pytest.mark.parametrize("hub", ["offline mode", "unreachable"])
def test_sample_py_explains_how_to_get_gpt2_weights(tmp_path, hub):
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HF_HOME"] = str(tmp_path / "empty-cache")
    with socket.create_server(("127.0.0.1", 0)) as listening:  # connections queue here unanswered
        if hub == "offline mode":  # a hub that would answer: offline, it must not be asked
            env["HF_HUB_OFFLINE"] = "1"
            env["HF_ENDPOINT"] = f"http://127.0.0.1:{listening.getsockname()[1]}"
        else:  # what a machine without internet meets; the hub client alone retries for 23 s
            env.pop("HF_HUB_OFFLINE", None)
            env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_local_port()}"
        start = time.perf_counter()
        result = run_script("sample.py", "--hf_model=gpt2", check=False, env=env)  # its own interpreter: HF_*
        assert time.perf_counter() - start < 25  # a start, not the hub client's 23 s of retries on top
        listening.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing connected
            listening.accept()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "from_pretrained('gpt2')" in lines[0] and "/path/to/gpt2-hf" in lines[0]


@pytest.mark.slow
def test_fine_tune_from_a_hugging_face_folder(tmp_path, corpus_text):
    config = transformers.GPT2Config(n_positions=64, n_embd=16, n_layer=1, n_head=2, vocab_size=50304)  # padded
    hf = transformers.GPT2LMHeadModel(config)
    hf.save_pretrained(tmp_path / "hf")
    prepare_text(corpus_text, "gpt2", tmp_path / "bpe")
    tuned = run_script("train.py", f"--init_from={tmp_path / 'hf'}", f"--dataset={tmp_path / 'bpe'}",
                       f"--out_dir={tmp_path / 'out'}", "--block_size=16", "--batch_size=4", "--max_iters=4",
                       "--eval_interval=4", "--eval_iters=1", "--sample_tokens=5", "--device=cpu", "--dropout=0.1",
                       "--n_layer=3", "--n_head=2")
    assert f"note: --n_layer=3 ignored: {tmp_path / 'hf'} keeps its own shape" in tuned.stderr  # n_head is its own
    evaluated = [json.loads(line)["step"] for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()
                 if json.loads(line)["kind"] == "eval"]
    assert evaluated == [0, 4] and "step 0: train loss" in tuned.stdout  # where the fine-tuning starts, shown
    assert "note: learning_rate=0.01 and muon_lr=0.02: the default rates, for training from scratch" in tuned.stderr
    checkpoint = torch.load(tmp_path / "out" / "ckpt.pt", weights_only=True)
    assert checkpoint["model_args"]["dropout"] == 0.1  # the fine-tuning's, not the folder's
    shape = {key: checkpoint["model_args"][key] for key in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd",
                                                              "bias", "pos_emb", "norm", "mlp", "tie_embeddings")}
    assert shape == {"block_size": 16, "vocab_size": 50304, "n_layer": 1, "n_head": 2, "n_embd": 16, "bias": True,
                     "pos_emb": "learned", "norm": "layernorm", "mlp": "gelu", "tie_embeddings": True}  # GPT-2's, cropped
    assert correlation(checkpoint["model"]["transformer.wte.weight"], hf.transformer.wte.weight) > 0.5  # its weights
    assert {key: checkpoint["config"][key] for key in shape} == shape  # the run records the model it trains
    sample = run_script("sample.py", f"--out_dir={tmp_path / 'out'}", "--prompt=Shall I", "--max_new_tokens=5")
    assert sample.stdout.startswith("Shall I")
    resumed = run_script("train.py", f"--dataset={tmp_path / 'bpe'}", f"--out_dir={tmp_path / 'out'}", "--max_iters=6",
                         "--eval_interval=4", "--eval_iters=1", "--sample_tokens=0", "--init_from=resume")
    assert not any(f"resume: {key} changed" in resumed.stdout for key in shape)  # the run's shape, not the defaults
    assert torch.load(tmp_path / "out" / "ckpt.pt", weights_only=True)["iter_num"] == 6
    prepare_text(corpus_text, "char", tmp_path / "chars")
    refused = run_command("train.py", f"--init_from={tmp_path / 'hf'}", f"--dataset={tmp_path / 'chars'}",
                          f"--out_dir={tmp_path / 'refused'}", "--device=cpu")
    assert_one_line_error(refused, "reads text with its own tokenizer", "prepare your text with python data/prepare.py "
                          "--input=PATH --dataset=NAME --tokenizer=gpt2 (the plays in GPT-2's tokens: "
                          "--dataset=shakespeare_gpt2)")
