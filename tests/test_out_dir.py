"""Nothing on disk is harmed by where a command writes: output paths checked before any work,
one run per out_dir (an OS lock that dies with its process), and a fresh start that never
buries an earlier run."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from config.device import resolve_dtype
from config.errors import UserError
from config.outputs import check_output
from config.settings import TrainConfig
from helpers import REPO, TINY_TRAIN_FLAGS, assert_one_line_error, run_command, run_script, snapshot
from training.checkpoint import claim_out_dir, load_checkpoint
from viz.loss_plot import drawn_by


@pytest.fixture
def place(tmp_path) -> Path:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-dataset").mkdir()
    (tmp_path / "a-dataset" / "meta.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize("name, folder, message", [
    ("a-file", True, "out {place}/a-file is a file, not a folder; choose another --out"),
    ("a-folder", False, "out {place}/a-folder is a folder, not a file; choose another --out"),
    ("a-file/new/x", True, "out {place}/a-file/new/x cannot be created: {place}/a-file is a file, not a folder; choose another --out"),
    ("a-file/x.html", False, "out {place}/a-file/x.html cannot be created: {place}/a-file is a file, not a folder; choose another --out"),
    # where prepare would then refuse to replace the dataset, as a folder holding files not its own
    ("a-dataset", True, "out {place}/a-dataset is a dataset's folder: nothing else belongs among its token files; "
                        "choose another --out"),
    ("a-dataset/x.png", False, "out {place}/a-dataset/x.png lies in a dataset's folder: nothing else belongs among "
                               "its token files; choose another --out"),
    ("a-dataset/run/deeper", True, "out {place}/a-dataset/run/deeper lies in a dataset's folder ({place}/a-dataset): "
                                   "nothing else belongs among its token files; choose another --out"),
])
def test_an_output_path_of_the_wrong_kind_is_refused_with_the_true_cause(place, name, folder, message):
    before = snapshot(place)
    with pytest.raises(UserError) as refused:
        check_output(place / name, "out", folder=folder)
    assert str(refused.value) == message.format(place=place)
    assert snapshot(place) == before


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs Linux's /sys, where no one may create files")
@pytest.mark.parametrize("path, message", [
    ("/sys", "out /sys is not writable (Permission denied)"),
    ("/sys/new/x", "out /sys/new/x cannot be written in /sys (Permission denied)"),
])
def test_an_output_path_the_os_refuses_names_the_os_cause(path, message):
    with pytest.raises(UserError, match=rf"^{message}; choose another --out$".replace("(", r"\(").replace(")", r"\)")):
        check_output(path, "out", folder=True)


@pytest.mark.slow
@pytest.mark.parametrize("command, key", [("train.py", "out_dir"), ("attention.py", "pictures_dir")])
def test_an_empty_output_path_is_refused_not_taken_for_the_current_folder(tmp_path, command, key):
    """--out_dir=$UNSET: the current folder would get the run's files."""
    result = run_script(str(REPO / command), f"--{key}=", "--device=cpu", cwd=tmp_path, check=False)
    assert_one_line_error(result, f"{key} is empty; name a folder: --{key}=...")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("key, message", [("dataset", "--dataset is empty; give a dataset's name under data/"),
                                          ("init_from", "--init_from is empty; give scratch, resume")])
def test_an_empty_dataset_or_start_is_refused_not_taken_for_a_folder(tmp_path, key, message):
    result = run_script(str(REPO / "train.py"), f"--{key}=", f"--out_dir={tmp_path / 'out'}", check=False)
    assert_one_line_error(result, message)
    assert list(tmp_path.iterdir()) == []


def test_a_writable_output_path_passes_and_nothing_is_created(place):
    before = snapshot(place)
    assert check_output(place / "new" / "deeper", "out", folder=True) == place / "new" / "deeper"
    assert check_output(place / "a-folder" / "page.html", "out", folder=False) == place / "a-folder" / "page.html"
    assert snapshot(place) == before and sorted(p.name for p in place.iterdir()) == ["a-dataset", "a-file", "a-folder"]


def train_config(out_dir: Path, **keys) -> TrainConfig:
    return TrainConfig(out_dir=str(out_dir), **keys)


def test_one_run_per_out_dir_and_the_lock_names_its_holder(tmp_path):
    first = claim_out_dir(train_config(tmp_path / "out"), TRAIN_PY)
    assert (tmp_path / "out" / ".lock").read_text().startswith(f"pid {os.getpid()}: ")
    with pytest.raises(UserError, match=rf"out_dir {tmp_path / 'out'} is in use by another run \(pid {os.getpid()}: "):
        claim_out_dir(train_config(tmp_path / "out"), TRAIN_PY)  # a second descriptor: flock refuses it, even here
    first.release()
    claim_out_dir(train_config(tmp_path / "out"), TRAIN_PY).release()


