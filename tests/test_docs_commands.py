"""Every command the README and docs/ show is one the project accepts as written: its script
exists, its config files exist, and its keys and values parse; and the README's commands run,
in order, with small settings and their paths moved to a temporary folder."""
from __future__ import annotations

import gzip
import json
import re
import shlex
import string
import textwrap
from pathlib import Path

import pytest

import bench
from config.errors import UserError
from config.settings import (AttentionConfig, CompareConfig, EvalConfig, ExportConfig, PrepareConfig, SampleConfig,
                           TrainConfig, read_config)
from helpers import prepare_text, run_script
from model import ModelError
from training.init_from import model_config

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
                if not line.startswith(("python ", "torchrun ", "pip ")):
                    continue  # output, indented or not, and Python code
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
    try:  # a page that shows a refusal shows the line the command prints
        parse(argv, where)
    except UserError as e:
        assert str(e) == error
    else:  # keys that parse but make no model: refused once the model's shape is built
        assert CONFIGS[argv[0]] is TrainConfig, f"{where} runs, yet the page shows it refused"
        with pytest.raises(ModelError) as refused:
            model_config(read_config(TrainConfig, argv[1:]), 65)
        assert str(refused.value) == error


PATH_KEYS = ("out_dir", "dataset", "hf_dir", "hf_model", "pictures_dir", "input", "text_file", "plot", "surprise")
SMALL = {"train.py": ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4",
                      "--max_iters=4", "--eval_interval=2", "--eval_iters=1", "--sample_tokens=5", "--device=cpu"],
         "sample.py": ["--max_new_tokens=5", "--device=cpu"], "eval.py": ["--device=cpu"],
         "attention.py": ["--device=cpu"]}
WALKED = ("train.py", "sample.py", "eval.py", "attention.py", "export.py", "params.py", "data/prepare.py")


def write_input(path: Path, text: str) -> None:
    """A corpus file of the kind its name says: text, JSONL, or either gzipped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = text.splitlines(keepends=True)
    documents = ["".join(lines[i : i + 20]) for i in range(0, len(lines), 20)]
    body = "".join(json.dumps({"text": d}) + "\n" for d in documents) if ".jsonl" in path.name else text
    path.write_bytes(gzip.compress(body.encode()) if path.suffix == ".gz" else body.encode())


def walked_argv(argv: list[str], tmp: Path, tiny: Path, text: str) -> list[str]:
    """The command with every path it reads or writes moved under tmp (a dataset name to the tiny one,
    a text input to a small file of its own) and small settings for training."""
    script, args = argv[0], argv[1:]
    moved = []
    for arg in args:
        key, _, value = arg[2:].partition("=")
        if arg.startswith("--") and key in PATH_KEYS:
            if key == "dataset" and script != "data/prepare.py":
                value = str(tmp / "datasets" / value) if (tmp / "datasets" / value).is_dir() else str(tiny)
            elif key == "input":
                value = str(tmp / "inputs" / Path(value.replace("*", "x")).name)
                write_input(Path(value), text)
            else:
                value = str(tmp / ("datasets" if key == "dataset" else "files") / Path(value).name)
            arg = f"--{key}={value}"
        moved.append(arg)
    run_commands = ("train.py", "sample.py", "eval.py", "attention.py", "export.py")
    defaults = {"out_dir": (str(tmp / "files" / "out-shakespeare-char"), run_commands),
                "dataset": (str(tiny), ("train.py",)),
                "pictures_dir": (str(tmp / "files" / "attention"), ("attention.py",))}
    for key, (value, scripts) in defaults.items():  # the folders the commands default to, under tmp
        if script in scripts and not any(a.startswith(f"--{key}=") for a in moved):
            moved.append(f"--{key}={value}")
    if script == "train.py":
        moved += ["--replace_run=true", "--checkpoint_format=pt"]
    if script == "data/prepare.py" and "--tokenizer=bpe" in moved:
        moved.append("--bpe_vocab_size=300")
    return [script, *moved, *SMALL.get(script, [])]


@pytest.mark.slow
def test_the_readmes_commands_run_with_small_settings(corpus_text, tmp_path):
    """The README's commands in order, as written but for small settings and paths under tmp_path."""
    char_dataset = tmp_path / "tiny"  # every letter and sign a README prompt may use
    prepare_text(corpus_text + string.ascii_letters + string.digits + string.punctuation + "\n", "char", char_dataset)
    readme = [(where, argv) for where, argv, error in COMMANDS
              if where.startswith("README.md") and not error and argv[0] in WALKED and "--help" not in argv
              and not any("path/to" in a or "~" in a for a in argv)]
    assert len(readme) >= 8
    for where, argv in readme:
        if argv[0] == "data/prepare.py":
            (tmp_path / "datasets").mkdir(exist_ok=True)
        result = run_script(*walked_argv(argv, tmp_path, char_dataset, corpus_text), check=False)
        assert result.returncode == 0, f"{where}\n{result.stderr[-2000:]}"


def python_snippets() -> list[tuple[str, str]]:
    """(where, code) of every Python block that shows how to use the project (attention.md's blocks are excerpts of
    the code, which test_attention_maps checks)."""
    return [(f"{page.name}: block {i}", textwrap.dedent(code))
            for page in PAGES if page.name != "attention.md"
            for i, code in enumerate(re.findall(r"^ *```python\n(.*?)^ *```", page.read_text(encoding="utf-8"),
                                                flags=re.S | re.M))]


@pytest.mark.slow
def test_the_pages_python_snippets_run(corpus_text, tmp_path):
    """Each as written, in one fresh interpreter at the repository's root, with the folders it names moved to a
    run trained on characters enough for their prompts, its export, and a prepared BPE dataset."""
    text = corpus_text + string.ascii_letters + string.digits + string.punctuation + "\n"
    prepare_text(text, "char", tmp_path / "chars")
    run = tmp_path / "run"
    run_script("train.py", *SMALL["train.py"], f"--dataset={tmp_path / 'chars'}", f"--out_dir={run}")
    run_script("export.py", f"--out_dir={run}", f"--hf_dir={tmp_path / 'hf'}")
    prepare_text(text, "bpe", tmp_path / "plays_bpe", vocab_size=300)
    places = {"out-shakespeare-char": run, "hf-shakespeare": tmp_path / "hf", "data/plays_bpe": tmp_path / "plays_bpe"}
    snippets = python_snippets()
    assert len(snippets) >= 4
    program = []
    for where, code in snippets:
        for name, place in places.items():
            code = code.replace(f'"{name}', f'"{place}')  # a quoted path, or the start of one
        program.append(f"print({where!r}, flush=True)\nexec({code!r}, {{}})")
    result = run_script("-c", "\n".join(program), check=False)
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-2000:]
