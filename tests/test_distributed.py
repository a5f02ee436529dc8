"""Data parallelism with real torchrun: two processes equal one with twice the accumulation."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from config.settings import TrainConfig, read_config
from data.dataset import open_dataset, read_meta
from data.loader import BatchLoader
from helpers import planned_steps, run_script
from training import budget
from training.checkpoint import model_from_checkpoint
from training.distributed import Ranks

pytestmark = pytest.mark.slow  # the commands run as subprocesses

FLAGS = [
    "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--dropout=0.0",
    "--max_iters=12", "--lr_decay_iters=12", "--warmup_iters=2", "--eval_interval=6", "--eval_iters=2",
    "--log_interval=1", "--sample_tokens=0", "--device=cpu", "--dtype=float32",
]
PLANNED_FLAGS = ("--n_layer", "--n_head", "--n_embd", "--block_size", "--max_iters", "--lr_decay_iters",
                 "--warmup_iters", "--eval_interval")  # a time budget's to set


def batch_losses(out_dir) -> list[float]:
    rows = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if r["kind"] == "batch"]


# Muon orthogonalises each update in bfloat16 where the CPU computes it natively, so the last bits of a gradient,
# which the processes' summation order changes, reach the weights, and then the losses, at bfloat16's precision
WEIGHT_TOLERANCE = {"adamw": 1e-4, "muon": 1e-2}
LOSS_TOLERANCE = {"adamw": 1e-4, "muon": 1e-3}


@pytest.fixture(scope="module", params=["adamw", "muon"])
def two_process_run(request, char_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    result = run_script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", *FLAGS,
                        f"--optimizer={request.param}", "--gradient_accumulation_steps=2",
                        f"--dataset={char_dataset}", f"--out_dir={out}")
    return out, result, request.param


def test_two_processes_match_one_with_twice_the_accumulation(two_process_run, char_dataset, tmp_path):
    ddp_out, ddp, optimizer = two_process_run
    assert "batch: 4 x 2 accumulation x 2 processes = 16 sequences, 512 tokens per step" in ddp.stdout
    run_script("train.py", *FLAGS, f"--optimizer={optimizer}", "--gradient_accumulation_steps=4",
               f"--dataset={char_dataset}", f"--out_dir={tmp_path}")
    together, alone = batch_losses(ddp_out), batch_losses(tmp_path)
    assert len(together) == len(alone) == 12
    assert max(abs(a - b) for a, b in zip(together, alone)) < LOSS_TOLERANCE[optimizer]
    assert alone[-1] < alone[0] - 0.5  # it learned: the comparison is not between two flat lines
    ddp_weights = torch.load(ddp_out / "ckpt.pt", weights_only=True)["model"]
    single_weights = torch.load(tmp_path / "ckpt.pt", weights_only=True)["model"]
    assert not any(k.startswith("module.") for k in ddp_weights)  # the plain model's names
    difference = max((ddp_weights[k] - single_weights[k]).abs().max().item() for k in ddp_weights)
    assert difference < WEIGHT_TOLERANCE[optimizer]


def test_a_two_process_checkpoint_resumes_in_one_process(two_process_run, char_dataset, tmp_path):
    ddp_out, _, optimizer = two_process_run
    for name in ("ckpt.pt", "log.jsonl"):
        (tmp_path / name).write_bytes((ddp_out / name).read_bytes())
    resumed = run_script("train.py", *FLAGS, f"--optimizer={optimizer}", "--max_iters=16", "--lr_decay_iters=16",
                         "--gradient_accumulation_steps=4", f"--dataset={char_dataset}", f"--out_dir={tmp_path}",
                         "--init_from=resume")
    # 4 sequences of 32 tokens, 2 accumulated in each of 2 processes then, 4 accumulated in 1 now
    assert "resume: processes changed from 2 to 1, tokens per step from 512 to 512" in resumed.stdout
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"] == 16
    assert batch_losses(tmp_path)[:12] == batch_losses(ddp_out)  # the log carries on from the checkpoint
    # step 13's loss, worked out here: the saved weights on the 4 batches that follow the saved place in the data
    checkpoint = torch.load(ddp_out / "ckpt.pt", weights_only=True)
    model = model_from_checkpoint(checkpoint, ddp_out / "ckpt.pt")
    loader = BatchLoader(open_dataset(char_dataset).train, 32, 4, TrainConfig().seed)
    loader.load_state_dict(checkpoint["loader"])
    with torch.no_grad():
        expected = sum(model(*loader.next_batch())[1].item() for _ in range(4)) / 4
    assert abs(batch_losses(tmp_path)[12] - expected) < LOSS_TOLERANCE[optimizer]


@pytest.mark.parametrize("refused", ["out_dir", "wandb"])
def test_a_refusal_by_the_main_process_stops_the_others_without_a_traceback(char_dataset, tmp_path, refused):
    """Only the main process checks out_dir and starts wandb (here refusing an upper-case WANDB_MODE)."""
    (tmp_path / "ckpt.pt").write_bytes(b"an earlier run")
    wandb = {**os.environ, "WANDB_MODE": "OFFLINE", "WANDB_DIR": str(tmp_path)}
    flags, env = ([], None) if refused == "out_dir" else (["--replace_run=true", "--wandb_log=true"], wandb)
    result = run_script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", *FLAGS,
                        *flags, f"--dataset={char_dataset}", f"--out_dir={tmp_path}", check=False, env=env)
    assert result.returncode != 0 and "[rank1]" not in result.stderr  # rank 1 exits quietly, status 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    said = (f"error: out_dir {tmp_path} holds an earlier run (ckpt.pt); continue it with --init_from=resume, start "
            f"this one in a new --out_dir, or replace it with --replace_run=true") if refused == "out_dir" else \
        "error: wandb refused its settings (mode='OFFLINE'"
    assert len(errors) == 1 and errors[0].startswith(said)
    assert "exitcode  : 2" in result.stderr and (tmp_path / "ckpt.pt").read_bytes() == b"an earlier run"


def test_a_time_budget_under_torchrun_is_one_plan_that_every_process_follows(char_dataset, tmp_path):
    """Every process probes and all take the slowest one's timings, so they plan the same steps and
    take the same decisions mid-run; a process on a plan of its own would leave the others waiting."""
    flags = [f for f in FLAGS if not f.startswith(PLANNED_FLAGS)]
    result = run_script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", *flags,
                        "--time_budget=15s", f"--dataset={char_dataset}", f"--out_dir={tmp_path}")
    assert result.stdout.count("time budget 15 s:") == 1  # printed by the first process only
    assert planned_steps(result.stdout) >= budget.MIN_STEPS
    # a loaded machine may shorten the plan mid-run; every process stops where the corrected plan ends
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert checkpoint["iter_num"] == checkpoint["plan"]["steps"] > 0
    assert "batch: 4 x 1 accumulation x 2 processes" in result.stdout


def plan_in_a_process_group(rank: int, init_file: str, dataset: str, plans) -> None:
    """One of two gloo processes: probe and plan a 60 s budget as train.py does, as if this process had
    started 15 s after the other (a loaded machine starts torchrun's processes unevenly)."""
    torch.set_num_threads(1)  # as torchrun sets it: two processes on the cores
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    budget.process_age_s = lambda: 5.0 + 15.0 * rank
    cfg = read_config(TrainConfig, [*[f for f in FLAGS if not f.startswith(PLANNED_FLAGS)], "--time_budget=60s"])
    plan = budget.make_plan(cfg, read_meta(Path(dataset)), torch.device("cpu"), "float32", Ranks(rank, 2))
    plans[rank] = plan.keys
    torch.distributed.destroy_process_group()


def test_processes_started_at_different_times_make_one_plan(char_dataset, tmp_path):
    """Every process plans with the main process's start-up time as well as the slowest timings: plans
    that differed in steps would leave one process waiting for the other forever."""
    with torch.multiprocessing.Manager() as manager:
        plans = manager.dict()
        torch.multiprocessing.spawn(plan_in_a_process_group, args=(str(tmp_path / "init"), str(char_dataset), plans),
                                    nprocs=2)
        assert plans[0] == plans[1], dict(plans)
