"""Train a GPT on a prepared dataset, in one process or several (torchrun); `--help` lists every key.

    python train.py [CONFIG.toml ...] [--key=value ...]
    torchrun --standalone --nproc_per_node=N train.py [CONFIG.toml ...] [--key=value ...]

config -> data -> model -> optimizer -> loop (step, log, evaluate, checkpoint) -> sample.
"""

import config.interrupt  # noqa: F401  first: a Ctrl-C while torch loads is one line

import contextlib
import gc
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from config.device import autocast, resolve_dtype, synchronize
from config.errors import UserError, out_of_memory, run_cli, stop_on_sigterm
from config.parsing import flag_text
from config.settings import AttentionConfig, TrainConfig, parse_duration, read_config, smaller_batches, tokens_per_step
from data.corpora import ensure_dataset
from data.dataset import Dataset, dataset_identity, lost_relative_path, open_dataset
from data.errors import DataError
from data.loader import BatchLoader
from data.tokenizer import start_tokens
from model import GPT
from model.config import counted, shape_words
from model.params import training_flops_per_token
from training import distributed
from training.budget import (DEADLINE_CHECKS, Pace, Plan, corrected_steps, deadline_due, eval_interval_for,
                             make_plan, steps_in_time)
from training.checkpoint import (RESUME_KEYS, OutDir, Progress, checkpoint_path, checkpoint_payload, claim_out_dir,
                                 existing_checkpoint, load_checkpoint, restore_training_state, resume_instead,
                                 save_checkpoint)
from training.init_from import NOT_RESUMED, SHAPE_KEYS, build_model, check_resume_data, resume_changes
from training.metrics_log import MetricsLog, start_wandb
from training.optimizer import Optimizers, build_optimizers, lr_scale
from training.throughput import MFUMeter
from viz.loss_plot import drawn_by, plot_loss, save_png
from viz.maps import heatmap_figure, token_texts


