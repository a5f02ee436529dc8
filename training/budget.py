"""A time budget: which model, and how many steps, train best on this machine in the time given.

One dial, depth d: n_layer = n_head = d and n_embd = block_size = 32 d (the default run is d = 4). A short
probe times each shape along the dial here; the plan gives every shape the steps that fit the budget and
picks the one whose training text per parameter (in bytes, so that one ratio holds for any tokenizer) comes
closest to BYTES_PER_PARAMETER (docs/time_budget.md). The dial moves around the keys the user set.
"""

import bisect
import dataclasses
import math
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import torch
from tqdm import tqdm

from config.device import autocast, timed
from config.errors import UserError
from config.settings import TrainConfig, parse_duration, tokens_per_step
from model import GPT, ModelError
from model.config import counted, shape_words
from model.params import training_flops_per_token

from . import distributed
from .init_from import check_trainable_here, model_config
from .optimizer import build_optimizers

DEPTHS = range(2, 17)
BYTES_PER_PARAMETER = 4.0  # bytes of training text seen per parameter: fitted from the sweeps in docs/time_budget.md
MIN_STEPS = 20
EVALUATIONS = 4  # evaluations (and checkpoints) per planned run, the last at its end
MARGIN = 0.03  # of the budget, kept for start-up, checkpoints and pictures
DEADLINE_CHECKS = 20  # per budget, besides those before evaluations: a machine slowing down late costs a twentieth
PROBE_STEPS = 5  # timed per shape, after a first one
IMPORTED = time.perf_counter()
PLANNED = ("n_layer", "n_head", "n_embd", "block_size", "max_iters", "lr_decay_iters", "warmup_iters", "eval_interval")


