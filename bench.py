"""Benchmarks, measured as ratios within one run on whatever device is here (`python bench.py --help`
lists their keys). What each one measures is in its bench_* function's docstring; the figures, with
their hardware, in docs/benchmarks.md."""

import config.interrupt  # noqa: F401  first: a Ctrl-C while torch loads is one line

import dataclasses
import itertools
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from config.device import pick_device, resolve_dtype, timed
from config.errors import UserError, run_cli, stop_on_sigterm
from config.outputs import check_output, check_replaceable
from config.parsing import unknown_key
from config.settings import BenchConfig, SampleConfig, TrainConfig, read_config, tokens_per_step
from data import load_tokenizer
from data.build import prepare_dataset
from data.corpora import ensure_dataset, shakespeare_text
from data.sources import read_pieces
from data.dataset import open_dataset
from data.tokenizer import bpe_vocab_size, load_gpt2_encoding, train_bpe
from eval import validation_split
from model import GPT, GPTConfig
from model.config import GPT2_SHAPE, WEIGHTS, flag_value, shape_words
from model.decoding import compile_ahead, generation_cache
from model.params import training_flops_per_token
from model.weights import Int8Linear, with_weights
from model.scoring import score_tokens, summarize
from training.budget import dial, step_on_one_batch
from training.init_from import load_model
from training.metrics_log import read_rows
from training.throughput import MFUMeter
from viz.loss_plot import compare_runs, drawn_by, save_png

HERE = Path(__file__).parent
CLASSIC = str(HERE / "configs" / "classic.toml")  # the classic recipe's file, wherever bench.py runs from


def table(columns: dict[str, str]) -> Callable[..., None]:
    """Print the columns' titles and return the function that prints a row. Each column's format
    ('>9,.0f': alignment and width first) formats its cells; its alignment and width, its title."""
    specs = list(columns.values())
    widths = [re.match(r"[<>]?\d*", spec).group() for spec in specs]
    print(" ".join(f"{title:{width}}" for title, width in zip(columns, widths)))
    return lambda *cells: print(" ".join(f"{cell:{spec}}" for cell, spec in zip(cells, specs)), flush=True)


