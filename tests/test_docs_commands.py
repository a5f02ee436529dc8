"""Every command the README and docs/ show is one the project accepts as written: its script
exists, its config files exist, and its keys and values parse. The commands that run on the
default corpus also run, with small settings (tests/test_readme_walk.py)."""
from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest

import bench
from config.errors import UserError
from config.settings import (AttentionConfig, CompareConfig, EvalConfig, ExportConfig, PrepareConfig, SampleConfig,
                          TrainConfig, read_config)

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONFIGS = {"train.py": TrainConfig, "params.py": TrainConfig, "sample.py": SampleConfig, "eval.py": EvalConfig,
           "attention.py": AttentionConfig, "export.py": ExportConfig, "data/prepare.py": PrepareConfig,
           "compare.py": CompareConfig}


def documented_commands() -> list[tuple[str, list[str], str]]:
    """(where, argv from the script on, the error the page shows it ending with, if any) for every
    `python X.py ...` or torchrun line of a code block; usage lines ([--key=value ...]) are left out."""
    found = []
    for page in PAGES:
        blocks = re.findall(r"^ *```[a-z]*\n(.*?)^ *```", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for block in blocks:
            lines = textwrap.dedent(block).splitlines()
            for line, after in zip(lines, [*lines[1:], ""]):
                line = line.removeprefix("$ ").split("  #")[0]
                for part in (p.strip() for p in line.split("&&")):
                    if not part.startswith(("python ", "torchrun ")) or "[" in part:
                        continue  # output, Python code, pip, a usage line
                    words = shlex.split(part.split(" | ")[0])
                    script = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
                    if script is not None:
                        error = after.removeprefix("error: ") if after.startswith("error: ") else ""
                        found.append((f"{page.name}: {part}", words[script:], error))
    return found


COMMANDS = documented_commands()


def test_the_pages_show_every_command():
    scripts = {argv[0] for _, argv, _ in COMMANDS}
    assert scripts >= {*CONFIGS, "bench.py"}, scripts


def parse(argv: list[str], where: str) -> None:
    script, args = argv[0], [a for a in argv[1:] if a != "..."]
    assert (REPO / script).is_file(), f"{where}: no {script}"
    if "--help" in args:
        return
    if script == "bench.py":
        assert args and args[0] in bench.BENCHMARKS, f"{where}: no such benchmark"
        own = [a for a in args[1:] if a[2:].partition("=")[0] in bench.BenchConfig.__dataclass_fields__]
        read_config(bench.BenchConfig, own)
        if args[0] in bench.PASSES_KEYS_TO_TRAINING:
            read_config(TrainConfig, [a for a in args[1:] if a not in own])
        return
    for toml in (a for a in args if not a.startswith("--")):
        assert (REPO / toml).is_file(), f"{where}: no {toml}"
    read_config(CONFIGS[script], args)  # a UserError names the key that drifted


@pytest.mark.parametrize("where, argv, error", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_a_documented_command_parses_as_written(where, argv, error):
    if not error:
        parse(argv, where)
        return
    try:  # a page that shows a refusal shows the line the command prints (model errors come later)
        parse(argv, where)
    except UserError as e:
        assert str(e) == error
