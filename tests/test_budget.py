"""--time_budget: the planner as a pure function of the probe's timings, and a real budgeted run."""
from __future__ import annotations

import dataclasses
import re
import signal
import subprocess
import sys
import time
import types
from datetime import datetime

import pytest
import torch

from config.errors import UserError
from config.settings import TrainConfig, read_config
from helpers import (REPO, TINY_TRAIN_FLAGS, assert_one_line_error, planned_steps, run_command, run_script,
                     wait_for_step)
from training.metrics_log import read_rows
from training.budget import (MARGIN, MIN_STEPS, BYTES_PER_PARAMETER, Pace, Plan, Probed, candidate_shapes,
                             corrected_steps, deadline_due, dial, overhead_s, plan_run, steps_in_time)


def probes(depths=range(2, 13)) -> list[Probed]:
    """Timings of the kind a CPU gives: a step's cost grows with the parameters and the context."""
    found = []
    for d in depths:
        params = 12 * d * (32 * d) ** 2 + 2 * 65 * 32 * d
        found.append(Probed(dial(d), params, step_s=2e-9 * params * 32 * d + 0.005, forward_s=6e-10 * params * 32 * d,
                            token_s=0.001 + 1e-9 * params))
    return found


def plan(argv: list[str], budget_s: float, spent_s: float = 3.0, bytes_per_token: float = 1.0) -> Plan:
    cfg = read_config(TrainConfig, [f"--time_budget={budget_s}s", *argv])
    return plan_run(probes(), cfg, budget_s, spent_s, 1, bytes_per_token)


def test_the_plan_line_dates_an_end_past_today(monkeypatch):
    from training import budget

    monkeypatch.setattr(budget, "process_age_s", lambda: 0.0)  # the end counts from now, not the worker's start
    clock = datetime(2026, 6, 1, 12, 0, 0)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None) -> datetime:
            return clock

    monkeypatch.setattr(budget, "datetime", Clock)  # the suite's own clock may stand a minute before midnight
    for budget_s, end in ((60, "12:01:00"), (48 * 3600, "2026-06-03 12:00")):  # today's time, or a later date
        planned = plan([], budget_s)
        assert planned.line(planned.keys["eval_interval"]).endswith(f"; ends about {end}")
    clock = datetime(2026, 6, 1, 23, 59, 30)  # a minute's budget that ends past midnight
    planned = plan([], 60)
    assert planned.line(planned.keys["eval_interval"]).endswith("; ends about 2026-06-02 00:00")
    assert ", 1 evaluation; ends" in planned.line(planned.steps)  # one, at the end


def test_a_longer_budget_never_plans_a_smaller_model_or_fewer_tokens():
    plans = [plan([], budget) for budget in (40, 60, 120, 300, 600, 1800, 3600, 7200)]
    params = [p.params for p in plans]
    tokens = [p.steps * p.tokens_per_step for p in plans]
    assert params == sorted(params) and tokens == sorted(tokens) and params[-1] > params[0]
    for p in plans:  # the schedule follows the steps, which fit the time planned for them
        assert p.keys["lr_decay_iters"] == p.keys["max_iters"] == p.steps >= MIN_STEPS
        assert p.keys["warmup_iters"] == p.steps // 10 and p.steps * p.step_s <= p.budget_s
    ratios = [p.steps * p.tokens_per_step * p.bytes_per_token / p.params for p in plans]  # they straddle the rule
    assert min(ratios) < BYTES_PER_PARAMETER * 2 and max(ratios) > BYTES_PER_PARAMETER / 2


