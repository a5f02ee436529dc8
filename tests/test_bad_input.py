"""Bad input: a one-line error with exit status 2, and nothing on disk harmed."""
from __future__ import annotations

import json
import math
import os
import re
import resource
import shlex
import shutil
import signal

import pytest
import torch

from helpers import TINY_TRAIN_FLAGS, assert_one_line_error, prepare_text, run_command, run_script, snapshot

pytestmark = pytest.mark.slow  # they use a trained run; most commands run in this process, one as a subprocess


@pytest.fixture
def run_dir(trained_out, char_dataset, tmp_path):
    shutil.copytree(trained_out, tmp_path / "out")
    shutil.copytree(char_dataset, tmp_path / "data")
    return tmp_path


def train(run_dir, *extra, out="out"):
    """train.py on run_dir's copy of the data, into run_dir/out (the earlier run) or a new folder run_dir/<out>."""
    return run_command("train.py", *TINY_TRAIN_FLAGS, f"--dataset={run_dir / 'data'}", f"--out_dir={run_dir / out}",
                       *extra)


@pytest.mark.parametrize("content, fragment", [
    (None, "not found"), (b" \n\n", "holds no text (it is empty or only whitespace)"),
    ("naïve".encode("latin-1"), "not UTF-8 (invalid byte at offset 2)"),
])
def test_prepare_rejects_bad_input_files(run_dir, content, fragment):
    source = run_dir / "input.txt"
    if content is not None:
        source.write_bytes(content)
    before = snapshot(run_dir / "data")
    result = run_command("data/prepare.py", f"--input={source}", f"--dataset={run_dir / 'data'}")
    assert_one_line_error(result, fragment)
    assert snapshot(run_dir / "data") == before


def test_a_model_too_large_to_train_here_is_refused_before_it_is_built(char_dataset, tmp_path):
    result = run_command("train.py", "configs/gpt3_175b.toml", f"--dataset={char_dataset}",
                         f"--out_dir={tmp_path / 'out'}")
    assert_one_line_error(result, "a model of 174,604,259,328 parameters", "GB to train (",  # params.py's count
                          "GB for its weights, gradients and the optimizer's", "choose a smaller shape")
    assert not (tmp_path / "out").exists()


def test_corpus_too_short_for_the_context(tmp_path):
    prepare_text("To be, or not to be, that is the question.\n" * 3, "char", tmp_path / "short")
    result = run_command("train.py", *TINY_TRAIN_FLAGS, f"--dataset={tmp_path / 'short'}", f"--out_dir={tmp_path / 'out'}",
                         "--block_size=64")
    assert_one_line_error(result, "split has", "too few for block_size=64", "smaller block_size")


@pytest.mark.parametrize("flag, fragment", [
    ("--n_head=3", "n_embd=32 must be divisible by n_head=3"),
    ("--n_layer=0", "n_layer=0 must be a positive integer"),
    ("--block_size=0", "block_size=0 must be a positive integer"),  # before the batches are cut
    ("--head_size=0", "head_size=0 must be a positive integer"),
    ("--mlp_hidden=0", "mlp_hidden=0 must be a positive integer"),  # not taken for none
    ("--n_kv_head=0", "n_kv_head=0 must be a positive integer"),
    ("--vocab_size=0", "vocab_size=0 is smaller than the dataset's vocabulary"),
    ("--rope_theta=0", "rope_theta=0.0 must be a positive number"),
    ("--norm_eps=-1", "norm_eps=-1.0 must be a positive number"),
    ("--beta2=1.5", "beta2=1.5 must be in [0, 1)"),
    ("--muon_momentum=2", "muon_momentum=2.0 must be in [0, 1)"),
    ("--weight_decay=-1", "weight_decay=-1.0 must not be negative"),
    ("--grad_clip=-1", "error: grad_clip=-1.0 must not be negative"),  # that key alone
    ("--learning_rate=-0.1", "learning_rate=-0.1 must be positive"),
    ("--max_iters=0", "max_iters=0 must be positive"),
    ("--batch_size=1.5", "batch_size must be int"),
    ("--eval_intervall=5", "did you mean 'eval_interval'"),
    ("--dtype=float16", "dtype=float16 has no fast path on a CPU (autocast runs it slower than float32)"),
    ("--n_embd=1000000000", "(n_embd=1,000,000,000, n_head=2, head_size=500,000,000, mlp_hidden=2,666,666,688, "
                            "vocab_size="),  # past int64 bytes: torch overflows
])
def test_impossible_settings(run_dir, flag, fragment):
    before = snapshot(run_dir)
    assert_one_line_error(train(run_dir, flag, out="new/out"), fragment)
    assert snapshot(run_dir) == before
    assert not (run_dir / "new").exists()  # a run that never began takes back the folders it made