def rate_cell(value: float) -> str:
    """Tokens per second to three figures at least (2.35, 23.5, 1,234): a slow case's ratio can be checked by hand."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def run_python(script: str, *args: str, launcher: tuple[str, ...] = ()) -> str:
    """`python [LAUNCHER] SCRIPT ARGS` started here as a user starts it: its output, or its error as a UserError."""
    result = subprocess.run([sys.executable, *launcher, script, *args], cwd=HERE, capture_output=True, text=True)
    if result.returncode != 0:
        error = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{script} failed: {error.removeprefix('error: ')}")
    return result.stdout


GENERATION_SIZE = dict(block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384, dropout=0.0, bias=False)
GENERATION_MODELS = {  # the GPT-2 shape, and the modern one as train.py's defaults build it
    "GPT-2 shape (learned positions)": GPTConfig(**{**GPT2_SHAPE, **GENERATION_SIZE}),
    "modern shape (RoPE, rolling cache)": GPTConfig(**GENERATION_SIZE),
}


def time_generation(model: GPT, batch_size: int, new_tokens: int, use_cache: bool, device: torch.device,
                    compile: bool = False) -> float:
    """Best of up to three timed runs (as many as fit in 30 s) of new_tokens after a 16-token prompt."""
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, 16), device=device)
    times = []
    while len(times) < 3 and sum(times) + (times[-1] if times else 0) <= 30.0:
        times.append(timed(model.generate, prompt, new_tokens, temperature=1.0, use_cache=use_cache, compile=compile,
                           generator=torch.Generator(device=device).manual_seed(0), device=device)[1])
    return min(times)


def bench_one_shape(name: str, config: GPTConfig, cfg: BenchConfig, device: torch.device) -> None:
    """Cached against uncached generation of one shape; for RoPE, the time per cached token by block of positions."""
    torch.manual_seed(0)
    model = GPT(config).to(device).eval()
    print(f"\n{name}: {model.num_params():,} parameters "
          f"({shape_words(config.n_layer, config.n_head, config.n_embd, config.block_size)})")
    time_generation(model, 1, 20, True, device)  # warm-up
    print("eager float32, cached against uncached")
    row = table({"batch": ">5", "new tokens": ">10", "cached tok/s": ">13", "uncached tok/s": ">15", "speed-up": ">9"})
    for batch_size, new_tokens in itertools.product(cfg.batch_sizes, cfg.new_tokens):
        cached, uncached = (time_generation(model, batch_size, new_tokens, c, device) for c in (True, False))
        n = batch_size * new_tokens
        row(batch_size, new_tokens, rate_cell(n / cached), rate_cell(n / uncached), f"{uncached / cached:.1f}x")
    if config.pos_emb == "rope":  # the mean seconds per cached step in the first and the third block of positions
        T = config.block_size
        stream = model.generate_stream(torch.zeros(1, 1, dtype=torch.long, device=device), 3 * T,
                                       generator=torch.Generator(device=device).manual_seed(0))
        times = [timed(next, stream, device=device)[1] for _ in range(3 * T)]  # the first one runs the prefill too
        first, third = (statistics.mean(times[max(1, b * T) : (b + 1) * T]) for b in (0, 2))  # the prefill left out
        print(f"cached, per token: {1000 * first:.2f} ms in the first block of 256 positions, "
              f"{1000 * third:.2f} ms in the third ({third / first:.2f}x)")


def bench_decoding(config: GPTConfig, cfg: BenchConfig, device: torch.device, bandwidth: float) -> None:
    """Cached decoding, eager and compiled, per weight dtype, against the weight-streaming limit: bandwidth over the
    bytes of weights a step reads, times the batch (one read serves all); greedy tokens against eager float32's."""
    new_tokens = max(cfg.new_tokens)
    print(f"decoding, cached, {new_tokens} new tokens; compile: the cold compile of the step for that batch size")
    row = table({"weights": "<9", "step": "<9", "batch": ">5", "tok/s": ">7", "MB/step": ">8.1f",
                 "limit tok/s": ">12,.0f", "of limit": ">9.0%", "compile s": ">10", "greedy = eager float32": ">23"})
    prompt = torch.randint(0, config.vocab_size, (1, 16), device=device)
    reference = None
    for weights in WEIGHTS:
        torch.compiler.reset()  # each model is compiled afresh, not counted against dynamo's recompile limit
        torch.manual_seed(0)
        model = with_weights(GPT(config).to(device).eval(), weights)
        # what one decoding step reads: every Linear's tensors (an int8 one's weights, scales and biases)
        linears = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, Int8Linear))]
        step_bytes = sum(t.numel() * t.element_size() for m in linears for t in m.state_dict().values())
        for step, compile in (("eager", False), ("compiled", True)):
            for batch_size in cfg.batch_sizes:
                start = time.perf_counter()
                if compile:  # the step for this batch size and generation length, compiled before it is timed
                    compile_ahead(model, generation_cache(model, prompt.expand(batch_size, -1), new_tokens, True))
                compile_s = f"{time.perf_counter() - start:.0f}" if compile else "-"
                agree = ""
                if batch_size == 1:  # greedy tokens against eager float32's, the first ones generated
                    greedy = model.generate(prompt, new_tokens, temperature=0, compile=compile)[0, 16:]
                    reference = greedy if reference is None else reference
                    agree = f"{(greedy == reference).float().mean().item():.1%}"
                seconds = time_generation(model, batch_size, new_tokens, True, device, compile=compile)
                tok_s, limit = batch_size * new_tokens / seconds, batch_size * bandwidth / step_bytes
                row(weights, step, batch_size, rate_cell(tok_s), step_bytes / 1e6, limit, tok_s / limit, compile_s,
                    agree)


def bench_generation(cfg: BenchConfig, train_args: list[str]) -> None:
    """Generation of a 6-layer, 6-head, 384-wide model with a 256-token context, in the GPT-2 and the modern shape:
    bench_one_shape (cached against uncached), then bench_decoding (eager and compiled, per weight dtype)."""
    device = pick_device(cfg.device)
    # a cold compile, timed as a first run pays it, and no packages left behind, in the user's cache or here
    with tempfile.TemporaryDirectory(prefix="bench-compile-", ignore_cleanup_errors=True) as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        x = torch.ones(1 << 26, device=device)  # 256 MB of float32, far larger than the caches
        bandwidth = x.numel() * x.element_size() / min(timed(x.sum, device=device)[1] for _ in range(5))  # bytes/s
        del x
        print(f"generation on {device}, {torch.get_num_threads()} threads, after a 16-token prompt; best of up to 3 "
              f"runs; memory bandwidth {bandwidth / 1e9:.1f} GB/s")
        for name, config in GENERATION_MODELS.items():
            bench_one_shape(name, config, cfg, device)
            bench_decoding(config, cfg, device, bandwidth)