def test_text_is_counted_in_bytes_so_longer_tokens_plan_a_larger_model():
    """A BPE token carries several bytes of text: the same time's tokens feed more parameters."""
    for budget in (120, 600, 3600):
        chars, bpe = plan([], budget), plan([], budget, bytes_per_token=3.4)
        assert bpe.params > chars.params
        for p in (chars, bpe):  # each is the shape whose bytes of text per parameter come closest to the rule
            ratio = p.steps * p.tokens_per_step * p.bytes_per_token / p.params
            assert BYTES_PER_PARAMETER / 4 < ratio < BYTES_PER_PARAMETER * 4
    bpe = plan([], 600, bytes_per_token=3.4)
    assert f"{bpe.steps * bpe.tokens_per_step * 3.4 / bpe.params:.1f} bytes of text" in bpe.line(100)


def test_keys_set_by_the_user_are_kept_and_named():
    p = plan(["--batch_size=32", "--n_layer=3"], 600)
    assert "n_layer" not in p.keys and p.fixed == ["batch_size", "n_layer"]
    assert p.line(p.keys["eval_interval"]).endswith("kept: batch_size, n_layer")
    steps = plan(["--max_iters=100"], 600)
    assert steps.steps == 100 and "max_iters" not in steps.keys
    bigger = next(q for q in probes() if q.params > steps.params)  # the largest model that takes them in time
    cfg = read_config(TrainConfig, ["--time_budget=600s", "--max_iters=100"])
    assert 100 * bigger.step_s + overhead_s(bigger, cfg) > 600 * (1 - MARGIN) - 3.0
    cfg = read_config(TrainConfig, ["--time_budget=1m", "--n_layer=6", "--n_head=6"])
    shapes = candidate_shapes(cfg, vocab_size=65)
    assert shapes and all(s["n_layer"] == 6 and s["n_head"] == 6 and s["n_embd"] % 6 == 0 for s in shapes)


@pytest.fixture
def probing(monkeypatch):
    """make(*flags, **meta): make_plan for a 600 s budget with the probe's timings a function of the depth, d^3 / 100 s
    a step; and the depths it probed."""
    from training import budget
    from training.distributed import Ranks

    probed = []

    def timed(cfg, vocab_size, device, dtype):  # parameters, seconds per step, forward pass and sampled token
        probed.append(cfg.n_layer)
        return 12 * cfg.n_layer * cfg.n_embd**2, 0.01 * cfg.n_layer**3, 0.001 * cfg.n_layer, 0.001

    monkeypatch.setattr(budget, "time_steps", timed)
    monkeypatch.setattr(budget, "process_age_s", lambda: 3.0)
    meta = {"train_bytes": 10**6, "train_tokens": 10**6, "val_tokens": 10**5, "vocab_size": 65}

    def make(*argv: str, **data: int) -> Plan:
        probed.clear()
        cfg = read_config(TrainConfig, ["--time_budget=600s", "--sample_tokens=0", *argv])
        return budget.make_plan(cfg, meta | data, torch.device("cpu"), "float32", Ranks())
    return make, probed


def test_with_the_users_max_iters_the_probe_goes_on_to_the_largest_shape_that_takes_them(probing):
    """The bytes-per-parameter rule that ends the probe for a planned schedule says nothing of the user's steps."""
    make, probed = probing
    p = make("--max_iters=20")
    assert probed[-1] == 15  # 20 steps of depth 15 take 675 s: the first shape over the budget
    assert p.steps == 20 and p.shape["n_layer"] == 14  # 549 s of steps, with its evaluations in the margin
    assert p.line(p.keys["eval_interval"]).count("ends about") == 1


def test_the_probe_stops_at_the_first_shape_whose_steps_and_evaluations_overrun_and_fits_the_datas_context(probing):
    """The probe takes time from the budget: it goes no further than the plan can use. The evaluations count (with
    400 batches each, depth 14's twenty steps no longer fit); a max_iters under MIN_STEPS is refused before any
    probing; and no shape's context is longer than a window of the dataset's shorter split."""
    make, probed = probing
    p = make("--max_iters=20", "--eval_iters=400")
    assert probed[-1] == 14 and p.shape == dial(13)
    with pytest.raises(UserError, match="max_iters=5 is under the 20 steps"):
        make("--max_iters=5")
    assert not probed
    p = make(val_tokens=100)  # 99 tokens and the one after them: depth 3's context of 96 at most
    assert max(probed) == 3 and p.shape == dial(3)
    with pytest.raises(UserError, match="block_size=64 is over the 59 tokens a window of the dataset's splits holds"):
        make(val_tokens=60)  # no context of the dial fits