def test_block_size_over_the_models_maximum(tmp_path, corpus_text):
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=32, n_embd=16, n_layer=1, n_head=2))
    hf.save_pretrained(tmp_path / "hf")
    prepare_text(corpus_text, "gpt2", tmp_path / "bpe")
    result = run_command("train.py", *TINY_TRAIN_FLAGS, f"--dataset={tmp_path / 'bpe'}", f"--out_dir={tmp_path / 'out'}",
                         f"--init_from={tmp_path / 'hf'}", "--block_size=64")
    assert_one_line_error(result, "block_size=64 is over this model's maximum of 32; use block_size=32 or less")
    unset = [f for f in TINY_TRAIN_FLAGS if not f.startswith(("--block_size", "--max_iters", "--lr_decay"))]
    run_script("train.py", *unset, "--max_iters=2", f"--dataset={tmp_path / 'bpe'}", f"--out_dir={tmp_path / 'out'}",
               f"--init_from={tmp_path / 'hf'}")  # the default block_size, 128: the model keeps its own context
    checkpoint = torch.load(tmp_path / "out" / "ckpt.pt", weights_only=True)
    assert checkpoint["model_args"]["block_size"] == checkpoint["config"]["block_size"] == 32


def test_missing_dataset_folder(run_dir):
    shutil.rmtree(run_dir / "data")
    assert_one_line_error(train(run_dir, out="new"), "not found", "python data/prepare.py --input=PATH",
                          f"--dataset={run_dir / 'data'}")
    assert "--replace_dataset" not in train(run_dir, out="new").stderr  # (run_dir / "data").mkdir() would need none


def test_text_given_as_the_dataset_is_named_as_text_to_prepare(run_dir):
    (run_dir / "notes").mkdir()
    (run_dir / "notes" / "a.txt").write_text("some text of the user's\n" * 20)
    for given in (run_dir / "notes", run_dir / "notes" / "a.txt"):
        flag = f"--dataset={given}/" if given.is_dir() else f"--dataset={given}"  # a folder with its slash
        result = run_command("train.py", *TINY_TRAIN_FLAGS, flag, f"--out_dir={run_dir / 'new'}")
        assert_one_line_error(result, "is no dataset folder (it has no meta.json)",
                              f"python data/prepare.py --input={given}",
                              "--dataset=NAME, or train on a shipped one (shakespeare_char, shakespeare_gpt2, "
                              "shakespeare_bpe)")
    # nanoGPT's name for the plays in GPT-2's tokens: here the folder of the shipped datasets' text
    assert_one_line_error(run_command("train.py", *TINY_TRAIN_FLAGS, "--dataset=shakespeare",
                                      f"--out_dir={run_dir / 'new'}"),
                          "holds the text of the shipped datasets, not a dataset; train on one of them: "
                          "shakespeare_char, shakespeare_gpt2 (GPT-2's tokens, as nanoGPT's shakespeare) or "
                          "shakespeare_bpe")


def test_meta_json_not_matching_its_bins(run_dir):
    train_bin = run_dir / "data" / "train.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-10])
    before = snapshot(run_dir)
    assert_one_line_error(train(run_dir, "--init_from=resume"), "inconsistent", "train.bin", "re-run python data/prepare.py")
    assert snapshot(run_dir) == before  # out/.lock too: its record is put back


def test_meta_json_that_is_no_object(run_dir):
    (run_dir / "data" / "meta.json").write_text("[]")
    for command in ("train.py", "params.py"):
        assert_one_line_error(run_command(command, f"--dataset={run_dir / 'data'}", f"--out_dir={run_dir / 'new'}"),
                              "inconsistent (its meta.json is not a JSON object); re-run python data/prepare.py")
    assert not (run_dir / "new").exists()


