"""Helpers for tests that run the repository's scripts, in processes of their own or in the test's process."""
from __future__ import annotations

import atexit
import functools
import hashlib
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import redirect_stderr
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from model.config import GPT2_SHAPE, GPTConfig

from config.errors import run_cli
from data.build import prepare_dataset

REPO = Path(__file__).resolve().parent.parent

TINY_TRAIN_FLAGS = [
    "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=8",
    "--max_iters=40", "--lr_decay_iters=40", "--warmup_iters=5", "--eval_interval=20",
    "--eval_iters=4", "--log_interval=5", "--sample_tokens=20", "--device=cpu",
]


class ForkServer:
    """tests/forkserver.py, started once: it forks a process per command, each already past importing torch."""

    def __init__(self) -> None:
        self.server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py"))], cwd=REPO,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        atexit.register(self.server.communicate)  # closing its stdin ends it

    def run(self, script: str, *args: str, env: dict | None = None, cwd: Path = REPO,
            timeout: float = 300) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as outputs:
            out, err = Path(outputs, "stdout"), Path(outputs, "stderr")
            request = dict(script=script, args=list(args), cwd=str(cwd), env=dict(os.environ if env is None else env),
                           stdout=str(out), stderr=str(err))
            print(json.dumps(request), file=self.server.stdin, flush=True)
            pid = json.loads(self.server.stdout.readline())["pid"]
            started, killer = time.monotonic(), threading.Timer(timeout, os.kill, (pid, signal.SIGKILL))
            killer.start()
            returncode = json.loads(self.server.stdout.readline())["returncode"]
            killer.cancel()
            if returncode == -signal.SIGKILL and time.monotonic() - started >= timeout:
                raise subprocess.TimeoutExpired([script, *args], timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess([sys.executable, script, *args], returncode, out.read_text(),
                                               err.read_text())


@functools.cache
def fork_server() -> ForkServer:
    return ForkServer()


# environment variables that the libraries the fork server imports read at their import (the Hugging Face hub
# client's HF_*, inductor's CXX): a command given other values than the server's needs its own interpreter
IMPORT_TIME_SETTINGS = ("HF_", "HUGGINGFACE_", "CXX")


def differs_at_import(env: dict | None) -> bool:
    names = {*os.environ, *(env or {})}
    return env is not None and any(name.startswith(IMPORT_TIME_SETTINGS) and env.get(name) != os.environ.get(name)
                                   for name in names)


def run_script(*args: str, check: bool = True, fresh: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run one of the repository's scripts in a process of its own: `python SCRIPT ARGS` forked from the fork
    server (see tests/forkserver.py), or a fresh interpreter for `python -m ...`, `python -c ...`, for an
    environment whose import-time settings differ from the server's, and where the test needs the whole
    start of a command (fresh=True) or sets up the process itself (preexec_fn)."""
    forkable = kwargs.keys() <= {"env", "cwd", "timeout"} and not differs_at_import(kwargs.get("env"))
    if args[0].endswith(".py") and not fresh and forkable:
        result = fork_server().run(*args, **kwargs)
    else:
        result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                                **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file under folder (hidden ones too) and its bytes, and every folder (None): compare before and
    after a refused command."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def run_main(main, *args: str) -> SimpleNamespace:
    """A command's main as its command line runs it (through run_cli), in this process: exit status and stderr,
    as assert_one_line_error reads them."""
    # fork_rng: train.py seeds torch's global generator, which later tests must not inherit
    with torch.random.fork_rng(), pytest.raises(SystemExit) as stopped, redirect_stderr(io.StringIO()) as stderr:
        run_cli(main, list(args))
    return SimpleNamespace(returncode=stopped.value.code, stderr=stderr.getvalue())


def run_command(script: str, *args: str) -> SimpleNamespace:
    """One of the repository's scripts (train.py, data/prepare.py, ...) run by run_main in this process: for
    refusals, which the command-line layer handles the same in a subprocess (test_config runs one that way)."""
    return run_main(importlib.import_module(script.removesuffix(".py").replace("/", ".")).main, *args)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2, no traceback, and one error line (after any progress bar) with every fragment."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert result.stderr.rstrip().endswith(errors[0])
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def prepare_text(text: str, tokenizer: str, folder: Path, **settings) -> dict:
    """A dataset folder made from text (written to a file beside it, the way a user's corpus is); its meta."""
    source = folder.parent / f"{folder.name}.txt"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(text, encoding="utf-8")
    return prepare_dataset([source], tokenizer, folder, **settings).meta


def fingerprint(dataset: Path) -> str:
    """meta.json's fingerprint of a dataset folder, from its files: the sha256 of train.bin's then val.bin's sha256."""
    digests = [hashlib.sha256((dataset / f"{split}.bin").read_bytes()).digest() for split in ("train", "val")]
    return hashlib.sha256(b"".join(digests)).hexdigest()


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's r of two tensors' entries: about 0 between two random initialisations, well above it
    (0.6-0.7 for the fine-tuning tests' four steps) for weights trained from the other."""
    return torch.corrcoef(torch.stack([a.flatten(), b.detach().flatten()]))[0, 1].item()


def gpt2_config(**options) -> GPTConfig:
    """A GPTConfig in GPT-2's shape (learned positions, LayerNorm, GELU, a tied head, biases) unless options
    say otherwise: the model most tests build, with the modern options they set on top."""
    return GPTConfig(**{**GPT2_SHAPE, **options})


def planned_steps(stdout: str) -> int:
    """The steps a time budget's plan line (printed at the start of a run) gives the run."""
    return int(re.search(r"time budget [\d.]+ s: .*?, ([\d,]+) steps", stdout)[1].replace(",", ""))


def wait_for_step(process: subprocess.Popen, step: int, share: float = 0.0) -> int:
    """Read the progress bar until it shows at least `step` steps done, and at least `share` of the steps it
    shows in all (a time budget's, which a slow machine makes few); return the step shown."""
    buffer = ""
    while True:
        char = process.stderr.read(1)
        assert char, f"training ended before step {step}"
        buffer = buffer[-200:] + char
        shown = re.findall(r"\| *(\d+)/(\d+) \[[^]]*step", buffer)  # the loop's bar, not a time budget's probe
        if shown and int(shown[-1][0]) >= max(step, share * int(shown[-1][1])):
            return int(shown[-1][0])