# nanoGPT's documented CPU run, in nanoGPT's (GPT-2's) recipe
NANOGPT_CPU = [CLASSIC, "--n_layer=4", "--n_head=4", "--n_embd=128", "--block_size=64",
               "--batch_size=12", "--dtype=float32", "--compile=false", "--dropout=0.0"]
PRECISION_MODEL = ["--n_layer=6", "--n_head=6", "--n_embd=384", "--block_size=256", "--batch_size=8", "--dropout=0.0"]


def beneath(built_in: list[str], train_args: list[str]) -> list[str]:
    """A benchmark's own settings (config files and flags) with the user's on top: a key that the user's files or
    flags set keeps the user's value (a flag of its own would beat a file of the user's)."""
    given = read_config(TrainConfig, train_args).keys_set
    return [*(a for a in built_in if not a.startswith("--") or a[2:].partition("=")[0] not in given), *train_args]


def run_train(train_args: list[str], steps: int | None, out_dir: Path) -> list[dict]:
    """train.py's main in this process, and its log rows: `steps` steps evaluated at the end, else as configured."""
    import train

    budget = [f"--max_iters={steps}", f"--lr_decay_iters={steps}", f"--eval_interval={steps}",
              "--always_save_checkpoint=false"] if steps else []
    train.main([*train_args, *budget, "--sample_tokens=0", f"--out_dir={out_dir}"], temporary=True)
    return read_rows(out_dir / "log.jsonl")


def check_timed(c: TrainConfig, steps: int, skip: int) -> None:
    """Before any run: at least two logged steps (every log_interval, and the last) after `skip` warm-up steps."""
    logged = {*range(c.log_interval, steps + 1, c.log_interval), steps}
    if len([step for step in logged if step > skip]) < 2:
        raise UserError(f"log_interval={c.log_interval} leaves under two logged steps after the first {skip} of "
                        f"{steps} to time; lower it, or raise steps")


def seconds_per_step(rows: list[dict], skip: int) -> list[float]:
    """Per-step wall time of the loop between logged steps, after `skip` warm-up steps."""
    batches = [r for r in rows if r["kind"] == "batch" and r["step"] > skip]
    if len(batches) < 2:  # check_timed foresaw more: the run stopped early
        raise UserError(f"the run logged under two steps after the first {skip} to time")
    return [(b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]) for a, b in zip(batches, batches[1:])]


def training_step(cfg: TrainConfig, device: torch.device) -> tuple[GPT, Callable[[], tuple[float, float]], int]:
    """cfg's model, train.py's step for it on one batch (training.budget.step_on_one_batch), and its tokens."""
    torch.manual_seed(cfg.seed)
    vocab_size = open_dataset(ensure_dataset(cfg.dataset)).meta["vocab_size"]
    model, step = step_on_one_batch(cfg, vocab_size, device, resolve_dtype(cfg.dtype, device), cfg.compile)
    return model, step, tokens_per_step(vars(cfg))


RECIPE_KEYS = ("pos_emb", "norm", "qk_norm", "mlp", "tie_embeddings", "optimizer")