def test_resume_with_another_optimizer_is_refused_before_any_change_is_reported(run_dir, capsys):
    result = train(run_dir, "--init_from=resume", "--optimizer=adamw", "--max_iters=60")
    assert_one_line_error(result, "cannot resume: the checkpoint's optimizer is adamw + muon but the config asks "
                                  "for adamw")
    assert "resume:" not in capsys.readouterr().out


def test_resume_without_a_checkpoint(run_dir):
    (run_dir / "out" / "ckpt.pt").unlink()
    assert_one_line_error(train(run_dir, "--init_from=resume"), "ckpt.pt not found")


@pytest.mark.parametrize("script", ["train.py", "sample.py"])
def test_truncated_checkpoint(run_dir, script):
    ckpt = run_dir / "out" / "ckpt.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = snapshot(run_dir)
    if script == "train.py":
        result = train(run_dir, "--init_from=resume")
    else:
        result = run_command("sample.py", f"--out_dir={run_dir / 'out'}")
    assert_one_line_error(result, "damaged or truncated")
    if script == "train.py":  # the fix that train.py can take: it reads ckpt.pt alone
        assert "holds best.pt, of the run's best evaluation: copy it to ckpt.pt to resume from there" in result.stderr
    assert snapshot(run_dir) == before


def test_a_resumed_checkpoint_of_the_other_format_is_named_as_it_is(run_dir):
    """checkpoint_format=pt (the default) resumes a ckpt.safetensors: a refusal names that file, not a ckpt.pt."""
    from training.checkpoint import to_safetensors

    ckpt = run_dir / "out" / "ckpt.pt"
    state = torch.load(ckpt, weights_only=True)
    state["model"]["lm_head.weight"] = torch.zeros(3, 3)
    (run_dir / "out" / "ckpt.safetensors").write_bytes(to_safetensors(state))
    ckpt.unlink()
    result = train(run_dir, "--init_from=resume")
    assert_one_line_error(result, f"checkpoint {run_dir / 'out' / 'ckpt.safetensors'} does not match the model")


def test_checkpoint_from_an_incompatible_model(run_dir):
    ckpt = run_dir / "out" / "ckpt.pt"
    state = torch.load(ckpt, weights_only=True)
    state["model_args"]["n_layer"] = 5  # weights of 2 layers, described as 5
    torch.save(state, ckpt)
    result = run_command("sample.py", f"--out_dir={run_dir / 'out'}")
    assert_one_line_error(result, "does not match the model it describes")


@pytest.mark.parametrize("tokenizer", [["char"], {"kind": "bpe"}, {"kind": "bpe", "ranks": 5}, {"kind": "word"}])
def test_a_damaged_tokenizer_record_is_one_line_before_any_work(run_dir, tokenizer):
    """In a checkpoint: sample.py refuses it. In a dataset's meta.json: train.py refuses it before training (it
    was read only to sample and draw at the end) and leaves no out_dir."""
    ckpt = run_dir / "out" / "ckpt.pt"
    state = torch.load(ckpt, weights_only=True)
    state["tokenizer"] = tokenizer
    torch.save(state, ckpt)
    assert_one_line_error(run_command("sample.py", f"--out_dir={run_dir / 'out'}"),
                          f"{ckpt} does not describe a tokenizer as data/prepare.py writes one",
                          "use another checkpoint")
    meta = json.loads((run_dir / "data" / "meta.json").read_text())
    (run_dir / "data" / "meta.json").write_text(json.dumps({**meta, "tokenizer": tokenizer}))
    assert_one_line_error(train(run_dir, out="new"), "meta.json does not describe a tokenizer",
                          "re-run python data/prepare.py for its dataset")
    assert not (run_dir / "new").exists()