def process_age_s() -> float:
    """Seconds since this process started (/proc; elsewhere since this import): the budget holds the start-up too."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])  # field 22: start time
        return float(open("/proc/uptime").read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - IMPORTED


def dial(depth: int) -> dict:
    return {"n_layer": depth, "n_head": depth, "n_embd": 32 * depth, "block_size": 32 * depth}


@dataclasses.dataclass
class Probed:
    """One shape, as timed on this device."""

    shape: dict  # n_layer, n_head, n_embd, block_size
    params: int
    step_s: float  # one optimizer step, all micro-batches
    forward_s: float  # one forward pass of a batch, as an evaluation runs it
    token_s: float  # one token of the closing sample, through the cache


@dataclasses.dataclass
class Plan:
    shape: dict
    params: int
    steps: int
    tokens_per_step: int
    bytes_per_token: float  # of the dataset's training text
    step_s: float  # the probe's; the run corrects its steps once if it measures otherwise
    train_s: float  # seconds planned for the training steps
    evaluation_s: float  # one evaluation (both splits), by the probe
    loop_s: float  # seconds planned for the loop: its steps and evaluations
    budget_s: float
    keys: dict  # the training keys the plan sets
    fixed: list[str]  # the keys the user set, which the plan kept
    corrected: bool = False

    @classmethod
    def stored(cls, stored: dict) -> "Plan":
        """The plan a checkpoint holds."""
        if stored.keys() != {field.name for field in dataclasses.fields(cls)}:
            raise UserError("cannot resume: the checkpoint's time-budget plan is in an older format; "
                            "train in a new out_dir")
        return cls(**stored)

    def line(self, eval_interval: int) -> str:
        tokens = self.steps * self.tokens_per_step
        left_s = self.budget_s - process_age_s()
        if "max_iters" in self.fixed:  # the user's steps may end the run well before the budget does
            left_s = min(left_s, self.train_s + evaluations(self.steps, eval_interval) * self.evaluation_s)
        end = datetime.now() + timedelta(seconds=left_s)
        when = f"{end:%H:%M:%S}" if end.date() == datetime.now().date() else f"{end:%Y-%m-%d %H:%M}"
        fixed = f"; kept: {', '.join(self.fixed)}" if self.fixed else ""
        shape = shape_words(**self.shape)  # n_layer, n_head, n_embd, block_size
        return (f"time budget {self.budget_s:g} s: {shape} ({self.params:,} parameters), {self.steps:,} steps, "
                f"{tokens:,} tokens ({tokens / self.params:.1f} per parameter, "
                f"{tokens * self.bytes_per_token / self.params:.1f} bytes of text), "
                f"{counted(evaluations(self.steps, eval_interval), 'evaluation')}; ends about {when}{fixed}")


def evaluations(steps: int, eval_interval: int) -> int:
    """Evaluations in a run of `steps`: one every eval_interval steps, and one at its end."""
    return -(-steps // eval_interval)


def eval_interval_for(steps: int) -> int:
    """The plan's evaluation interval: EVALUATIONS evaluations, the last at the run's end."""
    return -(-steps // EVALUATIONS)


def evaluation_s(probed: Probed, cfg: TrainConfig) -> float:
    return 2 * cfg.eval_iters * probed.forward_s  # both splits


def overhead_s(probed: Probed, cfg: TrainConfig, n_evaluations: int = EVALUATIONS) -> float:
    """Seconds that are not training steps: the evaluations and the closing sample."""
    return n_evaluations * evaluation_s(probed, cfg) + cfg.sample_tokens * probed.token_s


def users_keys(cfg: TrainConfig) -> list[str]:
    """The keys the plan would set that the user set, which it keeps (one given as none follows the plan's steps);
    a max_iters too short to plan around is refused."""
    fixed = sorted(k for k in cfg.keys_set - cfg.follows_max_iters if k in PLANNED or k in ("batch_size", "dtype"))
    if "max_iters" in fixed and cfg.max_iters < MIN_STEPS:
        raise UserError(f"max_iters={cfg.max_iters} is under the {MIN_STEPS} steps a time budget trains at least; "
                        f"raise it, or drop time_budget")
    return fixed


def most_steps(probed: Probed, cfg: TrainConfig, fixed: list[str], left_s: float) -> tuple[int, float]:
    """The most steps of a probed shape that fit left_s with their evaluations and the closing sample after them,
    and the seconds left for the loop."""
    loop_s = left_s - cfg.sample_tokens * probed.token_s
    one = evaluation_s(probed, cfg)
    if "eval_interval" in fixed:  # one every eval_interval steps and one at the end
        return int((loop_s - one) // (probed.step_s + one / cfg.eval_interval)), loop_s
    return int((loop_s - EVALUATIONS * one) // probed.step_s), loop_s  # EVALUATIONS of them


def plan_run(probes: list[Probed], cfg: TrainConfig, budget_s: float, spent_s: float, world_size: int,
             bytes_per_token: float) -> Plan:
    """The shape and schedule for the budget from the probe's timings (spent_s is gone already; world_size
    processes). A budget too short for the smallest shape's MIN_STEPS steps is refused, naming one that fits."""
    fixed = users_keys(cfg)
    fits = []
    for probed in probes:
        most, loop_s = most_steps(probed, cfg, fixed, budget_s * (1 - MARGIN) - spent_s)
        steps = cfg.max_iters if "max_iters" in fixed else most
        if MIN_STEPS <= steps <= most:
            fits.append((probed, steps, loop_s))
    if not fits:
        small, steps = probes[0], cfg.max_iters if "max_iters" in fixed else MIN_STEPS  # max_iters >= MIN_STEPS
        # a quarter more than this run's timings ask: the next run's start-up and probe take their own time
        n_evaluations = evaluations(steps, cfg.eval_interval) if "eval_interval" in fixed else EVALUATIONS
        need = 1.25 * (spent_s + overhead_s(small, cfg, n_evaluations) + steps * small.step_s) / (1 - MARGIN)
        what = f"your max_iters={steps}" if "max_iters" in fixed else f"{steps} steps"  # set in a config file, maybe
        costs = {"max_iters" if "max_iters" in fixed else "the shape": steps * small.step_s,
                 "eval_iters" + (", or raise eval_interval" if "eval_interval" in fixed else ""):
                     n_evaluations * evaluation_s(small, cfg),
                 "sample_tokens": cfg.sample_tokens * small.token_s}
        fix = f"give at least {math.ceil(need)}s" if need <= 8760 * 3600 else \
            f"no budget up to a year (8760h) would do; lower {max(costs, key=costs.get)}"
        raise UserError(f"time_budget={cfg.time_budget} is too short to train even the smallest shape for "
                        f"{what} here; {fix}")
    if "max_iters" in fixed:  # the steps are the user's: the largest model that takes them in time
        probed, steps, loop_s = max(fits, key=lambda fit: fit[0].params)
    else:
        probed, steps, loop_s = min(fits, key=lambda fit: abs(math.log(
            fit[1] * tokens_per_step(vars(cfg) | fit[0].shape, world_size) * bytes_per_token / fit[0].params
            / BYTES_PER_PARAMETER)))
    keys = {**probed.shape, "max_iters": steps, "lr_decay_iters": steps, "warmup_iters": steps // 10,
            "eval_interval": eval_interval_for(steps)}
    keys = {k: v for k, v in keys.items() if k not in fixed}
    return Plan(probed.shape, probed.params, steps, tokens_per_step(vars(cfg) | probed.shape, world_size),
                bytes_per_token, probed.step_s, steps * probed.step_s, evaluation_s(probed, cfg), loop_s, budget_s,
                keys, fixed)


