"""End to end, offline: train.py a tiny model of each shape, export.py it, and load the folder with
transformers' AutoModelForCausalLM and AutoTokenizer; fine-tune, sample and look inside a Llama
built with transformers. Bad input to export.py is one line with exit status 2."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import export
from config.errors import UserError
from config.settings import TrainConfig
from training.checkpoint import load_checkpoint, model_from_checkpoint
from data.tokenizer import tokenizer_from_description
from helpers import (TINY_TRAIN_FLAGS, assert_one_line_error, correlation, prepare_text, run_main, run_script,
                     snapshot)
from model import GPT, GPTConfig

pytestmark = pytest.mark.slow  # the commands run as subprocesses
transformers = pytest.importorskip("transformers")

TEXT = "Zoë's café in São Paulo: 東京で寿司を食べた 🍣🎌, and 👩🏽‍💻 wrote it down.\n"  # accents, CJK, emoji
CLASSIC = ["--pos_emb=learned", "--norm=layernorm", "--qk_norm=false", "--mlp=gelu", "--tie_embeddings=true",
           "--optimizer=adamw"]
SHORT_RUN = ["--block_size=64", "--batch_size=4", "--max_iters=10", "--lr_decay_iters=10", "--eval_interval=10",
             "--sample_tokens=0"]
RUNS = {  # shape: (training flags, tokenizer, checkpoint file export.py reads, the class transformers loads)
    "gpt2": (CLASSIC, "gpt2", "ckpt.pt", "GPT2LMHeadModel"),
    "llama": (["--qk_norm=false", "--n_kv_head=1", "--checkpoint_format=safetensors"], "char", "best.safetensors",
              "LlamaForCausalLM"),
    "qwen3": (["--n_kv_head=1", "--head_size=16", "--n_head=3"], "char", "ckpt.pt", "Qwen3ForCausalLM"),  # 3 x 16 > 32
}


def train_and_export(tmp_path, corpus_text: str, shape: str) -> dict:
    flags, tokenizer, checkpoint, _ = RUNS[shape]
    prepare_text(corpus_text + TEXT * 20, tokenizer, tmp_path / "data")  # the char vocabulary holds TEXT's
    run_script("train.py", *TINY_TRAIN_FLAGS, *SHORT_RUN, *flags, f"--dataset={tmp_path / 'data'}",
               f"--out_dir={tmp_path / 'out'}")
    result = run_script("export.py", f"--out_dir={tmp_path / 'out'}", f"--checkpoint={checkpoint}",
                        f"--hf_dir={tmp_path / 'hf'}")
    assert result.stdout.startswith(f"wrote {tmp_path / 'hf'}: {RUNS[shape][3]}")
    return load_checkpoint(tmp_path / "out" / checkpoint)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, corpus_text):
    """shape -> (its folder, the checkpoint export.py read): each trained and exported once."""
    done = {}

    def run(shape: str):
        if shape not in done:
            folder = tmp_path_factory.mktemp(shape)
            done[shape] = folder, train_and_export(folder, corpus_text, shape)
        return done[shape]
    return run


@pytest.mark.parametrize("shape", RUNS)
def test_a_trained_model_runs_the_same_in_transformers(exported, shape, monkeypatch):
    tmp_path, checkpoint = exported(shape)
    ours = model_from_checkpoint(checkpoint, tmp_path / "out").eval()
    tokenizer = tokenizer_from_description(checkpoint["tokenizer"], Path("ckpt.pt"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    auto_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert type(hf).__name__ == RUNS[shape][3]
    ids = tokenizer.encode(TEXT)
    assert auto_tokenizer(TEXT)["input_ids"] == ids and auto_tokenizer.decode(ids) == TEXT
    idx = torch.tensor([ids[:64]])
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4
    prompt = idx[:, :8]  # 8 + 50 tokens: within the context of 64, where both read every position
    expected = ours.generate(prompt, 50, temperature=0)
    theirs = hf.generate(prompt, max_new_tokens=50, do_sample=False)
    assert theirs.size(1) == 58 or theirs[0, -1].item() == tokenizer.eot_token  # transformers stops at end-of-text
    assert torch.equal(theirs, expected[:, : theirs.size(1)])
    card = (tmp_path / "hf" / "README.md").read_text()
    assert f"| architecture | {RUNS[shape][3]}, {hf.num_parameters():,} parameters |" in card  # GPT-2's zero biases
    assert f"| best val loss | {checkpoint['best_val_loss']:.4f} nats per token (the lowest of the run's " \
           f"evaluations at or before step {checkpoint['iter_num']:,}," in card and "bits per byte |" in card
    assert "python train.py " in card and "--out_dir=" in card and " ".join(RUNS[shape][0][:2]) in card
    assert "--max_iters=10" in card and "--warmup_iters=5" in card and "--lr_decay_iters" not in card  # it follows
    snippet = card.split("```python\n")[1].split("```")[0].replace("print(", "printed = (")
    monkeypatch.chdir(tmp_path)  # the snippet names the folder as export wrote it
    torch.manual_seed(0)
    names = {}
    exec(snippet, names)  # runs as written: GPT-2 to generation_config.json's max_length, its n_positions
    # it continues end-of-text, by a name every exported tokenizer reads as that one token (char too: no newline
    # need be in its vocabulary)
    assert 'tokenizer("<|endoftext|>", return_tensors="pt")' in card
    assert names["ids"].tolist() == [[tokenizer.eot_token]]
    assert len(names["printed"]) > len(auto_tokenizer.decode(names["ids"][0]))
    length = hf.generate(names["ids"]).size(1)  # generation_config.json's settings alone
    assert length <= (64 if shape == "gpt2" else names["ids"].size(1) + 500)


def test_safetensors_runs_write_no_pickle_files_and_resume_from_them(exported):
    tmp_path, _ = exported("llama")
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if "." in p.name and p.suffix != ".png") == \
        [".lock", "best.safetensors", "ckpt.safetensors", "log.jsonl"]
    resumed = run_script("train.py", *TINY_TRAIN_FLAGS, *SHORT_RUN, "--max_iters=15", *RUNS["llama"][0],
                         f"--dataset={tmp_path / 'data'}", f"--out_dir={tmp_path / 'out'}", "--init_from=resume")
    assert f"resuming from {tmp_path / 'out' / 'ckpt.safetensors'} at step 10" in resumed.stdout
    sample = run_script("sample.py", f"--out_dir={tmp_path / 'out'}", "--prompt=Zoë", "--max_new_tokens=10")
    assert sample.stdout.startswith("Zoë")


def export_error(*argv: str) -> str:
    """export.py's main as the command runs it: the one line it prints, on exit status 2."""
    result = run_main(export.main, *argv)
    assert_one_line_error(result)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # nothing else printed
    return result.stderr.strip()