def test_weights_of_nan_are_one_line(run_dir):
    ckpt = run_dir / "out" / "ckpt.pt"
    state = torch.load(ckpt, weights_only=True)
    state["model"]["lm_head.weight"][3] = math.nan  # every logit nan: no token could be drawn
    torch.save(state, ckpt)
    for command in (["sample.py"], ["export.py", f"--hf_dir={run_dir / 'hf'}"]):  # eval.py scores them (none)
        assert_one_line_error(run_command(*command, f"--out_dir={run_dir / 'out'}"),
                              "holds weights that are nan or inf")


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickled_code_is_refused_not_run(run_dir):
    payload = RunsCode()
    payload.marker = run_dir / "code-ran"
    with open(run_dir / "out" / "ckpt.pt", "wb") as f:
        torch.save({"model": payload}, f)
    result = run_command("sample.py", f"--out_dir={run_dir / 'out'}")
    assert_one_line_error(result, "pickled objects or code", "not loaded")
    assert not (run_dir / "code-ran").exists()


@pytest.mark.parametrize("script", ["sample.py", "eval.py"])
def test_a_file_that_is_no_checkpoint(run_dir, script):
    result = run_command(script, f"--out_dir={run_dir / 'out'}", "--checkpoint=log.jsonl")
    assert_one_line_error(result, f"{run_dir / 'out' / 'log.jsonl'} is not a checkpoint (not a file torch.save "
                                  f"wrote); use one written by train.py")


def test_disk_full_while_writing_a_checkpoint(run_dir):
    """A file-size limit makes the checkpoint write fail the way a full disk does."""
    before = snapshot(run_dir / "out")
    limit = (run_dir / "out" / "ckpt.pt").stat().st_size // 2

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={run_dir / 'data'}", f"--out_dir={run_dir / 'out'}",
                        "--max_iters=40", "--init_from=resume", check=False, preexec_fn=small_disk)
    assert_one_line_error(result, "could not write checkpoint", "free disk space")
    after = snapshot(run_dir / "out")
    assert {k: after[k] for k in ("ckpt.pt", "best.pt")} == {k: before[k] for k in ("ckpt.pt", "best.pt")}
    assert not [name for name in after if "tmp" in name]  # no half-written file is left behind


def test_a_batch_past_the_memory_stops_with_one_line_that_says_how_to_go_on(run_dir):
    """A batch whose activations alone outgrow the machine is refused before anything is written. One that this
    floor lets through but the allocator cannot serve (the process's memory capped at 3 GB here) stops the resumed
    run with one line, its checkpoint intact; the command the line gives, at a smaller batch, goes on."""
    refused = train(run_dir, "--batch_size=100000000", out="new")
    assert_one_line_error(refused, "GB for the activations of a micro-batch of 100,000,000 x 32 tokens), more than",
                          "lower batch_size (a higher gradient_accumulation_steps keeps the tokens per step)")
    assert not (run_dir / "new").exists()
    planned = run_command("train.py", f"--dataset={run_dir / 'data'}", f"--out_dir={run_dir / 'new'}",
                          "--time_budget=1m", "--batch_size=100000000")  # refused before its probes build a batch
    assert_one_line_error(planned, "no shape the time budget can pick fits your keys (the first it tried: a model of ",
                          "lower batch_size")
    assert not (run_dir / "new").exists()
    before = (run_dir / "out" / "ckpt.pt").read_bytes()

    def small_memory():
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    result = run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={run_dir / 'data'}", f"--out_dir={run_dir / 'out'}",
                        "--init_from=resume", "--max_iters=24", "--batch_size=20000", check=False,
                        preexec_fn=small_memory)
    assert_one_line_error(result, "error: out of memory (an allocation of ",
                          " failed) with micro-batches of 20,000 x 32",
                          "(step 20), is intact: resume it with smaller micro-batches",
                          "--init_from=resume --batch_size=N",
                          "(N under 20,000; a higher --gradient_accumulation_steps keeps the tokens per step)")
    assert (run_dir / "out" / "ckpt.pt").read_bytes() == before
    command = re.search(r"smaller micro-batches, (.*) \(N under", result.stderr)[1].replace("=N", "=8")
    assert shlex.split(command)[:2] == ["python", "train.py"] and "--batch_size=20000" not in command
    assert "step 24:" in run_script(*shlex.split(command)[1:]).stdout