class StopSignals:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the next step it checks; a second one ends the process at
    once, by the OS's default action (checkpoint writes are atomic, so that is safe), until the process ends. The
    earlier handlers come back on exit unless a signal came. Only the main process (`announce`) says so: torchrun
    passes a signal on to every process."""

    def __init__(self, announce: bool):
        self.announce = announce

    def __enter__(self) -> "StopSignals":
        self.received: int | None = None
        # a signal ignored stays ignored: a background job's Ctrl-C (SIGINT, which `cmd &` ignores) is the shell's
        self._earlier = {signum: signal.signal(signum, self._handle) for signum in (signal.SIGINT, signal.SIGTERM)
                         if signal.getsignal(signum) is not signal.SIG_IGN}
        return self

    def __exit__(self, *exc_info) -> None:
        if self.received is not None:  # the run is stopping: a second signal in its teardown still ends it at once
            return
        for signum, handler in self._earlier.items():
            # None: the earlier handler was not set from Python, and cannot be put back from it
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame) -> None:
        self.received = signum
        for stop in self._earlier:  # the OS's own action for the next one: it ends the process even in the middle
            signal.signal(stop, signal.SIG_DFL)  # of a long C++ call, where no Python handler could run
        if self.announce:
            again = "press Ctrl-C again" if signum == signal.SIGINT else "another SIGTERM"
            print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
                  f"({again} to quit at once, with only the checkpoints already saved)", file=sys.stderr, flush=True)


@dataclass
class Run:
    cfg: TrainConfig
    argv: list[str]  # to print the command that resumes this run
    ranks: distributed.Ranks  # this process among all
    device: torch.device
    dtype: str  # the dtype setting resolved for this device ("auto" becomes bfloat16 or float32)
    dataset: Dataset
    train_loader: BatchLoader  # this process's share of every epoch
    eval_loaders: dict[str, BatchLoader]  # the same batches at every evaluation
    model: GPT  # its state_dict is what checkpoints hold; its blocks compiled if asked
    wrapped: torch.nn.Module  # model, wrapped in DDP across processes: what the loop calls
    optimizers: Optimizers
    scaler: torch.amp.GradScaler  # loss scaling for float16; a pass-through otherwise
    progress: Progress
    log: MetricsLog | None  # log.jsonl and wandb: the main process's
    mfu: MFUMeter
    claim: OutDir | None  # the main process's hold on out_dir: no other run writes there meanwhile
    plan: Plan | None  # a time budget's: the shape and schedule it picked
    saved_step: int | None  # step of the ckpt.pt on disk, if any
    started_from: str  # the init_from the run began with (scratch, gpt2, a folder), which its resumes keep recording

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    @property
    def latest(self) -> Path:
        """out_dir/ckpt.pt or ckpt.safetensors, whichever is there: the checkpoint a resume reads."""
        return existing_checkpoint(checkpoint_path(self.out_dir, "ckpt", self.cfg.checkpoint_format))

    @property
    def tokens_per_step(self) -> int:  # across all processes
        return tokens_per_step(vars(self.cfg), self.ranks.world_size)

    def save(self, stem: str) -> None:
        """Write out_dir/ckpt.pt (stem "ckpt") or best.pt, or .safetensors by checkpoint_format; never broken weights
        (an update that broke them after its loss was read)."""
        if not self.model.weights_finite():
            raise self.broken_error(f"the weights hold nan or inf after step {self.progress.step}")
        payload = checkpoint_payload(self.model, self.optimizers, self.scaler, self.cfg, self.dataset, self.progress,
                                     self.train_loader, None if self.plan is None else asdict(self.plan))
        payload["config"]["init_from"] = self.started_from  # not "resume": export's card retraces the whole run
        save_checkpoint(payload, checkpoint_path(self.out_dir, stem, self.cfg.checkpoint_format))
        if stem == "ckpt":
            self.saved_step = self.progress.step

    def record(self, kind: str, **metrics: float | None) -> None:
        if self.log is not None:
            self.log.append({"kind": kind, "step": self.progress.step, "tokens": self.progress.tokens,
                             "elapsed_s": round(self.progress.elapsed_s, 3), **metrics})

    def broken_error(self, problem: str) -> UserError:
        """Training diverged (`problem` says how): where to go on from."""
        rates = {"learning_rate": self.cfg.learning_rate}  # with Muon, either optimizer's rate may be the cause
        rates |= {"muon_lr": self.cfg.muon_lr} if self.cfg.optimizer == "muon" else {}
        return self.stopped_error(problem, "at lower learning rates", rates, "min_lr at most N")

    def out_of_memory_error(self, failed: str) -> UserError:
        return self.stopped_error(f"{failed} with micro-batches of {self.cfg.batch_size:,} x {self.cfg.block_size:,} "
                                  f"tokens", "with smaller micro-batches", {"batch_size": self.cfg.batch_size},
                                  smaller_batches("--"))

    def stopped_error(self, problem: str, how: str, lower: dict[str, float], note: str) -> UserError:
        """Training stopped (`problem` says why): start again, or resume the last good checkpoint `how`, with the
        keys in `lower` (their values now) under those values, as `note` adds."""
        names = dict(zip(lower, "NM"))
        flags = " ".join(f"--{key}={name}" for key, name in names.items())
        bounds = ", ".join(f"{names[key]} under {value:{',' if isinstance(value, int) else 'g'}}"
                           for key, value in lower.items())
        resume = f"{resume_command(self.argv, self.ranks, dropped=tuple(lower))} {flags} ({bounds}; {note})"
        if not self.ranks.is_main:  # the main process alone knows what it saved
            return UserError(f"{problem}; training stopped: resume the run's last good checkpoint {how}, {resume}; "
                             f"if it has none yet, start again (--replace_run=true)")
        if self.saved_step is None:
            return UserError(f"{problem}; training stopped, no checkpoint was written yet; lower {next(iter(lower))} "
                             f"and start again (--replace_run=true)")
        return UserError(f"{problem}; training stopped, the last good checkpoint, {self.latest} (step "
                         f"{self.saved_step}), is intact: resume it {how}, {resume}")


def resume_command(argv: list[str], ranks: distributed.Ranks, dropped: tuple[str, ...] = ()) -> str:
    """The command that resumes this run (without the `dropped` keys' flags), with as many processes: torchrun's
    rendezvous across machines is the user's to give again."""
    kept = [a for a in argv if not a.startswith(tuple(f"--{key}=" for key in ("init_from", "replace_run", *dropped)))]
    keys = [a.partition("=")[0] if a.startswith("--") else None for a in kept]
    kept = [a for i, a in enumerate(kept) if keys[i] is None or keys[i] not in keys[i + 1:]]  # the last value counts
    n, per_machine = ranks.world_size, ranks.per_machine
    launcher = (["python"] if not ranks.distributed else
                ["torchrun", "--standalone", f"--nproc_per_node={n}"] if per_machine == n
                else ["torchrun", f"--nnodes={n // per_machine}", f"--nproc_per_node={per_machine}",
                      "--rdzv_backend=c10d", "--rdzv_endpoint=HOST:PORT"])
    return shlex.join([*launcher, script("train.py"), *kept, "--init_from=resume"])


def script(name: str) -> str:
    """One of this repository's commands as the shell here reaches it: sample.py, or ../smallgpt/sample.py."""
    path = os.path.relpath(Path(__file__).resolve().parent / name)
    return os.path.join(".", path) if path.startswith("-") else path  # -gpt/sample.py would read as an option


def set_up(cfg: TrainConfig, argv: list[str]) -> Run:
    ranks, device = distributed.start(cfg.device)
    # each process its own dropout masks; a resume restores them (the main process) or reseeds them (the others)
    ranks.seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    # before the data and the model, so a refusal comes at once; a refused run writes nothing in out_dir
    claim = distributed.main_first(ranks, lambda: claim_out_dir(cfg, drawn_by("train.py")))  # its pictures, redrawn
    try:
        return set_up_run(cfg, argv, ranks, device, claim)
    except BaseException:
        if claim is not None:
            claim.abandon()  # a run that never began leaves out_dir as it found it
        raise


def set_up_run(cfg: TrainConfig, argv: list[str], ranks: distributed.Ranks, device: torch.device,
               claim: OutDir | None) -> Run:
    """Data, checkpoint, model, optimizer and records, once out_dir is this run's."""
    latest = existing_checkpoint(checkpoint_path(Path(cfg.out_dir), "ckpt", cfg.checkpoint_format))  # either format
    checkpoint = load_checkpoint(latest, required=RESUME_KEYS, instead=resume_instead(latest)) \
        if cfg.init_from == "resume" else None
    given = cfg.keys_set  # what the files and flags set; replace() below makes configs without it
    if checkpoint is not None:  # the run's own settings, where the resume command does not give them again
        own = {k: v for k, v in checkpoint["config"].items()
               if k not in given and k not in NOT_RESUMED and k in TrainConfig.__dataclass_fields__}
        follows = dict.fromkeys(cfg.follows_max_iters & given)  # given as none: the run's max_iters, not the default's
        cfg = replace(cfg, **own, **follows)
        cfg.check_rates("min_lr" in own)
        if cfg.replace_run and ranks.is_main:
            print("note: --replace_run=true ignored: a resume goes on with the run it finds", file=sys.stderr)
    dtype = resolve_dtype(cfg.dtype, device)
    if dtype == "bfloat16" and device.type == "cpu" and resolve_dtype("auto", device) == "float32" and ranks.is_main:
        print("note: this CPU has no bfloat16 arithmetic and emulates it, slower than float32 (dtype=auto picks "
              "float32 here; python bench.py precision measures both)", file=sys.stderr)
    if checkpoint is not None and "dataset" not in given and lost_relative_path(cfg.dataset):
        raise UserError(f"the run's dataset, {cfg.dataset} as its checkpoint records it, is not found from here; "
                        f"give its folder with --dataset=PATH")
    # the main process prepares a shipped recipe met for the first time; the others open it once it is there
    distributed.main_first(ranks, lambda: ensure_dataset(cfg.dataset))
    dataset = open_dataset(ensure_dataset(cfg.dataset))
    new_data = checkpoint is not None and check_resume_data(checkpoint, dataset_identity(dataset), cfg)
    plan = None
    if cfg.time_budget:  # a resume follows the checkpoint's plan; a new run probes and plans
        if checkpoint is None:
            plan = make_plan(cfg, dataset.meta, device, dtype, ranks)
        elif "plan" in checkpoint:
            plan = Plan.stored(checkpoint["plan"])
            # the keys given that the plan would override unsaid (one given as none follows its steps, as planned)
            moved = [f"--{k}" for k in plan.keys
                     if k in given - cfg.follows_max_iters and getattr(cfg, k) != plan.keys[k]]
            if not math.isclose(parse_duration(cfg.time_budget), plan.budget_s) or moved:
                without = f" and without {', '.join(moved)}" if moved else ""
                raise UserError(f"{latest} follows its plan for a {plan.budget_s:g} s budget; resume it with that "
                                f"--time_budget{without}, or without --time_budget to set its steps and schedule")
            if "max_iters" not in plan.keys and cfg.max_iters > plan.steps and ranks.is_main:  # the user's, again
                print(f"note: max_iters stays at {plan.steps}, where the time budget's deadline left it; "
                      f"resume without --time_budget to train longer", file=sys.stderr)
            cfg = replace(cfg, time_budget=checkpoint["config"]["time_budget"],  # as written then: 10m is 10 m
                          max_iters=min(cfg.max_iters, plan.steps))  # as the deadline checks left it (a plan's: below)
        else:  # a plan would pick another shape and schedule than the run's
            raise UserError(f"cannot resume {latest} with --time_budget: it follows no plan (it was trained without "
                            f"one, or resumed without one since); resume it without --time_budget")
        cfg = replace(cfg, **plan.keys)
    # first: it checks the shape, and that the run fits the memory
    model = build_model(cfg, dataset, checkpoint, latest, device, "block_size" in given, ranks.per_machine).to(device)
    if cfg.pretrained:  # a Hugging Face model keeps its own shape (its context cropped): the run records it
        own = {k: getattr(model.config, k) for k in SHAPE_KEYS}  # its vocabulary too, when padded past the data's
        ignored = [f"--{k}={getattr(cfg, k)}" for k in own
                   if k in given and k != "block_size" and getattr(cfg, k) != own[k]]
        if ignored and ranks.is_main:
            print(f"note: {', '.join(ignored)} ignored: {cfg.init_from} keeps its own shape", file=sys.stderr)
        cfg = replace(cfg, **own)
    train_loader = BatchLoader(dataset.train, cfg.block_size, cfg.batch_size, cfg.seed, ranks.rank, ranks.world_size)
    eval_loaders = {split: BatchLoader(tokens, cfg.block_size, cfg.batch_size, cfg.seed + 1, split=split)
                    for split, tokens in (("train", dataset.train), ("val", dataset.val))}
    if cfg.compile:
        model.compile_blocks()
    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if ranks.distributed else model
    optimizers = build_optimizers(model, cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "float16")
    progress, resume_step = Progress(), None
    if checkpoint is not None:
        progress = restore_training_state(checkpoint, optimizers, scaler, train_loader, ranks, cfg.seed, new_data)
        resume_step = progress.step
        for change in resume_changes(checkpoint, cfg, ranks.world_size) if ranks.is_main else []:
            print(change)  # now that the resume goes ahead

    def start_records() -> MetricsLog:  # the main process's: the others wait, and leave quietly if it refuses
        wandb_run = start_wandb(cfg, resume_step) if cfg.wandb_log else None
        # only now that the new run is built: a bad setting above leaves the earlier one
        claim.begin(replace_earlier_run=cfg.replace_run and checkpoint is None)
        return MetricsLog(Path(cfg.out_dir) / "log.jsonl", resume_step, wandb_run,  # not rerun: the log stays whole
                          rerun=resume_step is None or resume_step < cfg.max_iters,
                          evaluation_owed=progress.evaluation_owed is not None)

    log = distributed.main_first(ranks, start_records)
    mfu = MFUMeter(training_flops_per_token(model.config, cfg.block_size), device, dtype, ranks.world_size)
    started_from = cfg.init_from if checkpoint is None else checkpoint["config"]["init_from"]
    return Run(cfg, argv, ranks, device, dtype, dataset, train_loader, eval_loaders, model, wrapped,
               optimizers, scaler, progress, log, mfu, claim, plan, resume_step, started_from)


def train_step(run: Run) -> torch.Tensor:
    """Gradients of one step over its micro-batches; this process's mean loss, left on the device (unread)."""
    n_micro, device = run.cfg.gradient_accumulation_steps, run.device
    step_loss = torch.zeros((), device=device)
    for micro in range(n_micro):
        x, y = run.train_loader.next_batch()
        if device.type == "cuda":  # pinned pages let the copy run while the GPU computes
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        # across processes, gradients are averaged once, on the last micro-batch
        with run.wrapped.no_sync() if run.ranks.distributed and micro < n_micro - 1 else contextlib.nullcontext():
            with autocast(device, run.dtype):
                _, loss = run.wrapped(x, y)
            run.scaler.scale(loss / n_micro).backward()
        step_loss += loss.detach() / n_micro
    return step_loss


@torch.no_grad()
def estimate_loss(run: Run, batches: int | None = None, stop: StopSignals | None = None) -> dict[str, float] | None:
    """Mean loss over the same `batches` (eval_iters) batches of each split every time; None, cut short, once `stop`
    has received a signal."""
    model, device, batches = run.model, run.device, batches or run.cfg.eval_iters
    model.eval()
    losses = {}
    for split, loader in run.eval_loaders.items():
        loader.load_state_dict({"epoch": 0, "cursor": 0})
        total = torch.zeros((), device=device)
        for _ in range(batches):
            if stop is not None and stop.received is not None:
                model.train()
                return None
            x, y = loader.next_batch()
            with autocast(device, run.dtype):
                _, loss = model(x.to(device), y.to(device))
            total += loss.float()
        losses[split] = total.item() / batches
    model.train()
    return losses


def evaluate_and_save(run: Run, bar: tqdm, lr: float | None, latest: bool = True, stop: StopSignals | None = None
                      ) -> bool:
    """Evaluate; save best.pt on a new best, and the latest ckpt.pt (unless not `latest`) as configured. False: a
    signal to `stop` cut the evaluation short, and nothing was recorded."""
    if (losses := estimate_loss(run, stop=stop)) is None:
        return False
    # an update that broke the weights after its loss was read: stopped before the log or a checkpoint sees it
    if broken := [loss for loss in losses.values() if not math.isfinite(loss)]:
        raise run.broken_error(f"the evaluation at step {run.progress.step} gives a loss of {broken[0]}")
    run.record("eval", lr=lr, train_loss=losses["train"], val_loss=losses["val"])
    plot_loss(run.log.rows, run.out_dir / "loss.png")
    if improved := losses["val"] < run.progress.best_val_loss:
        run.progress.best_val_loss = losses["val"]
        run.save("best")
    if latest and (improved or run.cfg.always_save_checkpoint):
        run.save("ckpt")
    # after the checkpoints: output that cannot be written (a reader gone, a full disk) ends a run that has them
    bar.write(f"step {run.progress.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    if run.log.wandb is not None:
        run.log.log_media(run.progress.step, sample_text(run, 200),
                          {"loss_curve": run.out_dir / "loss.png", "attention": attention_picture(run)})
    return True


def train(run: Run, bar: tqdm, stop: StopSignals) -> int | None:
    """The loop; returns the signal that stopped it early, or None at max_iters. The loss is read (and checked),
    which waits for the device, only where it is logged, evaluated or a stop is due."""
    progress, ranks = run.progress, run.ranks
    lone = not ranks.distributed  # a lone process may stop in an evaluation; processes stop together at a step
    pace = Pace(progress.step, progress.elapsed_s)  # what a time budget's checks measure
    first_step = unread_from = progress.step + 1  # this process's; unread_from: first step whose loss is unchecked
    unread = torch.zeros((), device=run.device)  # sum of those steps' losses: non-finite if any was
    if run.cfg.pretrained and progress.step == 0 and ranks.is_main:  # where fine-tuning starts: best.pt till beaten
        evaluate_and_save(run, bar, lr=None, latest=False)  # no ckpt.pt yet: a run failing at once may start again
    if progress.evaluation_owed is not None and ranks.is_main:  # the evaluation a stop cut short, made as it was due
        lr, progress.evaluation_owed = progress.evaluation_owed, None
        if evaluate_and_save(run, bar, lr, latest=False, stop=stop if lone else None):
            progress.tick()  # the evaluation's time, counted in the run's
            run.save("ckpt")  # the same step, no longer owing it
        if lone and stop.received is not None:  # ckpt.pt still owes it, if it was cut short again
            return stop.received
    window = (progress.step, time.perf_counter())  # tokens/s counts training steps only
    while progress.step < run.cfg.max_iters:
        cfg = run.cfg  # a time budget may change its steps below
        scale = lr_scale(cfg, progress.step)
        run.optimizers.set_lr_scale(scale)
        lr = cfg.learning_rate * scale  # AdamW's, shown and logged; Muon's follows the same schedule
        step_loss = train_step(run)
        step = progress.step + 1
        # torch.compile compiles in the first step, timed apart and left out of tokens/s; the evaluation's graph
        # (no gradients, eval mode) too, now, where a time budget's checks can still fit the steps to its time
        if cfg.compile and step == first_step:
            if ranks.is_main:
                estimate_loss(run, batches=1)  # its read of the loss waits for the device: the time is all counted
                bar.write(f"compile: the model was compiled in its first step, {time.perf_counter() - window[1]:.1f} "
                          "s, for training and evaluation (inductor's cache serves a later run of the same shape); "
                          "tokens/s leaves it out")
            synchronize(run.device)
            window = (step, time.perf_counter())
        unread += step_loss
        finished = step == cfg.max_iters
        eval_step = step % cfg.eval_interval == 0 or finished
        logging = step % cfg.log_interval == 0 or finished
        # the same steps on every process (the read is a collective); a lone process can stop at any step
        read_now = logging or eval_step or (stop.received is not None and lone)
        if read_now:
            # one collective carries the losses, any stop signal and whether the main process says a time
            # budget's deadline is due, so every process agrees on all
            checking = run.plan is not None and ranks.is_main and deadline_due(run.plan, pace, progress.elapsed_s)
            flags = torch.tensor([float(stop.received is not None), float(checking)], device=run.device)
            unread_loss, loss, stopping, checking = distributed.mean_over_ranks(
                torch.cat([torch.stack([unread, step_loss]), flags]), ranks).tolist()
            if not math.isfinite(unread_loss):  # stop before a checkpoint or the log sees a broken step
                steps = f"step {step}" if unread_from == step else f"steps {unread_from} to {step}"
                raise run.broken_error(f"loss is {unread_loss} in {steps}")
            unread.zero_()
            unread_from = step + 1
        run.optimizers.update(run.scaler, run.model.parameters(), cfg.grad_clip)
        progress.step += 1
        progress.tokens += run.tokens_per_step
        progress.tick()  # the wall time since the last step, evaluation included
        if progress.step in (cfg.warmup_iters // 2, first_step):  # the first steps pay for allocations and a
            pace.mark(progress.step, progress.elapsed_s)  # compile (a resume's too): measured from after them
        elif run.plan is not None and not run.plan.corrected and progress.step >= cfg.warmup_iters:
            correct_the_plan(run, bar, pace)
        if logging or (read_now and stopping):  # a stopped run logs the step its checkpoint holds too
            now = time.perf_counter()
            timed = progress.step - window[0]  # steps since the last reading: none right after a compile
            tok_per_s = round(timed * run.tokens_per_step / (now - window[1]), 1) if timed else None
            window = (progress.step, now)
            mfu = None if tok_per_s is None else run.mfu.mfu(tok_per_s)
            postfix = dict(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s="-" if tok_per_s is None else f"{tok_per_s:,.0f}")
            bar.set_postfix(**postfix, **({} if mfu is None else {"mfu": f"{mfu:.1%}"}), refresh=False)
            bar.update(progress.step - bar.n)
            run.record("batch", lr=lr, train_loss=loss, tok_per_s=tok_per_s, mfu=mfu)
        if run.plan is not None and not finished and read_now and not stopping and (eval_step or checking):
            keep_the_deadline(run, bar, pace)  # before an evaluation, whose checkpoint then holds the plan
        if eval_step and ranks.is_main:
            started = time.perf_counter()
            # a stop cuts it short, unless it is the last: the checkpoint then owes it
            made = evaluate_and_save(run, bar, lr, stop=stop if lone and not finished else None)
            progress.evaluation_owed = None if made else lr
            if lone and stop.received is not None and not stopping:  # a stop in the evaluation: at this step
                if not (logging or made):  # the step the checkpoint holds, logged as any stop's
                    run.record("batch", lr=lr, train_loss=loss, tok_per_s=None, mfu=None)
                stopping = True
            window = (progress.step, time.perf_counter())  # its time is counted at the next tick
            pace.evaluated(window[1] - started)
        if read_now and stopping and not finished:  # a run stopped in its last step ends as a finished one
            if ranks.is_main:
                run.save("ckpt")
            return stop.received or signal.SIGINT  # a signal seen by another process counts too
    return None


def correct_the_plan(run: Run, bar: tqdm, pace: Pace) -> None:
    """Once, as the warmup ends or at the first deadline check before that: if a step takes over 20% more or less
    than the probe said, fit the steps and the schedule to it."""
    plan, progress = run.plan, run.progress
    if "max_iters" in plan.keys and progress.step > pace.step:  # the user's steps are the deadline checks' to cut
        # the main process's measurements on every process: a max_iters of its own would leave the others waiting
        measured, elapsed_s = distributed.from_main([pace.step_s(progress.step, progress.elapsed_s),
                                                     progress.elapsed_s], run.ranks, run.device)
        steps = corrected_steps(plan, progress.step, measured, elapsed_s)
        if steps is not None:
            compiled = " (the compile included)" if run.cfg.compile else ""
            # one step more at least, and the last evaluation: a run with no time left for them overruns its budget
            spent = "" if elapsed_s + measured + plan.evaluation_s <= plan.loop_s else (
                f"; the {plan.loop_s:.0f} s planned for the loop are spent, so the run overruns its budget"
                + (" (a budget this short fits without --compile=true)" if run.cfg.compile else ""))
            # a warmup under way stays (its steps so far keep their rates: the plan's keys retrace the run), unless it
            # would outlast the run: then it is cut to a tenth of the steps, or ends now
            warmup = run.cfg.warmup_iters if run.cfg.warmup_iters < steps else max(progress.step, steps // 10)
            cut = f", a warmup of {warmup:,}" if "warmup_iters" in plan.keys and warmup < run.cfg.warmup_iters else ""
            replan(run, bar, f"{elapsed_s:.0f} s in at step {progress.step:,}{compiled}, a step takes "
                             f"{measured:.3f} s, not the probe's {plan.step_s:.3f} s: {steps:,} steps instead of "
                             f"{plan.steps:,}{cut}{spent}", max_iters=steps, lr_decay_iters=steps, warmup_iters=warmup,
                   eval_interval=eval_interval_for(steps))
            plan.step_s = measured
    plan.corrected = True
    pace.mark(progress.step, progress.elapsed_s)


def keep_the_deadline(run: Run, bar: tqdm, pace: Pace) -> None:
    """Before each evaluation but the last, and every twentieth of the budget: end the run in time, same schedule.
    A check before the warmup's end makes the plan's correction first (a machine slow from the start, or a long
    warmup of the user's, would otherwise go uncorrected)."""
    plan, progress = run.plan, run.progress
    if progress.step > pace.step:
        # the main process's measurements on every process, as in correct_the_plan
        elapsed_s, step_s, evaluation_s, measured_s = distributed.from_main(
            [progress.elapsed_s, pace.step_s(progress.step, progress.elapsed_s),
             pace.last_evaluation_s or plan.evaluation_s, progress.elapsed_s - pace.elapsed_s - pace.evaluated_s],
            run.ranks, run.device)
        if measured_s < plan.budget_s / (2 * DEADLINE_CHECKS):
            return  # checked moments ago: too few steps to tell the pace, whose measure goes on
        if not plan.corrected and "max_iters" in plan.keys:  # the measures above are every process's: all correct
            correct_the_plan(run, bar, pace)
        steps = steps_in_time(plan, progress.step, run.cfg.eval_interval, elapsed_s, step_s, evaluation_s)
        if steps is not None and ("max_iters" in plan.keys or steps < run.cfg.max_iters):  # the user's: only cut
            past = steps - run.cfg.lr_decay_iters
            replan(run, bar, f"{elapsed_s:.0f} s in at step {progress.step:,}, a step takes {step_s:.3f} s and an "
                             f"evaluation {evaluation_s:.1f} s: the run ends at step {steps:,} instead of "
                             f"{plan.steps:,}, on the same learning-rate schedule"
                             + (f" (its last {past:,} at min_lr)" if past > 0 else ""), max_iters=steps)
    pace.mark(progress.step, progress.elapsed_s)


def replan(run: Run, bar: tqdm, why: str, **keys) -> None:
    """Change max_iters mid-run, and the other keys where the plan set them, saying why in the log. The plan records
    those it set; a max_iters of the user's, cut to end in time, stays the user's (its resume command still holds)."""
    if run.ranks.is_main:
        bar.write(f"time budget: {why}")
    keys = {key: value for key, value in keys.items() if key == "max_iters" or key in run.plan.keys}
    run.plan.keys.update({key: value for key, value in keys.items() if key in run.plan.keys})
    run.plan.steps = bar.total = keys["max_iters"]
    run.cfg = replace(run.cfg, **keys)


def sample_text(run: Run, n_tokens: int) -> str:
    tokenizer = run.dataset.tokenizer
    idx = torch.tensor([start_tokens(tokenizer, run.dataset.meta.get("train_documents"))], dtype=torch.long,
                       device=run.device)
    run.model.eval()
    # decoding runs the blocks uncompiled (compile_blocks); set at the call, as a decorator's import of torch._dynamo
    # (seconds) would delay every start of train.py, even one that stops at a bad flag
    with torch.compiler.set_stance("force_eager"):
        out = run.model.generate(idx, n_tokens, temperature=0.8, top_k=200, vocab_limit=tokenizer.vocab_size,
                                 generator=torch.Generator(device=run.device).manual_seed(run.cfg.seed))
    run.model.train()
    new = out[0, idx.size(1) :].tolist()
    if tokenizer.eot_token in new:  # end-of-text ends the sample, as in sample.py
        new = new[: new.index(tokenizer.eot_token)]
    return tokenizer.decode(new)


@torch.no_grad()
def attention_picture(run: Run, n_tokens: int = 24) -> Path:
    """out_dir/attention.png: every head's pattern over the start of the validation text."""
    model = run.model
    ids = run.dataset.val[: min(n_tokens, model.config.block_size)].tolist()
    model.eval()
    with torch.compiler.set_stance("force_eager"):  # the explicit path, which hands back what attention saw
        patterns = torch.stack(model.attention_patterns(torch.tensor([ids], device=run.device)))[:, 0]  # (L,nh,T,T)
    model.train()
    texts = token_texts(run.dataset.tokenizer, ids)
    figure = heatmap_figure(patterns.float().cpu(), texts, f"step {run.progress.step}")
    return save_png(figure, run.out_dir / "attention.png", "train.py")


def next_commands(run: Run) -> str:
    """Where the run's outputs are and what to run next on them."""
    out_dir, latest = run.out_dir, run.latest
    flag = shlex.quote(f"--out_dir={out_dir}")
    tokenizer, context = run.dataset.tokenizer, run.model.config.block_size
    try:  # attention.py's default text where it fits this vocabulary and context, else the validation text's start
        fits = len(tokenizer.encode(AttentionConfig.text)) <= context
    except DataError:  # a character vocabulary of other text than Shakespeare's
        fits = False
    text_flag = "" if fits else " --text=" + flag_text(tokenizer.decode(run.dataset.val[:min(24, context)].tolist()),
                                                       escapes=True)
    best = existing_checkpoint(checkpoint_path(out_dir, "best", run.cfg.checkpoint_format))  # another format's too
    if run.saved_step is None:  # with always_save_checkpoint=false, no evaluation beat the first: best.pt alone
        files, flag = [], f"{flag} --checkpoint={best.name}"
    elif run.saved_step == run.progress.step:
        files = [f"{latest} (latest)"]
    else:
        files = [f"{latest} (step {run.saved_step}: with always_save_checkpoint=false it is saved on a new best only)"]
    files += [path.name for path in (best, out_dir / "log.jsonl", out_dir / "loss.png") if path.exists()]  # written
    listed = ", ".join(files[:-1]) + " and " * (len(files) > 1) + files[-1]
    sample, evaluate, attention = (shlex.quote(script(name)) for name in ("sample.py", "eval.py", "attention.py"))
    return (f"the run: {listed} in {out_dir}\n"
            f"next: python {sample} {flag}      text from the model\n"
            f"      python {evaluate} {flag}        loss and bits per byte on the validation split\n"
            f"      python {attention} {flag}{text_flag}   attention maps and the explorer page")


def describe(run: Run) -> str:
    c, cfg, world = run.model.config, run.cfg, run.ranks.world_size
    peak = "" if run.mfu.peak is None else f"peak {run.mfu.peak / 1e12:.2f} TFLOP/s, "
    recipe = [c.pos_emb if c.pos_emb == "rope" else "learned positions", c.norm, c.mlp, *(["qk-norm"] * c.qk_norm),
              counted(c.n_kv_head, "key/value head") if c.n_kv_head < c.n_head else "",
              "tied head" if c.tie_embeddings else "untied head", " + ".join(run.optimizers.parts)]
    shape = shape_words(c.n_layer, c.n_head, c.n_embd, c.block_size)
    return (f"model: {run.model.num_params():,} parameters ({shape}; {', '.join(r for r in recipe if r)}); "
            f"device {run.device}, {run.dtype}{', compiled' if cfg.compile else ''}\n"
            f"batch: {cfg.batch_size} x {cfg.gradient_accumulation_steps} accumulation x "
            f"{counted(world, 'process', 'processes')} = {cfg.batch_size * cfg.gradient_accumulation_steps * world} "
            f"sequences, {run.tokens_per_step:,} tokens per step; MFU: {peak}{run.mfu.peak_source}")


def main(argv: list[str], temporary: bool = False) -> None:
    """temporary: out_dir goes once the caller is done (bench.py), so no command to run on it is printed."""
    cfg = read_config(TrainConfig, argv)
    run = set_up(cfg, argv)
    main_process, finished = run.ranks.is_main, run.progress.step >= run.cfg.max_iters  # finished: no steps left
    try:
        if main_process:
            if run.progress.step:
                print(f"resuming from {run.latest} at step {run.progress.step}")
                if run.log.lost:
                    print(f"note: out_dir holds no log.jsonl: the log and loss.png start at step {run.progress.step}",
                          file=sys.stderr)
                if run.log.dropped_to is not None:
                    print(f"note: log.jsonl went on to step {run.log.dropped_to}; its rows after step "
                          f"{run.progress.step}, the checkpoint's, were dropped, as those steps are run again",
                          file=sys.stderr)
            if finished:
                how = "resume without --time_budget and raise max_iters" if run.plan else "raise max_iters"
                print(f"note: the run is at step {run.progress.step} and max_iters={run.cfg.max_iters}: nothing to "
                      f"train; {how} to go on", file=sys.stderr)
            print(describe(run), flush=True)
            if run.cfg.pretrained and not {"learning_rate", "muon_lr"} & cfg.keys_set:
                rates = [f"{key}={getattr(run.cfg, key):g}" for key in ("learning_rate", "muon_lr")
                         if key == "learning_rate" or "muon" in run.optimizers.parts]
                print(f"note: {' and '.join(rates)}: the default rates, for training from scratch; a pretrained "
                      f"model is fine-tuned at lower ones (docs/huggingface.md#fine-tuning)", file=sys.stderr)
            # the user's schedule keys against a new plan's (a resumed plan's cuts are its own), unless finished
            if (run.plan is None or not run.progress.step) and not finished:
                for warning in run.cfg.schedule_warnings():
                    print(f"note: {warning}", file=sys.stderr)
        with (tqdm(total=run.cfg.max_iters, initial=run.progress.step, unit="step", dynamic_ncols=True,
                   disable=not main_process or finished) as bar, StopSignals(announce=main_process) as stop):
            # the steps and evaluations compile: a compile that fails (no C++ compiler, ...: inductor's report runs
            # to pages) is one line; one that Ctrl-C killed (it reaches the compiler too) is the interrupt it is
            try:
                stopped_by = train(run, bar, stop)
            except torch._dynamo.exc.BackendCompilerFailed as e:
                if stop.received is not None:
                    raise KeyboardInterrupt from None
                reason = (str(e).strip().splitlines() or [""])[0][:200]
                raise UserError(f"could not compile the model ({reason}); train with --compile=false") from None
            except RuntimeError as e:  # torch.OutOfMemoryError too
                if (failed := out_of_memory(e)) is None:
                    raise
                raise run.out_of_memory_error(failed) from None
        if stopped_by is None and main_process:
            if math.isfinite(run.progress.best_val_loss):  # inf: no evaluation yet (a resume with nothing to train)
                print(f"best val loss {run.progress.best_val_loss:.4f}")
            if run.cfg.sample_tokens and stop.received is None:  # a stop asked in the last step skips the sample
                print("--- sample ---\n" + sample_text(run, run.cfg.sample_tokens) + "\n--------------")
            if not temporary:
                print(next_commands(run))
        # the others wait while the main process saves and samples: a process group torn down under it aborts it
        distributed.wait_for_all(run.ranks)
    finally:
        if main_process:  # the log and out_dir are its own
            run.log.finish()
            run.claim.release()
        saved = f"; checkpoint saved to {run.latest}. Resume with:\n  {resume_command(run.argv, run.ranks)}"
        stopped = f"stopped at step {run.progress.step}{'' if temporary else saved}"
        # The DDP model holds gloo's last work and its tensors; left to the interpreter's shutdown, their
        # release aborts the process. Free them (and any cycle around them) first, then leave the group.
        del run
        gc.collect()
        distributed.stop()
    if stopped_by is not None and main_process:
        print(stopped, file=sys.stderr)
    if (signum := stopped_by or stop.received) is not None:  # one in the last step: finished, it ends as asked
        sys.exit(128 + signum)


if __name__ == "__main__":
    # SIGTERM before the loop (a time budget's probe, say) as Ctrl-C: a run that never began takes back its out_dir.
    # The main process's alone: it holds out_dir, and another waiting in a collective could not run the handler
    if os.environ.get("RANK", "0") == "0":
        stop_on_sigterm()
    run_cli(main, smaller=f"a smaller batch_size ({smaller_batches()}) or a smaller model")
