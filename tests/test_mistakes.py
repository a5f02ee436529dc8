"""Mistakes a new user makes with export, safetensors, Hugging Face folders and padded vocabularies:
each is one line and exit status 2 with every file as it was (by sha256), or, where the command
can do the right thing, it does it. Every case runs the real command as a subprocess."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REPO, TINY_TRAIN_FLAGS, assert_one_line_error, run_script

pytestmark = pytest.mark.slow


def sha256s(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(*args: str, fragment: str, unchanged: Path) -> None:
    before = sha256s(unchanged)
    assert_one_line_error(run_script(*args, check=False), fragment)
    assert sha256s(unchanged) == before


@pytest.fixture(scope="module")
def padded_run(char_dataset, tmp_path_factory) -> Path:
    """A tiny run whose vocabulary is padded past its char tokenizer's, as `--vocab_size=50304` pads GPT-2's;
    its closing sample (after the checkpoints) must decode."""
    out = tmp_path_factory.mktemp("padded")
    result = run_script("train.py", *TINY_TRAIN_FLAGS, "--max_iters=20", "--vocab_size=128", "--sample_tokens=200",
                        f"--dataset={char_dataset}", f"--out_dir={out}")
    assert "--- sample ---" in result.stdout and "Traceback" not in result.stderr
    return out


def test_export_never_writes_into_a_run_or_a_dataset(trained_out, char_dataset, tmp_path):
    run = shutil.copytree(trained_out, tmp_path / "run")
    for target, fragment in ((run, "is the training run's out_dir"), (run / "hf", "lies inside the training run's"),
                             (tmp_path, "holds the training run's out_dir"),
                             (char_dataset, "is a dataset's folder: nothing else belongs among its token files")):
        refused("export.py", f"--out_dir={run}", f"--hf_dir={target}", "--replace_export=true", fragment=fragment,
                unchanged=tmp_path if target != char_dataset else char_dataset)
    export = run_script("export.py", f"--out_dir={run}", f"--hf_dir={tmp_path / 'hf'}")
    assert export.returncode == 0  # a folder of its own is fine, and replace_export replaces only an export
    refused("export.py", f"--out_dir={run}", f"--hf_dir={tmp_path / 'hf'}", fragment="holds an earlier export",
            unchanged=tmp_path)


def test_export_interrupted_once_its_folder_is_swapped_in_finishes(trained_out, tmp_path):
    """Ctrl-C right after the swap (tests/export_with_interrupt.py sends it) leaves a complete folder, exit 0."""
    result = run_script("tests/export_with_interrupt.py", f"--out_dir={trained_out}", f"--hf_dir={tmp_path / 'hf'}",
                        check=False)
    assert result.returncode == 0 and result.stdout.startswith("wrote "), result.stderr
    assert "sending SIGINT" in result.stderr and len(list((tmp_path / "hf").iterdir())) == 6


def test_a_run_resumed_in_the_other_format_keeps_one_latest_checkpoint(trained_out, tmp_path):
    run = shutil.copytree(trained_out, tmp_path / "run")
    dataset = torch.load(run / "ckpt.pt", weights_only=True)["config"]["dataset"]
    flags = [*TINY_TRAIN_FLAGS, "--sample_tokens=0", "--checkpoint_format=safetensors", "--init_from=resume",
             f"--out_dir={run}", f"--dataset={dataset}"]
    finished = run_script("train.py", *flags, "--max_iters=20")  # the run is there already: nothing is written
    assert f"resuming from {run / 'ckpt.pt'} at step 20" in finished.stdout
    assert "max_iters=20: nothing to train; raise max_iters to go on" in finished.stderr
    assert "lr_decay_iters" not in finished.stderr  # no schedule notes for a run with no steps left
    assert "step/s" not in finished.stderr and "20step" not in finished.stderr  # nor an empty progress bar
    assert f"the run: {run / 'ckpt.pt'} (latest), best.pt," in finished.stdout
    assert not (run / "ckpt.safetensors").exists()
    went_on = run_script("train.py", *flags, "--max_iters=30", "--learning_rate=3")  # far worse: no new best
    assert not (run / "ckpt.pt").exists() and (run / "ckpt.safetensors").is_file()
    assert f"the run: {run / 'ckpt.safetensors'} (latest), best.pt," in went_on.stdout and (run / "best.pt").is_file()
    evaluation = run_script("eval.py", f"--out_dir={run}", "--json=true")  # ckpt.pt asked: the one latest is read, and named
    assert json.loads(evaluation.stdout)["checkpoint"].endswith("ckpt.safetensors")
    assert f"note: reading {run / 'ckpt.safetensors'}, as {run} holds no ckpt.pt" in evaluation.stderr
    named = run_script("eval.py", f"--out_dir={run}", f"--checkpoint={run / 'ckpt.safetensors'}", "--json=true")
    assert "note: reading" not in named.stderr  # the file asked for, given with its folder
    shutil.copy(trained_out / "ckpt.pt", run / "ckpt.pt")  # a stale copy beside the latest: which one is it?
    (run / "ckpt.safetensors").touch()  # the newer of the two
    for command in ("sample.py", "eval.py", "export.py"):
        extra = [f"--hf_dir={tmp_path / 'hf'}"] if command == "export.py" else []
        refused(command, f"--out_dir={run}", *extra, fragment="ckpt.safetensors is the newer: remove ckpt.pt",
                unchanged=tmp_path)


def test_padding_ids_are_never_sampled(padded_run, char_dataset, tmp_path):
    hot = run_script("sample.py", f"--out_dir={padded_run}", "--temperature=5", "--top_k=none", "--max_new_tokens=300")
    assert hot.returncode == 0 and "Traceback" not in hot.stderr
    run_script("export.py", f"--out_dir={padded_run}", f"--hf_dir={tmp_path / 'hf'}")
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    vocab = json.loads((tmp_path / "hf" / "config.json").read_text())["vocab_size"]
    tokens = json.loads((char_dataset / "meta.json").read_text())["vocab_size"]  # the run's char tokenizer's
    assert vocab == 128 and generation["suppress_tokens"] == list(range(tokens, 128))  # nor does transformers
    from_folder = run_script("sample.py", f"--hf_model={tmp_path / 'hf'}", "--temperature=5", "--top_k=none",
                             "--max_new_tokens=200")
    assert from_folder.returncode == 0 and "Traceback" not in from_folder.stderr


def test_a_damaged_hugging_face_folder_is_one_line(trained_out, tmp_path):
    run_script("export.py", f"--out_dir={trained_out}", f"--hf_dir={tmp_path / 'hf'}")
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "hf").save_pretrained(tmp_path / "shards", max_shard_size="20KB")
    shard = sorted((tmp_path / "shards").glob("model-*.safetensors"))[-1]  # a big model's weights, in several files
    shard.write_bytes(shard.read_bytes()[:1000])
    refused("sample.py", f"--hf_model={tmp_path / 'shards'}", unchanged=tmp_path,
            fragment="its weights (its .safetensors shards) cannot be read")
    weights = tmp_path / "hf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    refused("sample.py", f"--hf_model={tmp_path / 'hf'}", fragment="its weights (model.safetensors) cannot be read",
            unchanged=tmp_path)
    weights.unlink()  # a folder of a config.json alone, or saved as torch.save wrote weights (cut short here)
    refused("sample.py", f"--hf_model={tmp_path / 'hf'}", fragment="its weights cannot be read (", unchanged=tmp_path)
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(b"PK\x03\x04 cut short")
    refused("sample.py", f"--hf_model={tmp_path / 'hf'}", fragment="its weights cannot be read (", unchanged=tmp_path)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "one"}))
    refused("eval.py", f"--hf_model={tmp_path / 'hf'}", "--text_file=README.md", unchanged=tmp_path,
            fragment="config.json does not describe a qwen3 model (Validation error for field 'num_hidden_layers'")


def test_prepare_follows_linked_folders_once_and_names_a_broken_link(tmp_path):
    (tmp_path / "in" / "notes").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "in" / "notes" / "a.txt").write_text("first document\n")
    (tmp_path / "elsewhere" / "b.txt").write_text("second document\n")
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "in" / "notes" / "up").symlink_to(tmp_path / "in")  # a loop: each real folder is read once
    run_script("data/prepare.py", f"--input={tmp_path / 'in'}", f"--dataset={tmp_path / 'ds'}")
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert [Path(i["path"]).name for i in meta["inputs"]] == ["b.txt", "a.txt"]  # linked/b.txt, notes/a.txt
    (tmp_path / "in" / "gone").symlink_to(tmp_path / "nothing")
    refused("data/prepare.py", f"--input={tmp_path / 'in'}", f"--dataset={tmp_path / 'ds'}", unchanged=tmp_path,
            fragment=f"input {tmp_path / 'in' / 'gone'} is a link to nothing")


@pytest.mark.parametrize("line", ['["a"]', '"text"', "null"])
def test_a_jsonl_line_that_is_no_object_is_named(tmp_path, line):
    (tmp_path / "docs.jsonl").write_text('{"text": "fine"}\n' + line + "\n")
    refused("data/prepare.py", f"--input={tmp_path / 'docs.jsonl'}", f"--dataset={tmp_path / 'ds'}",
            unchanged=tmp_path, fragment=f"docs.jsonl line 2 is not a JSON object ({line})")


@pytest.mark.parametrize("kind", ["large_string", "string_view"])
def test_parquet_text_of_every_string_type_is_read(tmp_path, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array(["one document", "another one"], type=getattr(pa, kind)())}),
                   tmp_path / "docs.parquet")
    run_script("data/prepare.py", f"--input={tmp_path / 'docs.parquet'}", f"--dataset={tmp_path / 'ds'}")
    assert json.loads((tmp_path / "ds" / "meta.json").read_text())["val_documents"] == 1


def test_eval_says_why_a_split_of_no_bytes_has_no_bits_per_byte(trained_out, char_dataset, tmp_path):
    data = shutil.copytree(char_dataset, tmp_path / "data")
    meta = json.loads((data / "meta.json").read_text())
    np.array([1, meta["eot_token"]], dtype=meta["dtype"]).tofile(data / "val.bin")  # the only scored token: end of text
    (data / "meta.json").write_text(json.dumps({**meta, "val_tokens": 2}))
    run = shutil.copytree(trained_out, tmp_path / "run")
    state = torch.load(run / "ckpt.pt", weights_only=True)
    state["config"]["dataset"] = str(data)
    torch.save(state, run / "ckpt.pt")
    result = run_script("eval.py", f"--out_dir={run}")
    assert "loss " in result.stdout and "no bits per byte: the scored tokens hold no bytes" in result.stdout


def test_nanogpt_flags_and_an_empty_stop_get_one_line(trained_out):
    assert_one_line_error(run_script("sample.py", f"--out_dir={trained_out}", "--start=ROMEO", check=False),
                          "unknown config key 'start'", "did you mean 'prompt'?")
    assert_one_line_error(run_script("sample.py", f"--out_dir={trained_out}", "--stop=", check=False),
                          "--stop needs a string to stop at")


def test_compile_without_a_cpp_compiler_or_without_the_cache_is_one_line(trained_out, char_dataset, tmp_path):
    cache = tmp_path / "compile-cache"
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    result = run_script("sample.py", f"--out_dir={trained_out}", "--compile=true", check=False, env=env)
    assert_one_line_error(result, "could not compile the decoding step", "decode without compiling")
    assert result.stderr.startswith("compile: compiling the decoding step (about a minute on a CPU")  # said first
    assert not list(cache.glob("smallgpt-decoding/*"))  # nothing half-written left under the package's name
    (tmp_path / "a-file").touch()
    unwritable = run_script("sample.py", f"--out_dir={trained_out}", "--compile=true", check=False,
                            env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "a-file")})
    assert_one_line_error(unwritable, "cannot write the compile cache", "set TORCHINDUCTOR_CACHE_DIR")
    assert_one_line_error(run_script("sample.py", f"--out_dir={trained_out}", "--compile=true", "--use_cache=false",
                                     check=False), "--compile=true decodes through the KV cache")
    run = tmp_path / "run"
    result = run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={char_dataset}", f"--out_dir={run}",
                        "--compile=true", check=False, env=env)
    assert_one_line_error(result, "could not compile the model", "train with --compile=false")
    assert not (run / "ckpt.pt").exists()


def test_a_damaged_compiled_step_met_after_the_first_token_is_an_error_on_a_line_of_its_own(trained_out, tmp_path,
                                                                                              monkeypatch):
    from model.decoding import generation_cache, package_path
    from training.init_from import load_model

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    model, tokenizer, *_ = load_model(str(trained_out), "ckpt.pt", "", torch.device("cpu"))
    idx = torch.tensor([tokenizer.encode("the ")])  # (1, T): sample.py's, for this prompt
    package = package_path(model, generation_cache(model, idx, 20, compile=True))
    package.parent.mkdir(parents=True)
    package.write_bytes(b"PK\x03\x04 cut short")  # a package cut short: loaded once the prefill's token is out
    result = run_script("sample.py", f"--out_dir={trained_out}", "--prompt=the ", "--max_new_tokens=20",
                        "--compile=true", check=False)
    assert_one_line_error(result, "the compiled decoding step", "was damaged", "run again to compile it anew")
    assert result.stdout.startswith("the ") and result.stdout.endswith("\n")  # the text so far, then a new line
    assert not package.exists()


def test_one_line_documents_prepared_inside_their_folder_get_commands_that_run(tmp_path):
    """A JSONL corpus (documents without a newline, nor Shakespeare's characters) prepared into a folder
    inside its input folder: preparing again never reads the dataset's own files; the commands train.py
    names at its end run as printed; eval names a dataset prepared again since the training."""
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.jsonl").write_text("".join(json.dumps({"text": f"note {i}: a quick brown fox jumps over a dog"})
                                               + "\n" for i in range(60)))
    dataset, out = texts / "notes", tmp_path / "run"
    prepare = ("data/prepare.py", f"--input={texts}", "--tokenizer=char", f"--dataset={dataset}")
    run_script(*prepare)
    trained = run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={dataset}", f"--out_dir={out}")
    named = [line.split("python ", 1)[1].rsplit("   ", 1)[0].strip()
             for line in trained.stdout.splitlines() if "python " in line]
    assert [n.split()[0] for n in named] == ["sample.py", "eval.py", "attention.py"], trained.stdout
    for command in named:
        args = shlex.split(command)
        if args[0] == "attention.py":
            args.append(f"--pictures_dir={tmp_path / 'pictures'}")
        assert run_script(*args, check=False).returncode == 0, command
    reprepared = run_script(*prepare, "--split_seed=7", "--replace_dataset=true")
    assert "from 60 documents" in reprepared.stdout  # its own train.bin and val.bin were not read as text
    evaluated = run_script("eval.py", f"--out_dir={out}")
    assert "was prepared again since this model trained on it" in evaluated.stderr


def test_prepare_leaves_the_shipped_datasets_to_train_py(tmp_path):
    """A training config that names a shipped dataset, given to prepare with other text, would put that text where
    every later run of the config expects the plays."""
    (tmp_path / "notes.txt").write_text("my notes\n" * 50)
    assert_one_line_error(run_script("data/prepare.py", "configs/shakespeare_bpe.toml", f"--input={tmp_path}",
                                      check=False),
                          "data/shakespeare_bpe is the shipped shakespeare_bpe dataset", "give yours another --dataset")
    assert_one_line_error(run_script("data/prepare.py", f"--input={tmp_path}", f"--dataset={REPO / 'data'}/../data/"
                                     "shakespeare_char", check=False), "is the shipped shakespeare_char dataset")


def test_prepare_notes_a_validation_share_far_from_val_fraction(tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(4):
        (texts / f"short{i}.txt").write_text(f"short note {i}\n")
    (texts / "long.txt").write_text("A long essay about many things. " * 300)
    result = run_script("data/prepare.py", f"--input={texts}", "--tokenizer=char", f"--dataset={tmp_path / 'ds'}")
    assert "(validation: 1 whole document)" in result.stdout  # the long one or a short one: either is far off
    assert "note: validation holds" in result.stderr and "another --split_seed draws others" in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full, a device that is always full")
def test_output_a_terminal_cannot_encode_is_escaped_and_a_full_one_is_one_line():
    """Any command's printing goes through run_cli: output in cp1252 (a file written on Windows, say) gets the
    characters it lacks as escapes, as Python's stderr writes them, not a UnicodeEncodeError halfway through;
    output to a full disk is one line, exit status 2, however little of it there is (buffered: written at the end)."""
    import subprocess
    import sys

    def command(text: str) -> list[str]:
        return [sys.executable, "-c", f"from config.errors import run_cli; run_cli(lambda argv: print({text}))"]

    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    cp1252 = {**env, "PYTHONIOENCODING": "cp1252"}
    shown = subprocess.run(command("'caf\\u00e9 \\U0001f642' * 2000"), cwd=REPO, env=cp1252, capture_output=True)
    assert shown.returncode == 0 and shown.stdout.startswith("caf\xe9 \\U0001f642".encode("cp1252"))
    ascii_locale = {**env, "LC_ALL": "C", "PYTHONUTF8": "0"}  # ASCII, with surrogateescape
    shown = subprocess.run(command("'caf\\u00e9'"), cwd=REPO, env=ascii_locale, capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout == "caf\\xe9\n"
    utf8 = {**env, "LC_ALL": "C.UTF-8"}  # UTF-8 with surrogateescape: a path's undecodable byte is written back
    shown = subprocess.run(command("'d\\udcff'"), cwd=REPO, env=utf8, capture_output=True)
    assert shown.returncode == 0 and shown.stdout == b"d\xff\n"
    closed = subprocess.run(command("'x'"), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: os.close(1))  # started with its stdout closed
    assert closed.returncode == 0 and closed.stderr == ""
    for text in ("'x' * 20000", "'x'"):
        with open("/dev/full", "w") as full:
            result = subprocess.run(command(text), cwd=REPO, env=env, stdout=full, stderr=subprocess.PIPE, text=True)
        assert result.returncode == 2 and result.stderr == ("error: no space left on the device holding the output; "
                                                            "free some and run again\n")