def test_a_diverging_loss_stops_training_and_keeps_the_last_checkpoint(run_dir):
    """Weight decay times learning rate far above 2 makes the weights blow up within a few steps."""
    before = (run_dir / "out" / "ckpt.pt").read_bytes()
    handlers = [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)]
    result = train(run_dir, "--init_from=resume", "--max_iters=40", "--learning_rate=100", "--muon_lr=100", "--decay_lr=false",
                   "--weight_decay=1")
    # the loop ran in this process: its Ctrl-C handling ended with it
    assert [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)] == handlers
    assert_one_line_error(result, "training stopped", "(step 20), is intact", "--init_from=resume")
    assert "--muon_lr=100" not in result.stderr and "--muon_lr=M (N under 100, M under 100;" in result.stderr
    # the loss is read where it is logged (every 5 steps here): the error names the steps since the last read
    assert re.search(r"error: loss is (nan|inf|-inf) in steps (2[1-9]|3\d) to (2[5-9]|3\d|40);", result.stderr)
    assert (run_dir / "out" / "ckpt.pt").read_bytes() == before


def test_an_update_that_breaks_the_weights_reaches_neither_the_log_nor_a_checkpoint(char_dataset, tmp_path):
    """At this learning rate an update leaves nan weights although the loss read before it was finite: its
    evaluation stops the run, before the log or a checkpoint sees it."""
    out = tmp_path / "out"
    result = run_command("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", "--max_iters=4", "--eval_iters=1",
                         "--eval_interval=1", "--n_layer=1", "--n_embd=32", "--block_size=16", "--batch_size=2",
                         "--learning_rate=1e6", "--min_lr=1e5", "--sample_tokens=0")
    assert_one_line_error(result, "training stopped, the last good checkpoint", "resume it at lower learning rates")
    assert "--learning_rate=1e6" not in result.stderr
    assert "--learning_rate=N --muon_lr=M (N under 1e+06, M under 0.02; min_lr at most N)" in result.stderr
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in log.jsonl"))
            for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows and all(math.isfinite(row["val_loss"]) for row in rows if row["kind"] == "eval")
    for name in ("ckpt.pt", "best.pt"):
        assert all(t.isfinite().all() for t in torch.load(out / name, weights_only=True)["model"].values())


@pytest.mark.parametrize("flag, fragment", [
    ("--max_new_tokens=0", "max_new_tokens=0 must be positive"),
    ("--max_new_tokens=-3", "max_new_tokens=-3 must be positive"),
    ("--prompt=Zebra", "character 'Z' is not in this model's vocabulary"),
    ("--top_p=1.5", "top_p=1.5 must be in (0, 1]"),
    ("--num_samples=100000000", "num_samples=100,000,000 needs at least 1,"),  # TB of KV cache: before any allocation
    # uncached, one block's float32 activations, 32 wide + 128 in the MLP, over the longest window: 63 tokens (2
    # layers of RoPE windows of 32), or 5 (the prompt's newline and 4 of the 5 tokens: the last is never read)
    ("--num_samples=100000000 --use_cache=false", "needs at least 4,032.0 GB for its activations"),
    ("--num_samples=100000000 --use_cache=false --max_new_tokens=5", "needs at least 320.0 GB for its activations, "),
    ("--prompt=FILE:/nonexistent/prompt.txt", "prompt file /nonexistent/prompt.txt not found"),
    ("--prompt=FILE:/", "prompt file / cannot be read: Is a directory"),
    ("--prompt=FILE:/dev/zero", "prompt file /dev/zero holds over 64 MiB; give a shorter text"),  # never ends
    ("--stop=\\", "--stop has a broken escape sequence (\\ at end of string)"),
    ("--prompt=ab\udce9", "--prompt holds '\\udce9', which is not text (a byte the shell passed undecoded"),
    ("--stop=\udce9", "--stop holds '\\udce9', which is not text (a byte the shell passed undecoded"),
    ("--checkpoint=", "checkpoint= names no file; name a checkpoint file in out_dir: ckpt.pt or best.pt"),
    ("--checkpoint=.", "checkpoint=. names no file; name a checkpoint file in out_dir"),
    ("--checkpoint=./", "checkpoint=./ names no file"),
    ("--checkpoint=ckpt.pt/..", "checkpoint=ckpt.pt/.. names no file"),
    ("--out_dir={out}/none", "checkpoint {out}/none/ckpt.pt not found; train one with python train.py (and the same "
                             "config files) --out_dir={out}/none"),
    ("--out_dir={data}", "out_dir={data} is a dataset's folder, not a run's; give the out_dir of a run"),
    ("--checkpoint=latest.pt", "latest.pt not found; {out} holds best.pt, ckpt.pt: choose one with --checkpoint"),
    ("--checkpoint=run/best.pt", "checkpoint=run/best.pt is a file name in out_dir ({out}), not a path; "
                                 "give the run's folder as --out_dir, the file's name as --checkpoint"),
    ("--out_dir={out}/ckpt.pt", "out_dir={out}/ckpt.pt is a file, not a run's folder; give --out_dir={out} "
                                "--checkpoint=ckpt.pt"),
    ("--out_dir={out}/log.jsonl", "out_dir={out}/log.jsonl is a file, not a run's folder; give the folder of a "
                                  "train.py run"),
])
def test_sample_rejects_bad_requests(trained_out, char_dataset, flag, fragment):
    places = {"out": trained_out, "data": char_dataset}
    result = run_command("sample.py", f"--out_dir={trained_out}", *flag.format(**places).split(" "))
    assert_one_line_error(result, fragment.format(**places))


