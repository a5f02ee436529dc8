"""python params.py: where the parameters go, against real models and the published numbers."""
from __future__ import annotations

import json

import pytest
import torch

import data.dataset

from config.errors import UserError
from data.errors import DataError
from helpers import gpt2_config, run_script
from model import GPT, GPTConfig, ModelError
from model.config import counted, shape_words
from model.params import one_block_model, report_rows, training_flops_per_token
from params import main

GPT2_SMALL = gpt2_config(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768, bias=True)
GPT3 = gpt2_config(block_size=2048, vocab_size=50257, n_layer=96, n_head=96, n_embd=12288, bias=True)


def counts(config: GPTConfig) -> dict[str, int | None]:
    return {row.key: row.count for row in report_rows(config)}


def closed_form_total(c: GPTConfig) -> int:
    """Per block: four C x C attention matrices and two 4C x C MLP matrices (12 C^2), plus
    biases (3C + C + 4C + C) and two LayerNorms (2C each with bias, C each without)."""
    per_block = 12 * c.n_embd**2 + (13 if c.bias else 2) * c.n_embd
    final_norm = (2 if c.bias else 1) * c.n_embd
    return (c.vocab_size + c.block_size) * c.n_embd + c.n_layer * per_block + final_norm


@pytest.mark.parametrize("config", [
    gpt2_config(block_size=16, vocab_size=23, n_layer=2, n_head=2, n_embd=32, bias=False),
    gpt2_config(block_size=8, vocab_size=11, n_layer=3, n_head=4, n_embd=24, bias=True),
    gpt2_config(block_size=32, vocab_size=65, n_layer=1, n_head=1, n_embd=16, bias=True),
])
def test_report_matches_a_real_model(config):
    torch.manual_seed(0)
    real = GPT(config)
    report = counts(config)
    assert report["total"] == sum(p.numel() for p in real.parameters()) == closed_form_total(config)
    block = real.transformer.h[0]
    assert report["block.attn"] == sum(p.numel() for p in block.attn.parameters())
    assert report["block.mlp"] == sum(p.numel() for p in block.mlp.parameters())
    assert report["block.block"] == sum(p.numel() for p in block.parameters())
    assert report["blocks.attn"] == sum(p.numel() for b in real.transformer.h for p in b.attn.parameters())
    C, hs = config.n_embd, config.head_size
    for part in ("query", "key", "value", "output"):
        assert report[f"block.attn.{part}.head"] == C * hs
        assert report[f"block.attn.{part}"] == config.n_head * C * hs == C * C
    assert report["lm_head"] == 0  # tied to the token embedding


MODERN = gpt2_config(block_size=64, vocab_size=97, n_layer=3, n_head=6, n_kv_head=2, n_embd=48, bias=False,
                   pos_emb="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", tie_embeddings=False)


def test_modern_shape_per_head_and_per_block():
    """Per block: W_Q (nh hs x C), W_K and W_V (nkv hs x C each: grouped), W_O (C x nh hs), two
    QK-norm weights of hs, three SwiGLU matrices of 8/3 C = 128, two RMSNorm weights of C."""
    c, hs, hidden = MODERN, 8, 128
    report, real = counts(c), GPT(c)
    assert report["block.attn.query.head"] == report["block.attn.key.head"] == hs * c.n_embd
    assert report["block.attn.query"] == 6 * hs * 48 and report["block.attn.key"] == report["block.attn.value"] == 2 * hs * 48
    assert report["block.attn.qk_norm"] == 2 * hs
    assert report["block.mlp"] == 3 * 48 * hidden
    per_block = (6 + 2 + 2 + 6) * hs * 48 + 2 * hs + 3 * 48 * hidden + 2 * 48
    assert report["block.block"] == per_block == sum(p.numel() for p in real.transformer.h[0].parameters())
    assert report["wpe"] == 0 and report["lm_head"] == 97 * 48  # RoPE has no weights; the head is untied
    assert report["total"] == 2 * 97 * 48 + 3 * per_block + 48 == real.num_params()
    # the FLOPs count the head's matmul but not the token embedding's lookup
    assert training_flops_per_token(c, 64) == 6 * (real.num_params() - 97 * 48) + 12 * 3 * 6 * hs * 64


def test_the_counted_model_allocates_nothing():
    assert all(p.is_meta for p in one_block_model(GPT3).parameters())


@pytest.mark.parametrize("n_embd, vocab_size", [(2**40, 50), (64, 10**30)])  # torch's RuntimeError; its TypeError
def test_a_shape_no_machine_holds_is_named(n_embd, vocab_size):  # past long long's range
    with pytest.raises(ModelError, match=r"holds a tensor too large for any machine; choose a smaller shape$"):
        one_block_model(GPTConfig(n_layer=1, n_head=1, n_embd=n_embd, block_size=8, vocab_size=vocab_size))


def test_gpt2_small():
    report = counts(GPT2_SMALL)
    assert report["total"] == 124_439_808
    # nanoGPT's MFU estimate for GPT-2 small at T=1024: N excludes the 786,432 position embeddings
    assert training_flops_per_token(GPT2_SMALL, 1024) == 6 * (124_439_808 - 786_432) + 12 * 12 * 768 * 1024


def test_a_shape_is_printed_with_its_counts_singular_where_one():
    assert shape_words(1, 1, 1024, 2048) == "1 layer, 1 head, 1,024 wide, context 2,048"
    assert shape_words(12, 12, 768, 1024) == "12 layers, 12 heads, 768 wide, context 1,024"
    assert [counted(n, "process", "processes") for n in (1, 2)] == ["1 process", "2 processes"]