def candidate_shapes(cfg: TrainConfig, vocab_size: int, device: torch.device = torch.device("cpu"),
                     processes_here: int = 1, longest_context: int | None = None) -> list[dict]:
    """The dial's shapes with the user's keys kept, each once, that make a valid model that trains in the memory
    here, with a context of at most longest_context (the dataset's splits hold a window of it); when none does, a
    refusal with the first one's reason."""
    kept = {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "block_size") if k in cfg.keys_set}
    shapes, refusals = [], []
    for depth in DEPTHS:
        shape = {**dial(depth), **kept}
        if longest_context is not None and shape["block_size"] > longest_context:
            refusals.append(UserError(f"block_size={shape['block_size']} is over the {longest_context} tokens a "
                                      f"window of the dataset's splits holds; prepare more text"))
            continue
        try:
            shaped = dataclasses.replace(cfg, **shape)
            check_trainable_here(model_config(shaped, vocab_size), shaped, device, processes_here)
        except (ModelError, UserError) as e:
            refusals.append(e)  # e.g. a fixed n_head that this width cannot divide, or a shape past the memory
            continue
        if shape not in shapes:
            shapes.append(shape)
    if not shapes:
        raise UserError(f"no shape the time budget can pick fits your keys (the first it tried: {refusals[0]})")
    return shapes


def step_on_one_batch(cfg: TrainConfig, vocab_size: int, device: torch.device, dtype: str, compile: bool = False
                      ) -> tuple[GPT, Callable[[], tuple[float, float]]]:
    """cfg's model, and a function that takes one training step as train.py's does on one batch of random tokens
    and returns its seconds and the optimizer's share."""
    model = GPT(model_config(cfg, vocab_size)).to(device)
    optimizers = build_optimizers(model, cfg, device)
    if compile:
        model.compile_blocks()
    x = torch.randint(0, vocab_size, (cfg.batch_size, cfg.block_size), device=device)  # (B, T)
    scaler = torch.amp.GradScaler(enabled=False)

    def forward_backward() -> None:
        for _ in range(cfg.gradient_accumulation_steps):
            with autocast(device, dtype):
                loss = model(x, x)[1]
            loss.backward()

    def step() -> tuple[float, float]:
        passes_s = timed(forward_backward, device=device)[1]
        update_s = timed(optimizers.update, scaler, model.parameters(), cfg.grad_clip, device=device)[1]
        return passes_s + update_s, update_s

    return model, step