def test_a_checkpoint_path_from_here_is_offered_as_out_dir_and_file(trained_out, tmp_path, monkeypatch):
    (tmp_path / "a run").symlink_to(trained_out)
    monkeypatch.chdir(tmp_path)
    result = run_command("sample.py", f"--out_dir={trained_out}", "--checkpoint=a run/best.pt")
    assert_one_line_error(result, "give '--out_dir=a run' --checkpoint=best.pt")  # as the shell takes it


def test_a_folder_where_the_checkpoint_should_be_is_named_as_such(tmp_path):
    (tmp_path / "ckpt.pt").mkdir()
    for command, *flags in (("sample.py",), ("eval.py",), ("params.py", "--init_from=resume")):
        assert_one_line_error(run_command(command, f"--out_dir={tmp_path}", *flags),
                              f"checkpoint {tmp_path / 'ckpt.pt'} is not a file; move it away")


def test_a_dataset_folder_named_bare_as_out_dir_is_offered_back_as_a_path(tmp_path, monkeypatch):
    from pathlib import Path

    from config.errors import UserError
    from training.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "meta.json").write_text("{}")
    with pytest.raises(UserError, match=r"^out_dir=mydata is a dataset's folder, not a run's; give the out_dir of a "
                                        r"run \(python train.py --dataset=\./mydata --out_dir=DIR trains one\)$"):
        load_checkpoint(Path("mydata") / "ckpt.pt")  # --dataset=mydata would be data/mydata


def test_cpu_0_is_the_cpu_a_checkpoint_loads_onto(trained_out):
    result = run_script("sample.py", f"--out_dir={trained_out}", "--device=cpu:0", "--max_new_tokens=5", check=False)
    assert result.returncode == 0, result.stderr  # torch.load takes no index for the CPU: it said "damaged"


@pytest.mark.parametrize("device", ["meta", "gpu", "xpu"])
def test_a_device_this_project_does_not_run_on_is_one_line(trained_out, device):
    assert_one_line_error(run_command("sample.py", f"--out_dir={trained_out}", f"--device={device}"),
                          f"device='{device}' is not a device this project runs on; use auto, cpu, cuda, cuda:N or mps")


def test_a_path_the_os_refuses_is_one_line(tmp_path):
    """Past the errors each command foresees: a name longer than the file system takes, a loop of links."""
    long_name = tmp_path / ("y" * 300)
    assert_one_line_error(run_command("sample.py", f"--out_dir={long_name}"),
                          f"{long_name}", "cannot be used (file name too long); give another path")
    (tmp_path / "loop.toml").symlink_to(tmp_path / "loop.toml")
    assert_one_line_error(run_command("sample.py", str(tmp_path / "loop.toml")),
                          "loop.toml cannot be used (too many levels of symbolic links)")