def test_export_refuses_bad_input_and_leaves_the_disk_alone(tmp_path, trained_out):
    target = tmp_path / "hf"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    before = snapshot(tmp_path)
    assert "checkpoint" in export_error(f"--out_dir={tmp_path / 'none'}", f"--hf_dir={tmp_path / 'new'}")
    assert "holds files export.py did not write (mine.txt)" in export_error(f"--out_dir={trained_out}",
                                                                            f"--hf_dir={target}", "--replace_export=true")
    assert "is a file" in export_error(f"--out_dir={trained_out}", f"--hf_dir={target / 'mine.txt'}")
    assert "give the folder to write: --hf_dir=FOLDER" in export_error(f"--out_dir={trained_out}")
    checkpoint = torch.load(trained_out / "ckpt.pt", weights_only=True)
    shape = dict(checkpoint["model_args"], pos_emb="learned", norm="rmsnorm")
    (tmp_path / "odd").mkdir()
    torch.save(dict(checkpoint, model=GPT(GPTConfig(**shape)).state_dict(), model_args=shape), tmp_path / "odd" / "ckpt.pt")
    line = export_error(f"--out_dir={tmp_path / 'odd'}", f"--hf_dir={tmp_path / 'new'}")
    assert "cannot export: norm=rmsnorm has no Hugging Face equivalent (pos_emb=learned makes it GPT-2" in line
    shutil.rmtree(tmp_path / "odd")
    assert snapshot(tmp_path) == before and not (tmp_path / "new").exists()
    result = run_script("export.py", f"--out_dir={trained_out}", f"--hf_dir={target}", check=False)
    assert result.returncode == 2 and result.stderr.startswith("error: --hf_dir=") and "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before