def test_a_schedule_key_given_as_none_follows_the_plans_steps():
    p = plan(["--warmup_iters=none", "--lr_decay_iters=none"], 600)
    assert p.fixed == [] and p.keys["warmup_iters"] == p.steps // 10 and p.keys["lr_decay_iters"] == p.steps


def test_a_budget_too_short_is_refused_naming_the_smallest_that_works():
    with pytest.raises(UserError, match=r"too short to train even the smallest shape for 20 steps here; "
                                        r"give at least (\d+)s") as refused:
        plan([], 3.5)
    smallest = int(refused.value.args[0].rsplit("at least ", 1)[1].removesuffix("s"))
    assert plan([], smallest).steps >= MIN_STEPS
    with pytest.raises(UserError, match=r"give at least (\d+)s") as refused:  # an evaluation every step
        plan(["--eval_interval=1"], 3.5)
    smallest = int(refused.value.args[0].rsplit("at least ", 1)[1].removesuffix("s"))
    assert plan(["--eval_interval=1"], smallest).steps >= MIN_STEPS
    with pytest.raises(UserError, match=r"the smallest shape for your max_iters=100000 here"):  # the steps the user asked for
        plan(["--max_iters=100000"], 60)
    # each past a year: the largest cost is named
    for keys, slowest in ((["--max_iters=10000000000"], "max_iters"), (["--eval_iters=10000000000"], "eval_iters"),
                          (["--sample_tokens=100000000000"], "sample_tokens"),
                          (["--max_iters=1000000000", "--eval_interval=1"], "eval_iters, or raise eval_interval")):
        with pytest.raises(UserError, match=rf"here; no budget up to a year \(8760h\) would do; lower {slowest}$"):
            plan(keys, 60)
    with pytest.raises(UserError, match=r"max_iters=5 is under the 20 steps a time budget trains at least"):
        plan(["--max_iters=5"], 3600)


def test_a_probe_that_would_outlast_the_budget_is_refused_before_it_runs(char_dataset, tmp_path):
    """Ten million micro-batches a step: the smallest shape's probe would take hours, and no Ctrl-C cuts into it."""
    started = time.perf_counter()
    result = run_command("train.py", "--time_budget=1h", "--gradient_accumulation_steps=10000000", "--device=cpu",
                         f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'out'}")
    assert_one_line_error(result, "time_budget=1h is too short to time even the smallest shape here: a step of "
                                  "160,000,000 x 64 tokens takes at least ", "and the probe takes 6; lower batch_size, "
                                  "gradient_accumulation_steps or block_size, or give over ")
    assert time.perf_counter() - started < 30 and not (tmp_path / "out").exists()