def test_gpt3_famous_numbers():
    report = counts(GPT3)
    assert report["block.attn.query.head"] == report["block.attn.key.head"] == 1_572_864  # 12288 x 128
    assert round(report["block.attn"] / 1e6) == 604  # 4 x 12288^2 weights + 4 x 12288 biases
    assert round(report["blocks.attn"] / 1e9) == 58
    assert round(report["total"] / 1e9) == 175
    assert report["total"] == closed_form_total(GPT3)


@pytest.mark.slow
def test_command_line_reports_both_configs(capsys):
    main(["configs/gpt3_175b.toml"])
    gpt3 = capsys.readouterr().out
    assert "n_layer=96, n_head=96, n_kv_head=96, n_embd=12288 (head_size=128), block_size=2048, vocab_size=50257" in gpt3
    assert "1,572,864" in gpt3 and "604,028,928" in gpt3 and "57,986,777,088" in gpt3
    assert "174,604,259,328" in gpt3 and "training FLOPs per token" in gpt3
    result = run_script("params.py", "configs/gpt2_124m.toml")
    assert "124,439,808" in result.stdout and "855,166,464" in result.stdout


def test_a_runs_own_shape_with_init_from_resume(trained_out, capsys):
    args = torch.load(trained_out / "ckpt.pt", weights_only=True)["model_args"]
    main([f"--out_dir={trained_out}", "--init_from=resume", "--n_layer=12"])  # the run's shape, not the keys'
    out, err = capsys.readouterr()
    assert f"n_layer={args['n_layer']}, n_head={args['n_head']}," in out
    assert err == "note: n_layer not counted: --init_from=resume counts the run's own shape\n"
    main([f"--out_dir={trained_out}", "--vocab_size=512"])  # the keys' shape, and a word (512: over any char vocabulary)
    out, err = capsys.readouterr()
    assert "n_layer=4," in out and err == (f"note: --out_dir={trained_out} is not read: these are the keys' own counts "
                                           f"(the run's: add --init_from=resume)\n")
    main(["configs/classic.toml", "--vocab_size=512"])  # its out_dir names no run to count
    assert capsys.readouterr().err == ""
    with pytest.raises(UserError, match="not init_from=gpt2"):
        main(["--init_from=gpt2"])
    with pytest.raises(UserError, match=f"out_dir={trained_out / 'ckpt.pt'} is a file, not a run's folder; give "
                                        f"--out_dir={trained_out}$"):
        main([f"--out_dir={trained_out / 'ckpt.pt'}", "--init_from=resume"])


def test_a_time_budget_is_named_as_not_planned_by_params(capsys):
    main(["configs/gpt3_175b.toml", "--time_budget=10m"])
    out, err = capsys.readouterr()
    assert "n_layer=96," in out  # the keys' own shape
    assert err.startswith("note: time_budget=10m is not planned here") and "--init_from=resume" in err


def test_vocabulary_from_the_dataset_or_asked_for(char_dataset, tmp_path, capsys, monkeypatch):
    vocab = json.loads((char_dataset / "meta.json").read_text())["vocab_size"]
    main([f"--dataset={char_dataset}", "--n_layer=1", "--n_embd=16", "--n_head=2"])
    assert f"vocab_size={vocab}," in capsys.readouterr().out
    with pytest.raises(UserError, match="is not prepared, so its vocabulary size is unknown; prepare it with python "
                                        "data/prepare.py, or pass --vocab_size=N"):
        main([f"--dataset={tmp_path / 'nothing'}"])
    monkeypatch.setattr(data.dataset, "DATA_ROOT", tmp_path)  # a fresh clone, before its first python train.py
    with pytest.raises(UserError, match="'shakespeare_char' is not prepared, .*; python train.py prepares it on its "
                                        "first run, or pass --vocab_size=N"):
        main([])
    main([f"--dataset={tmp_path / 'nothing'}", "--vocab_size=100", "--n_layer=1"])
    assert "vocab_size=100," in capsys.readouterr().out
    main(["--dataset=shakespeare_gpt2", "--n_layer=1"])  # a GPT-2 BPE recipe, prepared or not
    assert "vocab_size=50257," in capsys.readouterr().out
    with pytest.raises(ModelError, match="n_embd=768 must be divisible by n_head=5"):
        main(["configs/gpt2_124m.toml", "--n_head=5"])
    broken = tmp_path / "broken"
    broken.mkdir()
    for text, reason in (("{not json", "Expecting property name"), ("[]", "its meta.json is not a JSON object"),
                         ('{"dtype": "uint16"}', "vocab_size is missing or not an integer"),
                         ('{"vocab_size": "65"}', "vocab_size is missing or not an integer")):
        (broken / "meta.json").write_text(text)
        with pytest.raises((UserError, DataError), match=f"{reason}.*re-run python data/prepare.py"):
            main([f"--dataset={broken}"])


def test_mfu_over_several_processes_counts_every_device_peak():
    """train.py gives MFUMeter the whole job's tokens/s: n devices at one device's pace each are as utilised."""
    from training.throughput import MFUMeter

    one, four = (MFUMeter(1_000, torch.device("cpu"), "float32", devices) for devices in (1, 4))
    one.peak = four.peak = 2e6  # FLOP/s of one device (a CPU has none of its own)
    assert one.mfu(1_000.0) == four.mfu(4_000.0) == 0.5