def test_replace_export_replaces_an_earlier_export_whole(tmp_path, trained_out, capsys):
    target = tmp_path / "hf"
    target.mkdir()
    (target / "README.md").write_text("my own notes\n")  # a folder of export's names is not therefore an export
    assert "holds no model card of smallgpt's" in export_error(f"--out_dir={trained_out}", f"--hf_dir={target}",
                                                                "--replace_export=true")
    (target / "README.md").unlink()
    export.main([f"--out_dir={trained_out}", f"--hf_dir={target}"])  # an earlier export ...
    (target / "model.safetensors").write_bytes(b"old")  # ... damaged since
    export.main([f"--out_dir={trained_out}", f"--hf_dir={target}", "--replace_export=true"])
    assert (target / "model.safetensors").stat().st_size > 3
    assert {p.name for p in target.iterdir()} == export.EXPORT_FILES  # what export writes is what it recognises
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temporary folder left beside it
    assert json.loads((target / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]


def byte_level_bpe_folder(folder, text: str):
    """A Llama folder as the hub has them: grouped-query attention, and a byte-level BPE tokenizer.json
    (a Split pattern, then ByteLevel) trained here."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    hf_tokenizer = Tokenizer(models.BPE())
    hf_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"'s|'t| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf_tokenizer.decoder = decoders.ByteLevel()
    hf_tokenizer.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    config = transformers.LlamaConfig(vocab_size=hf_tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=4096, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config)
    hf.save_pretrained(folder)
    hf_tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return hf


def test_fine_tune_sample_and_look_inside_an_imported_llama(tmp_path, corpus_text, capsys):
    import attention
    from data.hf_tokenizer import tokenizer_from_hf_folder

    folder = tmp_path / "llama"
    hf = byte_level_bpe_folder(folder, corpus_text)
    (tmp_path / "notes.txt").write_text(corpus_text, encoding="utf-8")
    prepared = run_script("data/prepare.py", f"--input={tmp_path / 'notes.txt'}", f"--tokenizer={folder}",
                          f"--dataset={tmp_path / 'data'}")
    tokenizer = tokenizer_from_hf_folder(folder)
    assert f"vocabulary {tokenizer.vocab_size} (bpe, {folder}'s), uint16" in prepared.stdout
    run_script("train.py", f"--init_from={folder}", f"--dataset={tmp_path / 'data'}", f"--out_dir={tmp_path / 'out'}",
               "--block_size=32", "--batch_size=4", "--max_iters=4", "--eval_interval=4", "--eval_iters=1",
               "--sample_tokens=5", "--device=cpu")
    checkpoint = torch.load(tmp_path / "out" / "ckpt.pt", weights_only=True)
    args = checkpoint["model_args"]
    assert (args["n_head"], args["n_kv_head"], args["pos_emb"], args["qk_norm"], args["block_size"]) == \
        (4, 2, "rope", False, 32)  # Llama's shape, the context cropped to the run's block_size
    assert checkpoint["tokenizer"] == tokenizer.describe()
    assert not torch.equal(checkpoint["model"]["lm_head.weight"], hf.lm_head.weight)  # it trained
    assert correlation(checkpoint["model"]["lm_head.weight"], hf.lm_head.weight) > 0.5  # from Llama's weights
    sample = run_script("sample.py", f"--out_dir={tmp_path / 'out'}", "--prompt=Shall I", "--max_new_tokens=8")
    assert sample.stdout.startswith("Shall I")
    capsys.readouterr()
    attention.main([f"--hf_model={folder}", "--text=Shall I compare thee", f"--pictures_dir={tmp_path / 'maps'}",
                    "--device=cpu", "--checkpoint=best.pt"])
    assert f"note: checkpoint=best.pt ignored: hf_model={folder} runs that model" in capsys.readouterr().err
    assert {p.name for p in (tmp_path / "maps").iterdir()} >= {"heatmaps.png", "explorer.html"}
    with pytest.raises(UserError, match=re.escape(f"--hf_model={folder}")):  # the folder given as a run's
        attention.main([f"--out_dir={folder}", "--text=Shall I", f"--pictures_dir={tmp_path / 'maps2'}"])
    # what those pictures show, against transformers' own attention weights (RoPE, two heads per key/value head)
    idx = torch.tensor([tokenizer.encode("Shall I compare thee")])
    hf.set_attn_implementation("eager")  # the implementation that returns its weights
    with torch.no_grad():
        theirs = hf.eval()(idx, output_attentions=True).attentions  # n_layer x (1, nh, T, T)
        ours = GPT.from_pretrained(str(folder)).eval().attention_patterns(idx)
    assert len(ours) == len(theirs) == 2
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference, atol=1e-5, rtol=1e-4)
    # resumed, the run still records where it began: the card's command fine-tunes the folder, not a fresh model
    run_script("train.py", f"--out_dir={tmp_path / 'out'}", "--init_from=resume", "--max_iters=6")
    resumed = torch.load(tmp_path / "out" / "ckpt.pt", weights_only=True)
    assert resumed["iter_num"] == 6 and resumed["config"]["init_from"] == str(folder)
    assert f"--init_from={folder}" in export.training_command(resumed["config"], planned=False)


def test_the_card_sizes_the_dataset_only_while_its_folder_holds_the_runs_data(trained_out):
    checkpoint = torch.load(trained_out / "ckpt.pt", weights_only=True)
    assert "bits per byte" in "".join(export.result_rows(checkpoint))
    checkpoint["dataset"]["fingerprint"] = "0" * 64  # the folder prepared again since, with other text
    rows = export.result_rows(checkpoint)
    assert "(it holds other data now, prepared since: no size, no bits per byte)" in rows[0]
    assert "bits per byte" not in "".join(rows[1:])


def test_the_card_gives_a_budgeted_run_by_its_plans_keys():
    """Its plan's keys retrace the run anywhere; a budget would plan again, for another machine's pace."""
    config = dataclasses.asdict(TrainConfig(time_budget="20s", max_iters=441, lr_decay_iters=514, out_dir="out-tb"))
    assert export.training_command(config, planned=True) == ("python train.py --out_dir=out-tb --max_iters=441 "
                                                             "--lr_decay_iters=514")
    assert "--time_budget=20s" in export.training_command(config, planned=False)
