"""A Python process that imports torch once and forks one child per command the tests run.

Each child is its own process running one of the repository's scripts as `python SCRIPT ARGS` would: the
script as __main__, its own argv, working folder, environment, stdout and stderr, and the interpreter's own
exit (atexit handlers, exit status, a traceback for an uncaught exception). What it skips is importing torch,
numpy and transformers' modules, which are most of a command's start (and most of a Hugging Face command's);
so settings read at import (inductor's CXX, the hub client's HF_*) are this process's. Nothing of the project is
imported here, so every child imports the project's code fresh. Requests arrive on stdin, one JSON line
each; two JSON lines answer each: the child's pid, then its exit status.
"""
from __future__ import annotations

import gc
import json
import os
import runpy
import sys

import numpy  # noqa: F401  (imported before the fork so that children skip it)
import torch  # noqa: F401


def import_transformers() -> None:
    """transformers and the modules the Hugging Face commands load."""
    from transformers import (AutoTokenizer, GenerationConfig, GPT2LMHeadModel, LlamaForCausalLM,  # noqa: F401
                              PreTrainedTokenizerFast, Qwen3ForCausalLM)
    from transformers.convert_slow_tokenizer import TikTokenConverter  # noqa: F401


def become_command(script: str, args: list[str], cwd: str, env: dict, stdout: str, stderr: str) -> None:
    """In the child: take the command's place, then run it (an exception ends this interpreter as usual)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for fd, path in ((1, stdout), (2, stderr)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdin = open(0, closefd=False)
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` sets it
    runpy.run_path(script, run_name="__main__")


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            become_command(**request)
            return  # the script ended without sys.exit: leave the loop, and the interpreter exits 0
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    import_transformers()
    gc.freeze()  # children's collections skip what is imported: its pages stay shared, not copied on write
    serve()