@pytest.mark.parametrize("name", ["loss.png", "log.jsonl", "best.pt"])
def test_a_folder_where_the_run_writes_a_file_is_refused_before_it_starts(tmp_path, name):
    """Not mid-run, at the first evaluation's write, with the steps before it lost."""
    (tmp_path / "out" / name).mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=rf"^out_dir {tmp_path / 'out'} holds a folder named {name}, where the run "
                                        rf"writes a file of that name; move it away or choose another --out_dir$"):
        claim_out_dir(train_config(tmp_path / "out"), TRAIN_PY)
    assert snapshot(tmp_path) == before


def test_a_run_that_never_began_leaves_out_dir_as_it_found_it(tmp_path):
    claim_out_dir(train_config(tmp_path / "new" / "out"), TRAIN_PY).abandon()
    assert list(tmp_path.iterdir()) == []  # the folders it made are gone
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".lock").write_text("pid 1: an earlier run\n")
    before = snapshot(tmp_path)
    claim_out_dir(train_config(tmp_path / "out"), TRAIN_PY).abandon()
    assert snapshot(tmp_path) == before


TRAIN_PY = drawn_by("train.py")  # what train.py passes: its own pictures are the ones it redraws


def picture(path: Path, software: str | None) -> None:
    """A one-pixel PNG, with software in its Software text field (the mark save_png gives what it draws)."""
    info = PngInfo()
    if software is not None:
        info.add_text("Software", software)
    Image.new("RGB", (1, 1)).save(path, pnginfo=info)


def test_fresh_start_over_a_checkpoint_needs_overwrite_which_removes_only_the_runs_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("ckpt.pt", "best.pt", "log.jsonl", "notes.txt", ".ckpt.pt.4242.tmp", ".other.tmp"):
        (out / name).write_text(name)
    picture(out / "loss.png", "smallgpt train.py")
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="holds an earlier run .*--init_from=resume.*new --out_dir.*--replace_run=true"):
        claim_out_dir(train_config(out), TRAIN_PY)
    assert snapshot(tmp_path) == before  # not even a lock file
    claimed = claim_out_dir(train_config(out, replace_run=True), TRAIN_PY)
    assert snapshot(tmp_path).keys() == before.keys() | {"out/.lock"}  # nothing removed before the run is built
    claimed.begin(replace_earlier_run=True)
    claimed.release()
    assert sorted(p.name for p in out.iterdir()) == [".lock", ".other.tmp", "notes.txt"]
    (out / "best.pt").write_text("the best of a run whose ckpt.pt was deleted")
    with pytest.raises(UserError, match=r"holds an earlier run \(best.pt\); start this one in a new --out_dir"):
        claim_out_dir(train_config(out), TRAIN_PY)
    (out / "best.pt").unlink()
    (out / "log.jsonl").write_text("")  # what a refused start (a compile that failed) leaves: nothing to keep
    claim_out_dir(train_config(out), TRAIN_PY).release()
    (out / "log.jsonl").write_text('{"kind": "batch", "step": 1}\n')  # a run killed before its first checkpoint
    with pytest.raises(UserError, match=r"holds an earlier run \(log.jsonl\); start this one in a new --out_dir"):
        claim_out_dir(train_config(out), TRAIN_PY)
    with pytest.raises(UserError, match=rf"^checkpoint {out / 'ckpt.pt'} not found: the run in {out} stopped before "
                                        r"its first checkpoint, so there is nothing to resume; start it again as it "
                                        r"began \(--init_from=scratch, or the model it fine-tuned\) with "
                                        r"--replace_run=true$"):
        claim_out_dir(train_config(out, init_from="resume"), TRAIN_PY)
    claim_out_dir(train_config(out, replace_run=True), TRAIN_PY).release()  # which that message offers
    claimed = claim_out_dir(train_config(out, replace_run=True), TRAIN_PY)  # a run in its first steps, alive
    with pytest.raises(UserError, match=rf"^checkpoint {out / 'best.pt'} not found yet: the run in {out} is still "
                                        rf"training \(pid {os.getpid()}: .*\), and saves its checkpoints at its "
                                        r"evaluations; try again after one$"):
        load_checkpoint(out / "best.pt")
    claimed.release()
    with pytest.raises(UserError, match=rf"^checkpoint {out / 'best.pt'} not found: the run in {out} stopped before "
                                        rf"its first checkpoint; train it again with python train.py \(and the same "
                                        rf"config files\) --out_dir={out} --replace_run=true$"):
        load_checkpoint(out / "best.pt")  # sample.py's, eval.py's