def test_the_steps_are_corrected_once_when_the_pace_is_off_by_more_than_a_fifth():
    p = plan([], 600)
    assert corrected_steps(p, 10, p.step_s * 1.15, 10 * p.step_s) is None
    slower = corrected_steps(p, 10, p.step_s * 2, 10 * p.step_s * 2)
    assert slower == 10 + int((p.train_s - 20 * p.step_s) // (2 * p.step_s)) < p.steps
    p.corrected = True
    assert corrected_steps(p, 10, p.step_s * 2, 0) is None


def test_the_deadline_fits_the_steps_to_the_pace_measured_within_the_schedule():
    p = plan([], 600)
    every = p.keys["eval_interval"]
    at = 2 * every  # the second evaluation is due; the first one's time is in the elapsed seconds
    elapsed_s = at * p.step_s + p.evaluation_s
    on_plan = dict(step_s=p.step_s, evaluation_s=p.evaluation_s)
    assert steps_in_time(p, at, every, elapsed_s, **on_plan) is None
    assert steps_in_time(p, at, every, 1.005 * elapsed_s, **on_plan) is None  # off by under 1%: it stands
    slower = dict(step_s=1.15 * p.step_s, evaluation_s=1.15 * p.evaluation_s)
    late = steps_in_time(p, at, every, elapsed_s, **slower)
    assert at < late < p.steps
    evaluations = sum(1 for step in range(at, late + 1) if step % every == 0 or step == late)
    end_s = elapsed_s + (late - at) * slower["step_s"] + evaluations * slower["evaluation_s"]  # at that pace
    assert p.loop_s - slower["step_s"] - slower["evaluation_s"] < end_s <= p.loop_s
    p.steps = late  # a run cut short that then catches up gets its steps back, and goes on past the decay at min_lr
    faster = dict(step_s=0.8 * p.step_s, evaluation_s=p.evaluation_s)
    ahead = steps_in_time(p, at, every, elapsed_s, **faster)
    assert ahead > p.keys["lr_decay_iters"]
    evaluations = sum(1 for step in range(at, ahead + 1) if step % every == 0 or step == ahead)
    end_s = elapsed_s + (ahead - at) * faster["step_s"] + evaluations * faster["evaluation_s"]
    assert p.loop_s - faster["step_s"] - faster["evaluation_s"] < end_s <= p.loop_s


def test_the_deadline_cuts_the_users_max_iters_to_end_in_time_but_never_adds_to_it():
    """A config file's max_iters (configs/classic.toml sets one) is kept by the plan; a machine that turns out
    slower than the probe still ends the run in time, by cutting those steps, and the plan keeps no max_iters of
    its own, so the resume command (which gives the file again) holds."""
    import train
    from tqdm import tqdm

    from training.checkpoint import Progress
    from training.distributed import Ranks

    cfg = read_config(TrainConfig, ["--time_budget=600s", "--max_iters=2000", "--eval_interval=500"])
    p = plan_run(probes(), cfg, 600, 3.0, 1, 1.0)
    assert "max_iters" not in p.keys and p.steps == 2000  # not corrected: the deadline holds before that too
    at = 400
    assert p.loop_s - 2000 * p.step_s - 4 * p.evaluation_s > 0  # the user's steps fit the plan's loop time
    for pace_factor, expected in ((0.5, 2000), (3.0, None)):  # faster: the user's steps stand; slower: cut
        run = types.SimpleNamespace(plan=p, cfg=dataclasses.replace(cfg, **p.keys), ranks=Ranks(),
                                    device=torch.device("cpu"), progress=Progress(at, elapsed_s=0.0))
        run.progress.elapsed_s = at * pace_factor * p.step_s
        with tqdm(disable=True) as bar:
            train.keep_the_deadline(run, bar, Pace(0, 0.0))
        if expected is not None:
            assert run.cfg.max_iters == expected
        else:
            slow_s = pace_factor * p.step_s
            assert at < run.cfg.max_iters < 2000 and "max_iters" not in p.keys
            assert run.progress.elapsed_s + (run.cfg.max_iters - at) * slow_s <= p.loop_s  # ends in its time


def test_a_deadline_check_before_the_warmups_end_corrects_the_plan_there():
    """A machine slow from the start, or a long warmup of the user's: the first check fits the steps and the
    schedule to the pace measured, rather than wait for the warmup's end."""
    import train
    from tqdm import tqdm

    from training.checkpoint import Progress
    from training.distributed import Ranks

    for users_warmup, slower in [([], 3), ([], 30), (["--warmup_iters=100000"], 3)]:
        cfg = read_config(TrainConfig, ["--time_budget=600s", *users_warmup])
        p = plan_run(probes(), cfg, 600, 3.0, 1, 1.0)
        at, probe_s, planned = 50, p.step_s, p.steps
        run = types.SimpleNamespace(plan=p, cfg=dataclasses.replace(cfg, **p.keys), ranks=Ranks(),
                                    device=torch.device("cpu"), progress=Progress(at, elapsed_s=slower * at * probe_s))
        with tqdm(disable=True) as bar:
            train.keep_the_deadline(run, bar, Pace(0, 0.0))  # `slower` times as slow as the probe said
        assert p.corrected and p.step_s == pytest.approx(slower * probe_s)
        assert run.cfg.max_iters == run.cfg.lr_decay_iters == p.steps == pytest.approx(planned / slower, abs=1)
        # the plan's warmup, a tenth of its steps, stays (the steps so far keep their rates) unless it would outlast
        # the run, and is then cut to a tenth of the new steps; the user's stays
        warmup = 100000 if users_warmup else planned // 10 if slower < 10 else max(at, p.steps // 10)
        assert run.cfg.warmup_iters == warmup and (users_warmup or run.cfg.warmup_iters < p.steps)
        run.progress = Progress(at, elapsed_s=1.5 * at * probe_s)  # the pace alone (not the first steps) is measured
        p.corrected = False
        with tqdm(disable=True) as bar:
            train.keep_the_deadline(run, bar, Pace(at - 1, 1.5 * at * probe_s - probe_s))  # checked moments ago
        assert not p.corrected


def test_the_deadline_fit_credits_the_evaluations_that_fewer_steps_leave_out():
    """With evaluations the user asked for often, a slower pace costs steps and their evaluations both: the fit is
    the most steps that end the loop in time, not one step because the plan's evaluations no longer fit."""
    p = plan(["--eval_interval=10"], 20)
    at, step_s, evaluation_s = 20, 0.023, 0.5
    elapsed_s = p.loop_s - 14.0  # 14 s left
    end = steps_in_time(p, at, 10, elapsed_s, step_s, evaluation_s)

    def loop_s(last: int) -> float:  # the rest of the loop ending at `last`: steps, and evaluations at 20, 30, ...
        return (last - at) * step_s + sum(1 for s in range(at, last + 1) if s % 10 == 0 or s == last) * evaluation_s

    assert loop_s(end) <= 14.0 < loop_s(end + 1)
    assert end == 200  # 180 steps and 19 evaluations: 13.6 s


def test_the_deadline_is_checked_every_twentieth_of_the_budget():
    """Besides before each evaluation: a twentieth of the budget after the last check, from the first step."""
    p = plan([], 600)
    pace = Pace(step=100, elapsed_s=50.0)
    assert not deadline_due(p, pace, 50.0 + 0.9 * 600 / 20)
    assert deadline_due(p, pace, 50.0 + 600 / 20)
    pace.mark(200, 80.0)  # checked: the next one is a twentieth later
    assert not deadline_due(p, pace, 81.0) and deadline_due(p, pace, 110.0)


def test_evaluations_the_user_asked_for_are_planned_for():
    """With eval_interval set, the plan makes room for one evaluation every eval_interval steps."""
    usual, often = plan([], 600), plan(["--eval_interval=20"], 600)
    assert often.fixed == ["eval_interval"] and often.params == usual.params and often.steps < usual.steps
    planned_s = often.steps * often.step_s + -(-often.steps // 20) * often.evaluation_s
    assert planned_s <= often.loop_s < planned_s + often.step_s + often.evaluation_s
    assert often.line(20).count(f"{-(-often.steps // 20)} evaluations") == 1


@pytest.mark.parametrize("value", ["soon", "-5m", "10 minutes"])
def test_a_budget_that_is_no_duration_is_one_line(value):
    assert_one_line_error(run_command("train.py", f"--time_budget={value}"), f"time_budget={value!r} is not a duration")


@pytest.mark.parametrize("value", ["0", "0s", "8761h", "1" * 400 + "h"])  # the last: float('inf') seconds
def test_a_budget_of_nothing_or_past_a_year_is_one_line(value):
    assert_one_line_error(run_command("train.py", f"--time_budget={value}"),
                          f"time_budget={value!r} is out of range; give more than 0 and at most a year (8760h)")


@pytest.mark.parametrize("flags, message", [
    (["--n_embd=64", "--n_head=3"], "n_embd=64 must be divisible by n_head=3"),
    (["--block_size=0"], "block_size"),
])
def test_keys_that_rule_out_every_shape_are_refused_with_the_reason(char_dataset, tmp_path, flags, message):
    args = [*flags, f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'out'}", "--device=cpu"]
    refused = [run_command("train.py", *args, *budget) for budget in ([], ["--time_budget=60s"])]
    assert_one_line_error(refused[0], message)
    reason = refused[0].stderr.strip().removeprefix("error: ")  # these keys break a rule whatever the dial adds
    assert_one_line_error(refused[1], f"no shape the time budget can pick fits your keys (the first it tried: "
                                      f"{reason})")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("init_from", ["gpt2", "hf-model"])
def test_a_budget_for_a_pretrained_model_is_refused_naming_max_iters(init_from):
    """The plan picks a shape, which a Hugging Face model brings itself: a plan line would describe another model."""
    assert_one_line_error(run_command("train.py", "--time_budget=60s", f"--init_from={init_from}"),
                          f"init_from={init_from} brings its own", "--max_iters")


@pytest.mark.slow
def test_a_budgeted_run_keeps_its_time_and_stores_its_plan(char_dataset, tmp_path):
    flags = [*TINY_TRAIN_FLAGS[TINY_TRAIN_FLAGS.index("--batch_size=8"):], f"--dataset={char_dataset}"]
    flags = [f for f in flags if not f.startswith(("--max_iters", "--lr_decay_iters", "--warmup_iters",
                                                    "--eval_interval"))]
    start = time.perf_counter()
    result = run_script("train.py", *flags, "--time_budget=30s", f"--out_dir={tmp_path / 'timed'}", fresh=True)
    # the run, evaluations, checkpoints and sample: within 10%, the process's start included; the deadline
    # checks refit the steps to the machine's pace, which drifts within a run (the other test worker's load
    # changes): a run slower than planned ends sooner, one faster goes on past its decay at min_lr
    assert abs(time.perf_counter() - start - 30) <= 3
    checkpoint = torch.load(tmp_path / "timed" / "ckpt.pt", weights_only=True)
    plan = checkpoint["plan"]  # stored plainly, for a resume to follow instead of planning again
    # the steps planned, which a loaded machine may cut mid-run
    assert planned_steps(result.stdout) >= MIN_STEPS
    assert checkpoint["iter_num"] == plan["keys"]["max_iters"] == plan["steps"] > 0
    assert {k: checkpoint["config"][k] for k in plan["keys"]} == plan["keys"]


@pytest.mark.slow
def test_a_schedule_key_of_the_users_that_breaks_the_plans_schedule_is_noted(char_dataset, tmp_path):
    """The plan's own keys fit together; one the user set may not: a decay ending before the plan's warmup does."""
    flags = [*TINY_TRAIN_FLAGS[TINY_TRAIN_FLAGS.index("--batch_size=8"):], f"--dataset={char_dataset}"]
    flags = [f for f in flags if not f.startswith(("--max_iters", "--lr_decay_iters", "--warmup_iters"))]
    process = subprocess.Popen([sys.executable, "train.py", *flags, "--time_budget=20s", "--lr_decay_iters=2",
                                f"--out_dir={tmp_path}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:  # the notes come before the first step: no need to train
        lines = iter(process.stderr.readline, "")
        note = next((line for line in lines if "note: warmup_iters=" in line), "")
    finally:
        process.kill()
        process.communicate()
    assert re.search(r"note: warmup_iters=\d+ > lr_decay_iters=2: the learning rate drops from its warmup straight "
                     r"to min_lr$", note.strip())


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stopped_while_its_budget_probes_leaves_no_trace(char_dataset, tmp_path, stop):
    """The probe of a long budget takes a while: stopped then, by Ctrl-C or by SIGTERM (a job scheduler's), the
    run never began, and takes back the out_dir it made."""
    # Ctrl-C's default action in the child, as in a terminal, even where the suite runs as a background job
    process = subprocess.Popen([sys.executable, "train.py", f"--dataset={char_dataset}", "--time_budget=10h",
                                f"--out_dir={tmp_path / 'out'}"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen = ""
        while "probing shapes" not in seen:
            char = process.stderr.read(1)
            assert char, seen
            seen += char
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 128 + stop and err.strip().splitlines()[-1] == "interrupted", seen + err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_interrupted_budgeted_run_resumes_on_its_plan_to_the_losses_of_one_run(char_dataset, tmp_path):
    """A resume follows the plan in the checkpoint (no new probe), and the whole run, interrupted or not,
    is the run its final plan's keys describe: the same loss at every logged step."""
    flags = [*TINY_TRAIN_FLAGS[TINY_TRAIN_FLAGS.index("--batch_size=8"):], f"--dataset={char_dataset}",
             "--log_interval=1"]
    flags = [f for f in flags if not f.startswith(("--max_iters", "--lr_decay_iters", "--warmup_iters",
                                                    "--eval_interval"))]
    budgeted = [*flags, "--time_budget=12.3s", f"--out_dir={tmp_path / 'budgeted'}"]
    process = subprocess.Popen([sys.executable, "train.py", *budgeted], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for_step(process, 1, share=0.5)  # past the warmup, where the plan is corrected, and far from the end
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    # the same budget written another way (0.205 * 60 is not 12.3 to the last bit)
    resumed = run_script("train.py", *[f.replace("=12.3s", "=0.205m") for f in budgeted], "--init_from=resume")
    assert "time budget 12.3 s" not in resumed.stdout and "probing" not in resumed.stderr  # no new plan
    plan = torch.load(tmp_path / "budgeted" / "ckpt.pt", weights_only=True)["plan"]
    run_script("train.py", *flags, *(f"--{key}={value}" for key, value in plan["keys"].items()),
               f"--out_dir={tmp_path / 'planned'}")
    losses = {name: {row["step"]: row["train_loss"] for row in read_rows(tmp_path / name / "log.jsonl")
                     if row["kind"] == "batch"} for name in ("budgeted", "planned")}
    assert len(losses["budgeted"]) == len(losses["planned"]) == plan["keys"]["max_iters"]
    assert losses["budgeted"] == pytest.approx(losses["planned"], abs=1e-6)
    # a run trained without a budget is not resumed under one: a plan would pick another shape and schedule
    before = (tmp_path / "planned" / "ckpt.pt").read_bytes()
    refused = run_command("train.py", *flags, "--time_budget=12s", f"--out_dir={tmp_path / 'planned'}",
                          "--init_from=resume")
    assert_one_line_error(refused, "it follows no plan (it was trained without one, or resumed without one since); "
                                   "resume it without --time_budget")
    assert (tmp_path / "planned" / "ckpt.pt").read_bytes() == before
    # the plan sets the steps: another budget, or a key the plan sets, is refused rather than silently overridden
    before = (tmp_path / "budgeted" / "ckpt.pt").read_bytes()
    for changed in (["--time_budget=20s"], ["--time_budget=12.3s", "--max_iters=5000"]):
        refused = run_command("train.py", *flags, *changed, f"--out_dir={tmp_path / 'budgeted'}", "--init_from=resume")
        assert_one_line_error(refused, "follows its plan for a 12.3 s budget; resume it with that --time_budget",
                              *(["without --max_iters"] if len(changed) == 2 else []))
    assert (tmp_path / "budgeted" / "ckpt.pt").read_bytes() == before