def bench_recipe_cost(train_args: list[str], steps: int, device: torch.device) -> None:
    """The cost per token of the classic and the default recipe at the same shape (the default run's, under
    train_args), eager and compiled, timed in turns (drift hits all four alike); each compile's one-time cost
    printed apart. Each recipe's keys win over train_args', so that each row is the recipe it names."""
    steps_per_turn, turns = max(1, steps // 8), 4
    variants, first = {}, {}
    for recipe, files in (("classic", [CLASSIC]), ("default", [])):
        keys = read_config(TrainConfig, files)  # the recipe's keys as its files set them (none: the default recipe)
        recipe_flags = [f"--{key}={flag_value(getattr(keys, key))}" for key in RECIPE_KEYS]
        for compile in (False, True):
            name = f"{recipe}, {'compiled' if compile else 'eager'}"
            flags = [*train_args, *recipe_flags, f"--compile={compile}"]
            _, variants[name], tokens = training_step(read_config(TrainConfig, flags), device)  # tokens: the same
            first[name] = sum(variants[name]()[0] for _ in range(2))  # a compile happens here
    times = {name: [] for name in variants}
    for _ in range(turns):
        for name, step in variants.items():
            times[name] += [step() for _ in range(steps_per_turn)]
    base = statistics.median(seconds for seconds, _ in times["classic, eager"])
    c = read_config(TrainConfig, train_args)
    print(f"\nrecipes at the same shape ({shape_words(c.n_layer, c.n_head, c.n_embd, c.block_size)}, batch "
          f"{c.batch_size}), {resolve_dtype(c.dtype, device)}, {turns} turns of {steps_per_turn} steps each, medians")
    row = table({"recipe, step": "<20", "ms/iter": ">9.2f", "optimizer ms": ">13.2f", "tokens/s": ">10,.0f",
                 "cost/token vs classic eager": ">28", "compile s": ">10"})
    for name, step_times in times.items():
        seconds, optimizer_s = (statistics.median(column) for column in zip(*step_times))
        compile_s = f"{first[name] - 2 * seconds:.1f}" if name.endswith("compiled") else "-"
        row(name, 1000 * seconds, 1000 * optimizer_s, tokens / seconds, f"{seconds / base:.2f}x", compile_s)


def bench_training(cfg: BenchConfig, train_args: list[str]) -> None:
    """train.py's own loop against its bare step (forward, backward, clip, optimizer) on a fixed batch
    (median ms per iteration, their ratio), tokens per second and MFU where the device has a known peak;
    nanoGPT's CPU settings unless a config or flags say otherwise. Then the recipes' costs (bench_recipe_cost)."""
    args = train_args if cfg.as_given else beneath(NANOGPT_CPU, train_args)
    steps = cfg.steps or 400
    c = read_config(TrainConfig, args)
    device = pick_device(c.device)
    check_timed(c, steps, warmup := min(20, steps // 5))
    model, step, tokens = training_step(c, device)
    bare = [step()[0] for _ in range(steps // 2)][warmup:]
    with tempfile.TemporaryDirectory() as out_dir:
        full = seconds_per_step(run_train(args, steps, Path(out_dir)), warmup)
    bare += [step()[0] for _ in range(steps // 2)][warmup:]  # before and after: drift cancels
    loop_s, bare_s = statistics.median(full), statistics.median(bare)
    dtype = resolve_dtype(c.dtype, device)
    mfu = MFUMeter(training_flops_per_token(model.config, c.block_size), device, dtype)
    print(f"\ntraining: {shape_words(c.n_layer, c.n_head, c.n_embd, c.block_size)}, "
          f"batch {c.batch_size} x {c.gradient_accumulation_steps}, {dtype}{', compiled' if c.compile else ''}"
          f" on {device}; medians over {len(full)} loop and {len(bare)} bare steps")
    for name, seconds in (("train.py loop", loop_s), ("bare fwd+bwd+step", bare_s)):
        share = mfu.mfu(tokens / seconds)
        print(f"  {name:<20} {1000 * seconds:8.2f} ms/iter {tokens / seconds:12,.0f} tokens/s"
              + ("" if share is None else f"   MFU {share:.1%}"))
    print(f"  loop / bare: {loop_s / bare_s:.3f}   (MFU: {mfu.peak_source})")
    bench_recipe_cost(train_args, steps, device)


def bench_precision(cfg: BenchConfig, train_args: list[str]) -> None:
    """float32 against bfloat16 training of the 6x384, context-256 model (or the shape the keys give): tokens per
    second and the loss both reach on the same short run."""
    steps = cfg.steps or 100
    train_args = beneath(PRECISION_MODEL, train_args)
    c = read_config(TrainConfig, train_args)
    if "dtype" in c.keys_set:
        raise UserError("precision trains in float32 and in bfloat16 itself; drop dtype from its keys")
    check_timed(c, steps, skip := min(10, steps // 5))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "bfloat16"):
            rows = run_train([*train_args, f"--dtype={dtype}"], steps, Path(tmp) / dtype)
            step_s = statistics.median(seconds_per_step(rows, skip))
            results[dtype] = (step_s, [r["val_loss"] for r in rows if r["kind"] == "eval"][-1])
    print(f"\nprecision: {shape_words(c.n_layer, c.n_head, c.n_embd, c.block_size)}, "
          f"batch {c.batch_size} x {c.gradient_accumulation_steps}, {steps} steps, same seed and data")
    for dtype, (step_s, val) in results.items():
        print(f"  {dtype:<9} {tokens_per_step(vars(c)) / step_s:10,.0f} tokens/s   final val loss {val:.4f}")
    (f32_s, f32_val), (bf16_s, bf16_val) = results["float32"], results["bfloat16"]
    print(f"  bfloat16 / float32: {f32_s / bf16_s:.2f}x the speed, val loss {bf16_val - f32_val:+.4f}")


def recipe_pieces(n_head: int) -> dict[str, list[str]]:
    """Each piece of the modern recipe, added alone to the classic one; grouped-query attention shares each key
    and value head among two query heads or more (the most heads that divide n_head, at most half; none of one)."""
    kv = max(d for d in range(1, n_head // 2 + 1) if n_head % d == 0) if n_head > 1 else None
    grouped = {f"+ grouped-query ({kv} of {n_head} kv heads)": [f"--n_kv_head={kv}"]} if kv else {}
    return {"+ RoPE": ["--pos_emb=rope"], "+ RMSNorm": ["--norm=rmsnorm"], "+ QK-norm": ["--qk_norm=true"],
            "+ SwiGLU": ["--mlp=swiglu"], "+ untied head": ["--tie_embeddings=false"], **grouped,
            "+ Muon": ["--optimizer=muon"]}


def scored_val_loss(out_dir: Path) -> tuple[float, float]:
    """eval.py's figures for a run's last checkpoint over its whole validation split: loss, bits per byte."""
    model, tokenizer, checkpoint, _ = load_model(str(out_dir), "ckpt.pt", "", torch.device("cpu"))
    tokens, _ = validation_split(checkpoint)
    summary = summarize(score_tokens(model, tokens, 16).losses, tokens, tokenizer.token_bytes())
    return summary.loss, summary.bits_per_byte


def bench_recipe(cfg: BenchConfig, train_args: list[str]) -> None:
    """The classic (GPT-2) and the modern recipe at the default run's size on the default corpus, then
    each piece of the modern recipe added alone to the classic one: wall time, tokens per second and
    eval.py's validation loss, and every run's loss curves in one picture (as compare.py draws them)."""
    plot = check_output(cfg.plot or "recipe.png", "plot", folder=False)  # before the runs, not after them
    check_replaceable(plot, "plot", "a picture bench.py", drawn_by("bench.py"))
    runs = {"classic (configs/classic.toml)": [CLASSIC, *train_args], "modern (the default)": train_args}
    pieces = recipe_pieces(read_config(TrainConfig, [CLASSIC, *train_args]).n_head)
    runs.update({name: [CLASSIC, *train_args, *flags] for name, flags in pieces.items()})  # the piece's flags win
    results, logs = {}, {}
    import train  # noqa: F401  (before the first run is timed, which would pay for it)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, args) in enumerate(runs.items()):
            logs[name], seconds = timed(run_train, args, None, Path(tmp) / str(i))
            rate = statistics.median(r["tok_per_s"] for r in logs[name] if r["kind"] == "batch")
            results[name] = (seconds, logs[name][-1]["tokens"], rate, *scored_val_loss(Path(tmp) / str(i)))
            print(f"  {name}: {seconds:.0f} s, val loss {results[name][3]:.4f}", flush=True)
    print(f"\nrecipe: {len(runs)} runs on the default corpus, one after another in this process")
    row = table({"run": "<36", "wall s": ">7.0f", "tokens": ">11,", "tokens/s": ">9,.0f", "val loss": ">9.4f",
                 "bits/byte": ">9.4f"})
    for name, result in results.items():
        row(name, *result)
    (c_s, *_, c_loss, _), (m_s, *_, m_loss, _) = results[next(iter(runs))], results["modern (the default)"]
    print(f"modern - classic: val loss {m_loss - c_loss:+.4f} nats, wall time {m_s / c_s:.3f}x")
    print(f"loss curves: {compare_runs(logs, plot, 'bench.py')}")


def timed_train(flags: list[str], out_dir: Path) -> tuple[float, dict, float]:
    """train.py as its own process, as a user starts it: wall seconds, the checkpoint, eval.py's val loss."""
    seconds = timed(run_python, "train.py", *flags, f"--out_dir={out_dir}")[1]
    return seconds, torch.load(out_dir / "ckpt.pt", weights_only=True), scored_val_loss(out_dir)[0]


def budgeted_run(budget_s: float, dataset: str, shape: dict, out_dir: Path) -> dict:
    """train.py with a time budget (which counts from the process's start); the shape given outright,
    or planned when empty. Its plan, wall time, text per parameter and scored val loss."""
    flags = [f"--time_budget={budget_s:.0f}s", f"--dataset={dataset}", *(f"--{k}={v}" for k, v in shape.items())]
    seconds, checkpoint, val_loss = timed_train(flags, out_dir)
    plan = checkpoint["plan"]
    tokens = plan["steps"] * plan["tokens_per_step"]
    return {"plan": plan, "seconds": seconds, "tokens_per_param": tokens / plan["params"],
            "bytes_per_param": tokens * plan["bytes_per_token"] / plan["params"], "val_loss": val_loss}


def bench_budget(cfg: BenchConfig, train_args: list[str]) -> None:
    """For each time budget, the shape --time_budget plans and its two neighbours on the dial (about half
    and twice its parameters), each trained for that budget: their eval.py val loss, and a picture of loss
    against parameters; then the default run (`python train.py`) against a budgeted run given its wall time."""
    plot = check_output(cfg.plot or "budget.png", "plot", folder=False)  # before the runs, not after them
    check_replaceable(plot, "plot", "a picture bench.py", drawn_by("bench.py"))
    cases = [(budget, "shakespeare_char") for budget in cfg.budgets]
    cases += [(cfg.bpe_budget, "shakespeare_bpe")] if cfg.bpe_budget else []
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (budget, dataset) in enumerate(cases):
            planned = budgeted_run(budget, dataset, {}, Path(tmp) / f"{i}-planned")
            depth = planned["plan"]["shape"]["n_layer"]
            neighbours = {neighbour: budgeted_run(budget, dataset, dial(neighbour), Path(tmp) / f"{i}-{neighbour}")
                          for neighbour in (depth - 1, depth + 1)}
            results[(budget, dataset)] = (depth, dict(sorted({depth: planned, **neighbours}.items())))
            print(f"  {budget} s on {dataset}: planned depth {depth}", flush=True)
        print("\nbudget: the planned shape (*) and its neighbours on the dial, each trained for the same budget")
        row = table({"budget": ">7", "corpus": "<17", "depth": ">5", "params": ">10,", "tokens/param": ">12.1f",
                     "bytes/param": ">11.1f", "wall s": ">7.0f", "val loss": ">9.4f"})
        for (budget, dataset), (planned_depth, runs) in results.items():
            for depth, run in runs.items():
                row(f"{budget}s", dataset, f"{depth}{'*' if depth == planned_depth else ' '}", run["plan"]["params"],
                    run["tokens_per_param"], run["bytes_per_param"], run["seconds"], run["val_loss"])
            best = min(run["val_loss"] for run in runs.values())
            print(f"{'':>26}planned - best of the three: {runs[planned_depth]['val_loss'] - best:+.4f} nats")
        if results:
            print(f"picture: {budget_picture(results, plot)}", flush=True)
        if cfg.against_default:  # the default run, then a budgeted run given its wall time
            seconds, checkpoint, val_loss = timed_train([], Path(tmp) / "default")
            budgeted = budgeted_run(seconds, TrainConfig.dataset, {}, Path(tmp) / "budgeted")
            plan = budgeted["plan"]
            print(f"\nthe default run against a time budget of its wall time, on {TrainConfig.dataset}")
            row = table({"run": "<44", "wall s": ">7.0f", "val loss": ">9.4f"})
            row(f"the default run ({checkpoint['iter_num']:,} steps)", seconds, val_loss)
            row(f"--time_budget={seconds:.0f}s (depth {plan['shape']['n_layer']}, {plan['steps']:,} steps)",
                budgeted["seconds"], budgeted["val_loss"])


def budget_picture(results: dict, path: Path) -> Path:
    """Validation loss against parameters, one curve per budget, the planned shape marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    for i, ((budget, dataset), (planned, runs)) in enumerate(results.items()):
        params = [run["plan"]["params"] for run in runs.values()]
        ax.plot(params, [run["val_loss"] for run in runs.values()], "o-", color=f"C{i}", label=f"{budget} s, {dataset}")
        ax.plot(runs[planned]["plan"]["params"], runs[planned]["val_loss"], "*", color=f"C{i}", markersize=14)
    ax.set(xscale="log", xlabel="parameters", ylabel="val loss (eval.py, nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(fig, path, "bench.py")


def seconds_to_output(args: list[str], length: int, env: dict | None = None) -> tuple[float, str]:
    """Seconds from starting `python ARGS` to the first `length` bytes of its output (its exit is not counted);
    the compile it printed."""
    start = time.perf_counter()
    with subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE,
                          env=env) as proc:
        try:
            head = proc.stdout.read(length)
            seconds = time.perf_counter() - start
            error = proc.communicate()[1].decode().strip()  # the rest of stdout read and dropped
        except BaseException:  # Ctrl-C or SIGTERM to bench.py alone: no sample.py left compiling
            proc.kill()
            raise
    if proc.returncode != 0 or len(head) < length:
        command = args[0] if args[0].endswith(".py") else shlex.join(["python", *args])
        raise UserError(f"{command} failed: {error.removeprefix('error: ') or 'no output'}")
    compiled = re.search(r"^compile: .* in ([\d.]+ s)$", error, re.MULTILINE)
    return seconds, compiled.group(1) if compiled else ""


def bench_first_token(cfg: BenchConfig, train_args: list[str]) -> None:
    """Wall time from starting `python sample.py` to its first generated character, for a trained checkpoint (the
    default run's unless --out_dir says): eager, and --compile=true with an empty compile cache (the first start
    compiles) and then a warm one; beside them, the time Python takes to import torch, which every start pays."""
    sample = ["sample.py", f"--out_dir={Path(cfg.out_dir).resolve()}", "--max_new_tokens=20"]
    first = len(SampleConfig.prompt.encode()) + 1  # sample.py streams: the prompt, then each token

    def report(name: str, args: list[str], length: int = first, repeats: int = cfg.repeats, env: dict | None = None
               ) -> None:
        times, compiles = zip(*(seconds_to_output(args, length, env) for _ in range(repeats)))
        printed = f", of which the compile it printed: {', '.join(c for c in compiles if c)}" if any(compiles) else ""
        print(f"  {name:<38} {min(times):6.2f} s at best, {statistics.median(times):6.2f} s median over "
              f"{len(times)}{printed}")

    print(f"first token: python sample.py --out_dir={cfg.out_dir} to its first new character")
    report("eager", sample)
    report("python -c 'import torch' alone", ["-c", "import torch; print()"], length=1)
    if cfg.with_compile:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            report("--compile=true, first start (compiles)", [*sample, "--compile=true"], repeats=1, env=env)
            report("--compile=true, later starts", [*sample, "--compile=true"], env=env)


def tiktoken_rate(encoding, files: list[Path], cores: int) -> float:
    """MB/s of tiktoken's encode_ordinary_batch over the files' texts, one batch per `cores` files."""
    start = time.perf_counter()
    for i in range(0, len(files), cores):
        texts = [f.read_text(encoding="utf-8") for f in files[i : i + cores]]
        encoding.encode_ordinary_batch(texts, num_threads=cores)
    return sum(f.stat().st_size for f in files) / 1e6 / (time.perf_counter() - start)


# Starts the command from a fresh, small interpreter and prints its peak RSS: a child's ru_maxrss also
# counts the pages of the process it was forked from, so forking it from this one would count ours.
PEAK_RSS_LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
                     "_, status, usage = os.wait4(p.pid, 0); print(usage.ru_maxrss); "
                     "sys.exit(os.waitstatus_to_exitcode(status))")


def peak_rss_of_prepare(args: list[str]) -> tuple[float, float]:
    """Peak resident memory (MB) and wall time (s) of one `python data/prepare.py` run."""
    output, seconds = timed(run_python, "data/prepare.py", *args, launcher=("-c", PEAK_RSS_LAUNCHER, sys.executable))
    return int(output) / 1024, seconds  # ru_maxrss is in KiB on Linux


def bench_prepare(cfg: BenchConfig, train_args: list[str]) -> None:
    """MB/s of preparing a corpus of copies of the plays (one file each) with GPT-2's tokenizer and with a BPE trained
    on it, beside tiktoken's own encode_ordinary_batch on the same files with every core (each case's median time over
    three turns); the time to train the BPE on the plays; the peak resident memory of a `python data/prepare.py` run."""
    cores, vocab_size = len(os.sched_getaffinity(0)), bpe_vocab_size(cfg.bpe_vocab_size)  # as prepare takes it
    with tempfile.TemporaryDirectory() as tmp:
        tmp, text = Path(tmp), shakespeare_text().read_text(encoding="utf-8")
        (tmp / "corpus").mkdir()
        for i in range(max(1, round(cfg.corpus_mb * 1e6 / len(text.encode("utf-8"))))):  # about corpus_mb MB
            (tmp / "corpus" / f"plays_{i:04}.txt").write_text(text, encoding="utf-8")  # one file (one document) each
        files = sorted((tmp / "corpus").iterdir())
        megabytes, plays_mb = sum(f.stat().st_size for f in files) / 1e6, files[0].stat().st_size / 1e6
        # the BPE trained as prepare trains it (on pieces of the text), on one copy of the plays
        plays_train_s = timed(train_bpe, (piece.text for piece in read_pieces(files[:1])), vocab_size)[1]
        load_gpt2_encoding()  # read GPT-2's ranks once, before the clock: a rate, not a start-up time
        turns = []  # three turns of the four cases, medians: a busy moment slows one turn's case, not the figure
        for turn in range(3):
            gpt2_s = timed(prepare_dataset, files, "gpt2", tmp / f"gpt2_{turn}")[1]
            gpt2_own = tiktoken_rate(load_tokenizer(tmp / f"gpt2_{turn}").encoding, files, cores)
            bpe, bpe_s = timed(prepare_dataset, files, "bpe", tmp / f"bpe_{turn}", vocab_size=vocab_size)
            bpe_own = tiktoken_rate(load_tokenizer(tmp / f"bpe_{turn}").encoding, files, cores)
            for dataset in (tmp / f"gpt2_{turn}", tmp / f"bpe_{turn}"):  # one turn's datasets on disk at a time
                shutil.rmtree(dataset)
            turns.append((gpt2_s, gpt2_own, bpe_s, bpe_s - bpe.tokenizer_seconds, bpe_own))
        gpt2_s, gpt2_own, bpe_s, encode_s, bpe_own = (statistics.median(case) for case in zip(*turns))
        rss, wall = peak_rss_of_prepare([f"--input={tmp / 'corpus'}", "--tokenizer=gpt2", f"--dataset={tmp / 'rss'}"])
    copies = f"{len(files)} {'copy' if len(files) == 1 else 'copies'} of the plays"
    print(f"prepare: {megabytes:,.0f} MB of text ({copies}, one file each), {cores} cores; medians of 3 turns")
    print(f"  BPE training, vocabulary {vocab_size:,}, on the plays ({plays_mb:.1f} MB): {plays_train_s:.1f} s")
    rows = (("gpt2", megabytes / gpt2_s, gpt2_own), (f"bpe {vocab_size}", megabytes / bpe_s, bpe_own),
            ("  less its training", megabytes / encode_s, bpe_own))
    for name, rate, own in rows:
        print(f"  {name:<20} prepare {rate:6.1f} MB/s   tiktoken encode_ordinary_batch {own:6.1f} MB/s   "
              f"ratio {rate / own:.2f}")
    print(f"  python data/prepare.py --tokenizer=gpt2: peak resident memory {rss:,.0f} MB, {wall:.1f} s wall")


BENCHMARKS = {"generation": bench_generation, "training": bench_training, "precision": bench_precision,
              "recipe": bench_recipe, "budget": bench_budget, "first_token": bench_first_token,
              "prepare": bench_prepare}
PASSES_KEYS_TO_TRAINING = ("training", "precision", "recipe")


def main(argv: list[str]) -> None:
    stop_on_sigterm()  # like Ctrl-C: temporary folders are removed
    name, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("", argv)
    passes_keys = name in PASSES_KEYS_TO_TRAINING  # to train.py: every key that is not bench.py's own, and device
    if name not in BENCHMARKS and (named := [a for a in rest if a in BENCHMARKS]):  # not a config file of that name
        raise UserError(f"name the benchmark first: python bench.py {named[0]} [--key=value ...]")
    own_keys = {f.name for f in dataclasses.fields(BenchConfig)} | {"help"}
    files = [a for a in rest if not a.startswith("--")]  # each command takes its own keys from a config file
    flags = [(a, a[2:].partition("=")[0]) for a in rest if a.startswith("--")]  # each with its key
    own = files + [a for a, key in flags if not passes_keys or key in own_keys]
    train_args = files + [a for a, key in flags if key not in own_keys or key == "device"] if passes_keys else []
    checked = own_keys - {"device"} if passes_keys else own_keys  # device: bench.py's key that train.py reads too
    if name in BENCHMARKS and not {"-h", "--help"} & set(rest):  # before any value is checked
        for key in [key for _, key in flags if key in checked]:
            readers = BenchConfig.__dataclass_fields__[key].metadata["help"].partition(":")[0].split(", ")
            if name not in readers:  # it would be ignored without a word
                raise UserError(f"--{key} is a key of bench.py {' and '.join(readers)}, not of {name}; drop it")
    cfg = read_config(BenchConfig, own)  # --help stops here
    if name not in BENCHMARKS:
        raise UserError(f"name a benchmark first: python bench.py {'|'.join(BENCHMARKS)} [--key=value ...]")
    known = own_keys | {f.name for f in dataclasses.fields(TrainConfig)}  # named against bench.py's keys too
    if passes_keys and (unknown := [key for _, key in flags if key not in known]):  # the ones train.py would read
        raise unknown_key(unknown[0], known, "the command line")
    BENCHMARKS[name](cfg, train_args)


if __name__ == "__main__":
    run_cli(main)