def matmul_rate(device: torch.device, dtype: str) -> float:
    """FLOP/s of a large matrix product in dtype here: no training step computes faster."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
    a @ a  # the first pays for allocations
    return 4 * 2 * n**3 / timed(lambda: [a @ a for _ in range(4)], device=device)[1]


def time_steps(cfg: TrainConfig, vocab_size: int, device: torch.device, dtype: str) -> tuple[int, float, float, float]:
    """Parameters, and seconds per optimizer step, forward pass and sampled token of cfg's model on random tokens."""
    model, step = step_on_one_batch(cfg, vocab_size, device, dtype)
    step()  # the first step allocates and warms the caches
    step_s = sum(step()[0] for _ in range(PROBE_STEPS)) / PROBE_STEPS
    x = torch.randint(0, vocab_size, (cfg.batch_size, cfg.block_size), device=device)  # (B, T)
    with torch.no_grad(), autocast(device, dtype):  # the best of three: the first pays for allocations
        forward_s = min(timed(model, x, x, device=device)[1] for _ in range(3))
    model.generate(x[:1, :1], 2)  # the sampler's first call allocates
    token_s = timed(model.generate, x[:1, :1], 16, device=device)[1] / 16
    return model.num_params(), step_s, forward_s, token_s


def check_probe_fits(smallest: TrainConfig, vocab_size: int, budget_s: float, device: torch.device, dtype: str,
                     ranks: distributed.Ranks) -> None:
    """Refuse at once a smallest shape whose probe alone would outlast the budget even at twice the rate of a large
    matrix product here (a batch or context far too large): it could run for hours, and a Ctrl-C cannot cut into one
    long product. The main process's measure on every process, so all refuse alike."""
    rate = distributed.from_main([matmul_rate(device, dtype)], ranks, device)[0]
    sequences = smallest.batch_size * smallest.gradient_accumulation_steps
    flops = training_flops_per_token(model_config(smallest, vocab_size), smallest.block_size) * sequences * \
        smallest.block_size
    step_s = flops / (2 * rate)
    if (probe_s := (1 + PROBE_STEPS) * step_s) > budget_s * (1 - MARGIN):
        raise UserError(f"time_budget={smallest.time_budget} is too short to time even the smallest shape here: a "
                        f"step of {sequences:,} x {smallest.block_size:,} tokens takes at least {step_s:,.3g} s "
                        f"({flops:.2g} FLOPs at twice the {rate / 1e9:,.0f} GFLOP/s of a large matrix product here), "
                        f"and the probe takes {1 + PROBE_STEPS}; lower batch_size, gradient_accumulation_steps or "
                        f"block_size, or give over {math.ceil(probe_s / (1 - MARGIN))}s")


