"""A resumed run is the same run: after a stop, a Ctrl-C or a SIGKILL at any moment."""
from __future__ import annotations

import json
import math
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import REPO, run_main, run_script, wait_for_step
from training.metrics_log import read_rows

pytestmark = pytest.mark.slow  # the commands run as subprocesses

# dropout on, so resume must also restore the random generator behind the dropout masks
RUN_FLAGS = [
    "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--dropout=0.1",
    "--lr_decay_iters=120", "--warmup_iters=5", "--eval_iters=2", "--log_interval=1", "--sample_tokens=0",
    "--device=cpu",
]


def train(dataset, out_dir, *extra, check=True):
    return run_script("train.py", *RUN_FLAGS, f"--dataset={dataset}", f"--out_dir={out_dir}", *extra, check=check)


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def uninterrupted(char_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    train(char_dataset, out, "--max_iters=120", "--eval_interval=10")
    return out


def test_stop_and_resume_reproduces_the_uninterrupted_run(char_dataset, tmp_path, uninterrupted):
    train(char_dataset, tmp_path, "--max_iters=30", "--eval_interval=10", "--replace_run=true")
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"] == 30
    resumed = train(char_dataset, tmp_path, "--max_iters=120", "--eval_interval=10", "--init_from=resume")
    assert "resume: max_iters changed from 30 to 120" in resumed.stdout
    assert "replace_run" not in resumed.stdout  # how the first run started is no change to the training
    assert_same_weights(weights(tmp_path / "ckpt.pt"), weights(uninterrupted / "ckpt.pt"))


def test_the_log_records_the_learning_rate_of_each_update(uninterrupted):
    """RUN_FLAGS' schedule written out: a 5-step linear warmup to the default peak, 1e-2, then a cosine decay to the
    default min_lr, 1e-3, at step 120; the row of step s holds the rate of the update that made it."""
    def rate(update: int) -> float:
        if update < 5:
            return 1e-2 * (update + 1) / 6
        return 1e-3 + (1e-2 - 1e-3) * 0.5 * (1 + math.cos(math.pi * (update - 5) / (120 - 5)))

    rows = [row for row in read_rows(uninterrupted / "log.jsonl") if row["kind"] == "batch"]
    assert len(rows) == 120
    assert [row["lr"] for row in rows] == pytest.approx([rate(row["step"] - 1) for row in rows])


def test_a_resume_names_a_change_in_the_number_of_processes_with_its_tokens_per_step():
    from dataclasses import asdict

    from config.settings import TrainConfig
    from training.init_from import resume_changes

    cfg = TrainConfig(batch_size=4, block_size=32, gradient_accumulation_steps=2)
    checkpoint = {"config": asdict(cfg), "loader": {"epoch": 0, "cursor": 0, "world_size": 2}}
    assert resume_changes(checkpoint, cfg, 2) == []
    assert resume_changes(checkpoint, cfg, 1) == ["resume: processes changed from 2 to 1, tokens per step from 512 "
                                                  "to 256"]
    del checkpoint["loader"]["world_size"]  # a checkpoint written before it was recorded: no note, not a KeyError
    assert resume_changes(checkpoint, cfg, 1) == []
    budgeted = {"config": asdict(cfg) | {"time_budget": "20s"}, "loader": {}}  # resumed without --time_budget
    assert resume_changes(budgeted, cfg, 1) == [f"resume: without the time budget (20s): the run trains to "
                                                f"max_iters={cfg.max_iters}, with no deadline"]


def test_a_bare_resume_continues_the_run_as_it_was(char_dataset, tmp_path, uninterrupted):
    """Only the folder and the new steps: the batch, the schedule, dropout, the dataset are the run's own."""
    train(char_dataset, tmp_path, "--max_iters=30", "--eval_interval=10")
    resumed = run_script("train.py", f"--out_dir={tmp_path}", "--init_from=resume", "--max_iters=120")
    changes = [line for line in resumed.stdout.splitlines() if line.startswith("resume:")]
    assert changes == ["resume: max_iters changed from 30 to 120"]
    assert_same_weights(weights(tmp_path / "ckpt.pt"), weights(uninterrupted / "ckpt.pt"))
    moved = run_script("train.py", f"--out_dir={tmp_path}", "--init_from=resume", "--max_iters=130",
                       "--dataset=elsewhere/data", check=False)  # given: a folder that is not there, named as given
    assert moved.returncode == 2 and "elsewhere/data" in moved.stderr
    stretched = run_script("train.py", f"--out_dir={tmp_path}", "--init_from=resume", "--max_iters=140",
                           "--lr_decay_iters=none", "--warmup_iters=none", "--eval_interval=20")
    assert "resume: warmup_iters changed from 5 to 14" in stretched.stdout  # none: the run's max_iters, not 1000's
    assert "resume: lr_decay_iters changed from 120 to 140" in stretched.stdout
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    checkpoint["config"]["dataset"] = "relative/data"  # as a run started in another folder records it
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    lost = run_script("train.py", f"--out_dir={tmp_path}", "--init_from=resume", "--max_iters=130", check=False)
    assert lost.stderr.strip() == ("error: the run's dataset, relative/data as its checkpoint records it, is not "
                                   "found from here; give its folder with --dataset=PATH")


def test_a_resume_trains_with_the_dropout_it_is_given(char_dataset, tmp_path):
    """dropout holds no weights: a resume may change it, and the resumed steps then drop (the checkpoint says so)."""
    train(char_dataset, tmp_path / "first", "--max_iters=10", "--eval_interval=10")
    losses = {}
    for dropout in (0.0, 0.5):
        out = tmp_path / f"dropout-{dropout}"
        shutil.copytree(tmp_path / "first", out)
        train(char_dataset, out, "--max_iters=20", "--eval_interval=10", "--init_from=resume", f"--dropout={dropout}")
        assert torch.load(out / "ckpt.pt", weights_only=True)["model_args"]["dropout"] == dropout
        losses[dropout] = [row["train_loss"] for row in read_rows(out / "log.jsonl") if row["step"] > 10]
    assert len(losses[0.0]) == 10 + 1 and all(a != b for a, b in zip(losses[0.0], losses[0.5]))  # 10 steps, 1 eval


def test_a_resume_names_what_it_ignores_or_lost_and_checks_the_runs_own_min_lr(char_dataset, tmp_path):
    """min_lr=1e-5 is the run's: a resume at 0.0005 (under the default min_lr) goes ahead, one under 1e-5 does not."""
    train(char_dataset, tmp_path, "--max_iters=5", "--eval_interval=5", "--min_lr=1e-5", "--learning_rate=0.003")
    (tmp_path / "log.jsonl").unlink()
    resumed = train(char_dataset, tmp_path, "--max_iters=10", "--eval_interval=5", "--init_from=resume",
                    "--learning_rate=5e-4", "--replace_run=true")
    assert "note: --replace_run=true ignored: a resume goes on with the run it finds" in resumed.stderr
    assert "note: out_dir holds no log.jsonl: the log and loss.png start at step 5" in resumed.stderr
    result = train(char_dataset, tmp_path, "--max_iters=15", "--eval_interval=5", "--init_from=resume",
                   "--learning_rate=1e-6", check=False)
    assert result.stderr.strip() == ("error: min_lr=1e-05 (the run's: give --min_lr too) must be between 0 and "
                                     "learning_rate=1e-06")


def test_resume_refuses_a_different_model_shape(char_dataset, tmp_path):
    train(char_dataset, tmp_path, "--max_iters=10", "--eval_interval=10")
    before = (tmp_path / "ckpt.pt").read_bytes()
    result = train(char_dataset, tmp_path, "--max_iters=20", "--eval_interval=10", "--n_layer=3",
                   "--init_from=resume", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: cannot resume: n_layer=3 but the checkpoint was trained with "
                                     "n_layer=2; use the same setting or a new out_dir")
    assert (tmp_path / "ckpt.pt").read_bytes() == before


def start_training(dataset, out_dir, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "train.py", *RUN_FLAGS, f"--dataset={dataset}", f"--out_dir={out_dir}", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_saves_and_resumes_exactly(char_dataset, tmp_path, uninterrupted):
    process = start_training(char_dataset, tmp_path, "--max_iters=120", "--eval_interval=1000", "--replace_run=true",
                             "--log_interval=13")
    shown = wait_for_step(process, 25)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    saved_step = torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"]
    assert shown <= saved_step < 120  # steps done before the signal are kept; the run stopped early
    assert read_rows(tmp_path / "log.jsonl")[-1]["step"] == saved_step  # logged where it stopped, between intervals
    resume = stderr.splitlines()[-1]  # the command to resume: it must not replace the run it resumes
    assert "--init_from=resume" in resume and "--replace_run" not in resume
    train(char_dataset, tmp_path, "--max_iters=120", "--eval_interval=10", "--init_from=resume")
    assert_same_weights(weights(tmp_path / "ckpt.pt"), weights(uninterrupted / "ckpt.pt"))


def stop_at_step_20_while(monkeypatch, in_evaluation: bool):
    """train.py's main, whose runs each get one SIGINT at step 20: while the evaluation reads its first batch, or once
    it has drawn loss.png (a Ctrl-C in the middle of the evaluation, or after its losses)."""
    import train as train_py

    set_up_run, plot_loss = train_py.set_up_run, train_py.plot_loss
    state = {}

    def stopping_at_step_20(*args):  # each run its own SIGINT
        run = state["run"] = set_up_run(*args)
        state["sent"] = False
        if in_evaluation:
            next_batch = run.eval_loaders["train"].next_batch
            run.eval_loaders["train"].next_batch = lambda: (stop_at_20(), next_batch())[1]
        return run

    def stop_at_20():  # once: a second SIGINT takes the OS's action, which would end pytest
        if state["run"].progress.step == 20 and not state["sent"]:
            state["sent"] = True
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train_py, "set_up_run", stopping_at_step_20)
    if not in_evaluation:
        monkeypatch.setattr(train_py, "plot_loss", lambda *args: (plot_loss(*args), stop_at_20()))
    return train_py.main


def stopped(main, *flags):
    handler = signal.getsignal(signal.SIGINT)
    try:
        return run_main(main, *flags)
    finally:
        signal.signal(signal.SIGINT, handler)  # the stop leaves the OS's action for the next one


def test_a_stop_during_an_evaluation_cuts_it_short_and_the_resume_makes_it(char_dataset, tmp_path, uninterrupted,
                                                                          monkeypatch):
    """Ctrl-C in a lone process's evaluation ends the run at once, not after the whole evaluation and a step more;
    its checkpoint owes that evaluation, which the resume makes first (a stop there too ends it at once): the same
    evaluations, best.pt and weights."""
    main = stop_at_step_20_while(monkeypatch, in_evaluation=True)
    flags = [*RUN_FLAGS, "--eval_interval=10", "--log_interval=7", f"--dataset={char_dataset}", f"--out_dir={tmp_path}"]
    assert stopped(main, *flags, "--max_iters=120").returncode == 128 + signal.SIGINT  # step 20 is not a logged one
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    rows = read_rows(tmp_path / "log.jsonl")
    assert checkpoint["iter_num"] == 20 and checkpoint["evaluation_owed"] == rows[-1]["lr"]  # the step's rate
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [10]  # none at step 20: it was cut short
    assert (rows[-1]["kind"], rows[-1]["step"]) == ("batch", 20)
    with open(tmp_path / "log.jsonl", "a") as log:  # as a process killed in the owed evaluation, past its row, leaves
        log.write(json.dumps({"kind": "eval", "step": 20, "tokens": 1, "elapsed_s": 1.0, "val_loss": 9.0}) + "\n")
    assert stopped(main, *flags, "--max_iters=120", "--init_from=resume").returncode == 128 + signal.SIGINT
    owing = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert owing["evaluation_owed"] == checkpoint["evaluation_owed"]  # still owed
    train(char_dataset, tmp_path, "--max_iters=20", "--eval_interval=10", "--log_interval=7", "--init_from=resume")
    made = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert "evaluation_owed" not in made and made["elapsed_s"] > owing["elapsed_s"]  # made, its time counted
    assert [r["step"] for r in read_rows(tmp_path / "log.jsonl") if r["kind"] == "eval"] == [10, 20]
    train(char_dataset, tmp_path, "--max_iters=120", "--eval_interval=10", "--log_interval=7", "--init_from=resume")
    assert_same_weights(weights(tmp_path / "ckpt.pt"), weights(uninterrupted / "ckpt.pt"))
    assert_same_weights(weights(tmp_path / "best.pt"), weights(uninterrupted / "best.pt"))
    evaluations = [(r["step"], r["val_loss"], r["lr"]) for r in read_rows(tmp_path / "log.jsonl") if r["kind"] == "eval"]
    assert evaluations == [(r["step"], r["val_loss"], r["lr"]) for r in read_rows(uninterrupted / "log.jsonl")
                           if r["kind"] == "eval"]


def test_a_stop_once_an_evaluation_has_its_losses_ends_the_run_at_that_step(char_dataset, tmp_path, monkeypatch):
    main = stop_at_step_20_while(monkeypatch, in_evaluation=False)
    assert stopped(main, *RUN_FLAGS, "--eval_interval=10", "--log_interval=7", "--max_iters=40",
                   f"--dataset={char_dataset}", f"--out_dir={tmp_path}").returncode == 128 + signal.SIGINT
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert checkpoint["iter_num"] == 20 and "evaluation_owed" not in checkpoint  # not a step more
    rows = read_rows(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [10, 20]
    assert (rows[-1]["kind"], rows[-1]["step"]) == ("eval", 20)  # its row holds the step: no batch row after it


def kill_during_a_write(process: subprocess.Popen, folder, timeout: float = 10.0) -> None:
    """SIGKILL as soon as a checkpoint's temporary file appears: mid-write."""
    deadline = time.monotonic() + timeout
    while not any(folder.glob(".ckpt.pt.*.tmp")):
        assert time.monotonic() < deadline and process.poll() is None, "no checkpoint write seen"
    process.kill()


def test_after_a_stop_signal_the_os_action_stays_for_the_next_one_past_the_loop_too():
    """With the earlier handlers back once the loop stopped, a second signal in the run's teardown raised a
    KeyboardInterrupt wherever it landed (a weakref callback in gc: a traceback, and the signal swallowed)."""
    from train import StopSignals

    stops = (signal.SIGINT, signal.SIGTERM)
    earlier = [signal.getsignal(signum) for signum in stops]
    try:
        with StopSignals(announce=False):
            pass
        assert [signal.getsignal(signum) for signum in stops] == earlier  # no signal: as it found them
        with StopSignals(announce=False) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            while stop.received is None:  # the handler runs between two bytecodes of this thread
                time.sleep(0.01)
        assert [signal.getsignal(signum) for signum in stops] == [signal.SIG_DFL, signal.SIG_DFL]
    finally:
        for signum, handler in zip(stops, earlier):
            signal.signal(signum, handler)


def test_sigkill_at_random_moments_never_breaks_a_checkpoint(char_dataset, tmp_path, uninterrupted):
    """Checkpoints at every step; every other kill waits for a write to be under way, until two kills have
    landed in one (a small checkpoint's write can end between the sight of its file and the kill)."""
    rng = random.Random(0)
    saved = tmp_path / "ckpt.pt"
    kills = kills_during_write = 0
    while kills < 4 or kills_during_write < 2:
        assert kills < 12, f"only {kills_during_write} of {kills} kills landed during a checkpoint write"
        start = torch.load(saved, weights_only=True)["iter_num"] if saved.exists() else 0
        resume = ["--init_from=resume"] if saved.exists() else []
        process = start_training(char_dataset, tmp_path, "--max_iters=120", "--eval_interval=1", *resume)
        if kills % 2:
            wait_for_step(process, start + 1)  # past start-up, into the loop
            kill_during_a_write(process, tmp_path)
        else:
            # step start + 2 is shown once step start + 1's checkpoint is written, however loaded the machine
            wait_for_step(process, start + 2)
            time.sleep(rng.uniform(0.0, 1.5))
            process.kill()
        process.communicate()
        assert process.returncode == -signal.SIGKILL, "the run finished before it was killed"
        kills += 1
        kills_during_write += any(tmp_path.glob(".*.pt.*.tmp"))
        if saved.exists():
            torch.load(saved, weights_only=True)  # readable after every kill
    assert saved.exists()
    # to the end with the uninterrupted run's evaluations: an evaluation at every step costs most of the time
    train(char_dataset, tmp_path, "--max_iters=120", "--eval_interval=10", "--init_from=resume")
    assert_same_weights(weights(saved), weights(uninterrupted / "ckpt.pt"))


def test_a_resume_from_an_older_checkpoint_says_which_steps_it_runs_again(char_dataset, tmp_path):
    """With always_save_checkpoint=false, ckpt.pt holds the best step. A learning rate this high makes the
    second evaluation far worse than the first (about 66 against 25), so the run ends past its checkpoint."""
    flags = ["--warmup_iters=1", "--eval_interval=1", "--learning_rate=3", "--always_save_checkpoint=false"]
    finished = train(char_dataset, tmp_path, "--max_iters=2", *flags)
    assert f"the run: {tmp_path / 'ckpt.pt'} (step 1: with always_save_checkpoint=false" in finished.stdout
    log = (tmp_path / "log.jsonl").read_bytes()
    idle = train(char_dataset, tmp_path, "--max_iters=1", *flags, "--init_from=resume")  # nothing to train
    assert "nothing to train" in idle.stderr and "dropped" not in idle.stderr
    assert (tmp_path / "log.jsonl").read_bytes() == log  # no step runs again: the log stays whole
    resumed = train(char_dataset, tmp_path, "--max_iters=3", *flags, "--init_from=resume")
    assert ("note: log.jsonl went on to step 2; its rows after step 1, the checkpoint's, were dropped, as those "
            "steps are run again") in resumed.stderr
    steps = [row["step"] for row in read_rows(tmp_path / "log.jsonl") if row["kind"] == "eval"]
    assert steps == [1, 2, 3]


def test_the_resume_command_starts_as_many_processes(monkeypatch, tmp_path):
    from train import resume_command
    from training.distributed import Ranks

    argv = ["configs/classic.toml", "--out_dir=my run", "--replace_run=true"]
    assert resume_command(argv, Ranks()) == \
        "python train.py configs/classic.toml '--out_dir=my run' --init_from=resume"
    assert resume_command(argv, Ranks(1, 4, 4)) == \
        "torchrun --standalone --nproc_per_node=4 train.py configs/classic.toml '--out_dir=my run' --init_from=resume"
    assert resume_command(argv, Ranks(0, 8, 4)).startswith("torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend")
    resumed = ["a.toml", "--max_iters=60", "--out_dir=o", "b.toml", "--max_iters=400", "--init_from=resume"]
    assert resume_command(resumed, Ranks()) == "python train.py a.toml --out_dir=o b.toml --max_iters=400 " \
                                               "--init_from=resume"  # the value that counts, once; files all kept
    monkeypatch.chdir(tmp_path)  # started from another folder: the script as reached from there
    assert resume_command(argv, Ranks()).startswith(f"python {os.path.relpath(REPO / 'train.py')} configs/")


def test_a_stop_in_the_last_step_skips_the_closing_sample(char_dataset, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the last step evaluates: the run is finished and saved, and the command ends as asked, not
    after a closing sample that may take minutes."""
    import train

    evaluate = train.evaluate_and_save

    def evaluate_then_stop(run, bar, lr, latest=True, stop=None):
        evaluated = evaluate(run, bar, lr, latest, stop)
        if run.progress.step == run.cfg.max_iters:
            os.kill(os.getpid(), signal.SIGINT)
        return evaluated

    monkeypatch.setattr(train, "evaluate_and_save", evaluate_then_stop)
    handler = signal.getsignal(signal.SIGINT)
    try:
        flags = [f for f in RUN_FLAGS if not f.startswith("--sample_tokens")]
        result = run_main(train.main, *flags, "--max_iters=4", "--eval_interval=4", "--sample_tokens=50",
                          f"--dataset={char_dataset}", f"--out_dir={tmp_path}")
    finally:
        signal.signal(signal.SIGINT, handler)  # the stop leaves the OS's action for the next one
    printed = capsys.readouterr().out
    assert result.returncode == 128 + signal.SIGINT and "best val loss" in printed and "--- sample ---" not in printed
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"] == 4


@pytest.mark.slow
def test_a_reader_that_leaves_stops_the_run_with_its_evaluations_checkpoint_written(char_dataset, tmp_path):
    """`python train.py | head -3`: the evaluation's line is printed after its checkpoint is written, so the write
    that meets the closed pipe ends a run whose checkpoint holds the last evaluation logged."""
    from helpers import TINY_TRAIN_FLAGS

    process = subprocess.Popen([sys.executable, "train.py", *TINY_TRAIN_FLAGS, "--eval_interval=10", "--max_iters=400",
                                f"--dataset={char_dataset}", f"--out_dir={tmp_path}"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # each line as printed, as a terminal
    lines = [process.stdout.readline() for _ in range(3)]  # the model, the batch, the first evaluation
    process.stdout.close()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE and lines[2].startswith("step 10: ")
    evaluated = [row["step"] for row in read_rows(tmp_path / "log.jsonl") if row["kind"] == "eval"]
    assert evaluated[-1] > 10  # an evaluation whose line met the closed pipe
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"] == evaluated[-1]


def test_a_command_whose_path_starts_with_a_dash_is_not_read_as_an_option(tmp_path, monkeypatch):
    import train

    monkeypatch.setattr(train, "__file__", str(tmp_path / "-gpt" / "train.py"))  # a clone named -gpt, run from above
    monkeypatch.chdir(tmp_path)
    assert train.script("sample.py") == "./-gpt/sample.py"


def test_the_closing_lines_name_only_what_the_run_wrote(char_dataset, tmp_path):
    """A run stopped before its first evaluation, resumed with nothing to train: no best val loss, no best.pt."""
    process = subprocess.Popen([sys.executable, "train.py", *RUN_FLAGS, f"--dataset={char_dataset}",
                                f"--out_dir={tmp_path}", "--max_iters=100", "--eval_interval=50"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(process, 3)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    resumed = train(char_dataset, tmp_path, "--max_iters=2", "--eval_interval=50", "--init_from=resume")
    assert "best val loss" not in resumed.stdout
    assert f"the run: {tmp_path / 'ckpt.pt'} (latest) and log.jsonl in {tmp_path}\n" in resumed.stdout


def test_with_only_best_pt_written_the_next_commands_read_it(tmp_path):
    """always_save_checkpoint=false and no evaluation better than a fine-tune's first: best.pt alone is there."""
    import train
    from config.settings import TrainConfig
    from data.tokenizer import CharTokenizer

    (tmp_path / "best.pt").write_bytes(b"")
    (tmp_path / "log.jsonl").write_text("")
    tokenizer = CharTokenizer.from_text("To be, or not to be\n")
    run = SimpleNamespace(out_dir=tmp_path, latest=tmp_path / "ckpt.pt", saved_step=None,
                          progress=SimpleNamespace(step=20), cfg=TrainConfig(always_save_checkpoint=False),
                          dataset=SimpleNamespace(tokenizer=tokenizer, val=np.array(tokenizer.encode("not to be"))),
                          model=SimpleNamespace(config=SimpleNamespace(block_size=64)))
    lines = train.next_commands(run).splitlines()
    assert lines[0] == f"the run: best.pt and log.jsonl in {tmp_path}"
    assert all("--checkpoint=best.pt" in line for line in lines[1:])


@pytest.mark.parametrize("block_size, text", [(32, None), (16, "Shall I compare ")])
def test_the_next_attention_command_gives_a_text_that_fits_the_context(tmp_path, block_size, text):
    """attention.py's default text is 28 characters: a shorter context is shown the validation text's start."""
    import train
    from config.settings import TrainConfig
    from data.tokenizer import CharTokenizer

    tokenizer = CharTokenizer.from_text("To be, or not to be, that is\nShall I compare thee to a summer's day?")
    run = SimpleNamespace(out_dir=tmp_path, latest=tmp_path / "ckpt.pt", saved_step=20,
                          progress=SimpleNamespace(step=20), cfg=TrainConfig(),
                          dataset=SimpleNamespace(tokenizer=tokenizer,
                                                  val=np.array(tokenizer.encode("Shall I compare thee to a summer's"))),
                          model=SimpleNamespace(config=SimpleNamespace(block_size=block_size)))
    attention = train.next_commands(run).splitlines()[-1]
    assert ("--text=" in attention) == (text is not None)
    if text is not None:
        assert shlex.split(attention)[3] == f"--text={text}"


def test_a_float16_resume_of_a_run_without_a_loss_scale_starts_one():
    """A run trained in bfloat16 or float32 saved an empty GradScaler state; float16 resumes it at a fresh scale."""
    from config.settings import TrainConfig
    from data.loader import BatchLoader
    from model import GPT, GPTConfig
    from training.checkpoint import Progress, checkpoint_payload, restore_training_state
    from training.distributed import Ranks
    from training.optimizer import build_optimizers

    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=50))
    cfg = TrainConfig(block_size=8)
    optimizers = build_optimizers(model, cfg, torch.device("cpu"))
    loader = BatchLoader(np.arange(200) % 50, 8, 2, 0)
    dataset = SimpleNamespace(meta={"fingerprint": "0" * 64, "tokenizer": {"kind": "char"}})
    checkpoint = checkpoint_payload(model, optimizers, torch.amp.GradScaler("cpu", enabled=False), cfg, dataset,
                                    Progress(), loader)
    assert checkpoint["scaler"] == {}
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    restore_training_state(checkpoint, optimizers, scaler, loader, Ranks(), 0)
    assert scaler.get_scale() == torch.amp.GradScaler("cpu").get_scale()


def test_a_run_started_with_ctrl_c_ignored_trains_through_it(char_dataset, tmp_path):
    """A shell's background job (`python train.py &`) starts with SIGINT ignored: the Ctrl-C typed for the shell's
    foreground command is not the run's, which trains on to its end."""
    process = subprocess.Popen([sys.executable, "train.py", *RUN_FLAGS, f"--dataset={char_dataset}",
                                f"--out_dir={tmp_path}", "--max_iters=30", "--eval_interval=30"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for_step(process, 3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0 and "SIGINT" not in stderr
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"] == 30