@pytest.mark.parametrize("name", ["loss.png", "attention.png"])
@pytest.mark.parametrize("init_from, replace_run", [("scratch", False), ("scratch", True), ("resume", False)])
def test_a_picture_of_the_users_in_out_dir_is_never_drawn_over(tmp_path, name, init_from, replace_run):
    """A run redraws loss.png and attention.png; a file of that name that train.py did not draw is the user's."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "ckpt.pt").write_text("a run's checkpoint")
    for kind, make in [("unmarked", lambda p: picture(p, None)), ("another command's", lambda p: picture(p, "smallgpt "
                       "compare.py")), ("not a picture", lambda p: p.write_text("notes"))]:
        make(out / name)
        before = snapshot(tmp_path)
        with pytest.raises(UserError, match=rf"^out_dir={out / name} is a picture train.py did not write, which it "
                                            rf"never replaces; choose another --out_dir$"):
            claim_out_dir(train_config(out, init_from=init_from, replace_run=replace_run), TRAIN_PY)
        assert snapshot(tmp_path) == before, kind
    (out / name).unlink()
    (out / name).symlink_to(tmp_path / "elsewhere.png")  # the new picture would take the link's place
    with pytest.raises(UserError, match=rf"^out_dir: {out / name} is a symbolic link, which is never replaced"):
        claim_out_dir(train_config(out, init_from=init_from, replace_run=replace_run), TRAIN_PY)
    (out / name).unlink()
    picture(out / name, "smallgpt train.py")  # the run's own, from an earlier evaluation
    with pytest.raises(UserError, match=f"{name} is a picture train.py did not write"):  # the mark is what tells
        claim_out_dir(train_config(out, init_from=init_from, replace_run=replace_run), drawn_by("compare.py"))
    claim_out_dir(train_config(out, init_from=init_from, replace_run=replace_run or init_from == "scratch"),
                  TRAIN_PY).release()


def test_resume_without_a_checkpoint_is_refused_before_anything_is_made(tmp_path):
    with pytest.raises(UserError, match="ckpt.pt not found, so there is nothing to resume"):
        claim_out_dir(train_config(tmp_path / "out", init_from="resume"), TRAIN_PY)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "best.safetensors").write_text("the best of a run whose latest checkpoint was deleted")
    with pytest.raises(UserError, match=r"ckpt.pt not found; .* holds best.safetensors, of the run's best evaluation: "
                                        r"copy it to ckpt.safetensors to resume from there"):
        claim_out_dir(train_config(tmp_path / "out", init_from="resume"), TRAIN_PY)


@pytest.mark.parametrize("init_from", ["scratch", "resume"])
def test_a_dataset_folder_is_no_run_folder(tmp_path, init_from):
    """Not even a fresh start, which would write checkpoints and a log among its token files."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.json").write_text("{}")
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=rf"^out_dir {tmp_path / 'data'} is a dataset's folder: nothing else belongs"):
        claim_out_dir(train_config(tmp_path / "data", init_from=init_from), TRAIN_PY)
    assert snapshot(tmp_path) == before


def test_float16_on_a_cpu_is_refused():
    with pytest.raises(UserError, match="^dtype=float16 has no fast path on a CPU .*use --dtype=bfloat16 or float32$"):
        resolve_dtype("float16", torch.device("cpu"))
    assert resolve_dtype("bfloat16", torch.device("cpu")) == "bfloat16"


@pytest.mark.slow
def test_bfloat16_asked_of_a_cpu_that_emulates_it_is_noted(char_dataset, tmp_path, monkeypatch, capsys):
    flags = [*TINY_TRAIN_FLAGS, "--max_iters=1", "--eval_iters=1", "--batch_size=2", "--sample_tokens=0",
             "--dtype=bfloat16", f"--dataset={char_dataset}"]
    note = "note: this CPU has no bfloat16 arithmetic and emulates it"
    result = run_script("train.py", *flags, f"--out_dir={tmp_path / 'here'}")
    assert "device cpu, bfloat16" in result.stdout
    native = {"avx512_bf16", "amx_tile"} & set(Path("/proc/cpuinfo").read_text().split())  # what Linux says it has
    assert (note in result.stderr) != bool(native)
    import train

    for instructions in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # a CPU without either
        monkeypatch.setattr(torch.cpu, instructions, lambda: False)
    with torch.random.fork_rng():  # train.py seeds torch's generator, which later tests must not inherit
        train.main([*flags, f"--out_dir={tmp_path / 'emulating'}"])
    assert note in capsys.readouterr().err


# ---- the commands, as subprocesses ----

def train(dataset, out_dir, *extra, check=False):
    return run_script("train.py", *TINY_TRAIN_FLAGS, "--sample_tokens=0", f"--dataset={dataset}", f"--out_dir={out_dir}",
                      *extra, check=check)