def make_plan(cfg: TrainConfig, meta: dict, device: torch.device, dtype: str, ranks: distributed.Ranks) -> Plan:
    """Probe the dial's shapes here, smallest first, and plan the run for its time budget; the plan line is printed.
    The probe stops at a shape that would see under BYTES_PER_PARAMETER with the whole budget or could not take
    MIN_STEPS steps (the user's max_iters) in the time left. All processes take the slowest timings."""
    budget_s, bytes_per_token = parse_duration(cfg.time_budget), meta["train_bytes"] / meta["train_tokens"]
    fixed = users_keys(cfg)  # before the probe: a max_iters refused is refused at once
    needed = cfg.max_iters if "max_iters" in fixed else MIN_STEPS
    # the longest context whose windows the splits hold: one per process of the training split, one of each split
    longest = min((meta["train_tokens"] - 1) // ranks.world_size, meta["val_tokens"] - 1)  # for the evaluations
    probes, shapes = [], candidate_shapes(cfg, meta["vocab_size"], device, ranks.per_machine, longest)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the run's seeds stay put
        check_probe_fits(dataclasses.replace(cfg, **shapes[0]), meta["vocab_size"], budget_s, device, dtype, ranks)
        for shape in tqdm(shapes, desc="probing shapes", unit="shape", disable=not ranks.is_main, leave=False):
            params, *timed = time_steps(dataclasses.replace(cfg, **shape), meta["vocab_size"], device, dtype)
            timings = torch.tensor([*timed, process_age_s()], device=device)
            if ranks.distributed:  # the slowest timings and the oldest process: every process stops at one shape
                torch.distributed.all_reduce(timings, op=torch.distributed.ReduceOp.MAX)
            *timed, age_s = timings.tolist()
            probed = Probed(shape, params, *timed)
            probes.append(probed)
            if most_steps(probed, cfg, fixed, budget_s * (1 - MARGIN) - age_s)[0] < needed:
                break  # neither this shape nor any larger one takes the steps in the time left
            tokens = budget_s / probed.step_s * tokens_per_step(vars(cfg) | shape, ranks.world_size)  # the whole budget
            if "max_iters" not in fixed and tokens * bytes_per_token / params < BYTES_PER_PARAMETER:
                break
    # the main process's age on every process: with the probes' shared timings, one plan for all of them
    age_s = distributed.from_main([process_age_s()], ranks, device)[0]
    plan = plan_run(probes, cfg, budget_s, age_s, ranks.world_size, bytes_per_token)
    if ranks.is_main:
        print(plan.line(plan.keys.get("eval_interval", cfg.eval_interval)), flush=True)
    return plan


@dataclasses.dataclass
class Pace:
    """A time budget's measure of the loop: seconds per step since a mark (evaluations out), the last evaluation's."""

    step: int
    elapsed_s: float
    evaluated_s: float = 0.0  # seconds of evaluations since the mark
    last_evaluation_s: float | None = None

    def mark(self, step: int, elapsed_s: float) -> None:
        self.step, self.elapsed_s, self.evaluated_s = step, elapsed_s, 0.0

    def evaluated(self, seconds: float) -> None:
        self.evaluated_s += seconds
        self.last_evaluation_s = seconds

    def step_s(self, step: int, elapsed_s: float) -> float:
        return (elapsed_s - self.elapsed_s - self.evaluated_s) / (step - self.step)


def corrected_steps(plan: Plan, step: int, measured_step_s: float, elapsed_train_s: float) -> int | None:
    """The steps that fit the planned training time at the measured pace if off the probe's by over 20%, else None."""
    if plan.corrected or abs(measured_step_s / plan.step_s - 1) <= 0.2:
        return None
    return max(step + 1, step + int((plan.train_s - elapsed_train_s) // measured_step_s))


def deadline_due(plan: Plan, pace: Pace, elapsed_s: float) -> bool:
    """Whether a twentieth of the budget has passed since the pace's mark."""
    return elapsed_s - pace.elapsed_s >= plan.budget_s / DEADLINE_CHECKS


def steps_in_time(plan: Plan, step: int, eval_interval: int, elapsed_s: float, step_s: float, evaluation_s: float
                  ) -> int | None:
    """The steps that end the loop when planned at the measured pace, if they differ from the plan's by over 2% of
    the budget, else None. Only the end moves, never the learning-rate schedule: a run behind its plan stops a
    little earlier in its decay, one ahead of it goes on past the decay's end at min_lr."""
    def rest_s(end: int) -> float:  # the loop from here to `end`: its steps, the evaluations due now and the last
        return (end - step) * step_s + (evaluations(end, eval_interval) - (step - 1) // eval_interval) * evaluation_s

    left_s = plan.loop_s - elapsed_s
    ends = range(step + 1, step + 2 + int(max(left_s, 0) // step_s))  # one more step at least; at most the steps alone
    # the most steps that fit with their evaluations (fewer steps, fewer of those too)
    steps = ends[max(bisect.bisect_right(ends, left_s, key=rest_s) - 1, 0)]
    return None if abs(steps - plan.steps) * step_s <= 0.02 * plan.budget_s else steps