@pytest.fixture
def earlier_run(trained_out, char_dataset, tmp_path) -> Path:
    """tmp_path holding a copy of a finished run (out/) and of its dataset (data/)."""
    shutil.copytree(trained_out, tmp_path / "out")
    shutil.copytree(char_dataset, tmp_path / "data")
    return tmp_path


SHORT = ["--max_iters=20", "--lr_decay_iters=20", "--eval_interval=10"]


@pytest.mark.slow
def test_two_runs_on_one_out_dir_one_proceeds_as_if_alone(char_dataset, tmp_path):
    command = [sys.executable, "train.py", *TINY_TRAIN_FLAGS, *SHORT, "--sample_tokens=0", f"--dataset={char_dataset}",
               f"--out_dir={tmp_path / 'shared'}"]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    stderr = [run.communicate(timeout=300)[1] for run in runs]
    assert sorted(run.returncode for run in runs) == [0, 2]
    winner, loser = sorted(range(2), key=lambda i: runs[i].returncode)
    winner = runs[winner].pid
    assert stderr[loser].count("\n") == 1 and stderr[loser].startswith(
        f"error: out_dir {tmp_path / 'shared'} is in use by another run (pid {winner}: train.py ")
    assert (tmp_path / "shared" / ".lock").read_text().startswith(f"pid {winner}: ")
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == [".lock", "best.pt", "ckpt.pt", "log.jsonl",
                                                                       "loss.png"]
    train(char_dataset, tmp_path / "alone", *SHORT, check=True)
    shared, alone = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True)["model"] for d in ("shared", "alone"))
    assert all(torch.equal(shared[k], alone[k]) for k in alone)
    assert (tmp_path / "shared" / "log.jsonl").read_bytes().count(b'"kind": "batch"') == 4  # steps 5, 10, 15, 20 once


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.pwrite(fd, f"pid {os.getpid()}: a run in progress\\n".encode(), 0)
print("locked", flush=True)
time.sleep(300)
"""


@pytest.mark.slow
def test_a_held_out_dir_is_refused_untouched_and_free_once_its_holder_dies(earlier_run):
    out = earlier_run / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        before = snapshot(earlier_run)
        refused = train(earlier_run / "data", out, "--init_from=resume", "--max_iters=30")
        assert_one_line_error(refused, f"is in use by another run (pid {holder.pid}: a run in progress)")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert snapshot(earlier_run) == before
    train(earlier_run / "data", out, "--init_from=resume", "--max_iters=30", check=True)  # the lock died with it
    assert torch.load(out / "ckpt.pt", weights_only=True)["iter_num"] == 30


@pytest.mark.slow
def test_a_fresh_start_never_buries_an_earlier_run(earlier_run):
    out = earlier_run / "out"
    before = snapshot(earlier_run)
    assert_one_line_error(train(earlier_run / "data", out), f"out_dir {out} holds an earlier run",
                          "--init_from=resume", "--replace_run=true")
    assert snapshot(earlier_run) == before
    # overwritten, then stopped by a diverging loss: the message knows no checkpoint is left
    result = train(earlier_run / "data", out, "--replace_run=true", "--learning_rate=100", "--decay_lr=false",
                   "--weight_decay=1")
    assert_one_line_error(result, "training stopped, no checkpoint was written yet")
    assert not (out / "ckpt.pt").exists() and not (out / "best.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command, message", [
    (["train.py", *TINY_TRAIN_FLAGS, "--dataset={root}/no-such-data", "--out_dir={root}/out/ckpt.pt"],
     "out_dir {root}/out/ckpt.pt is a file, not a folder; choose another --out_dir"),
    (["eval.py", "--out_dir={root}/no-run", "--surprise={root}/out/log.jsonl/page.html"],
     "surprise {root}/out/log.jsonl/page.html cannot be created: {root}/out/log.jsonl is a file, not a folder"),
    (["eval.py", "--out_dir={root}/no-run", "--surprise={root}/out/ckpt.pt"],
     "surprise={root}/out/ckpt.pt is written as a web page; give a file name ending in .html"),
    (["eval.py", "--out_dir={root}/no-run", "--text_file={root}/page.html", "--surprise={root}/./page.html"],
     "surprise={root}/./page.html is the text being evaluated; choose another --surprise"),
    (["attention.py", "--out_dir={root}/no-run", "--pictures_dir={root}/out/log.jsonl/pictures"],
     "pictures_dir {root}/out/log.jsonl/pictures cannot be created: {root}/out/log.jsonl is a file, not a folder"),
])
def test_output_paths_are_checked_before_any_work(earlier_run, command, message):
    """The inputs (dataset, checkpoint) are missing too: the output is checked first."""
    before = snapshot(earlier_run)
    result = run_command(*(arg.format(root=earlier_run) for arg in command))
    assert_one_line_error(result, message.format(root=earlier_run))
    assert snapshot(earlier_run) == before
