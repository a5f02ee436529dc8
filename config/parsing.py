"""One config mechanism for every command: dataclass defaults < TOML files (in order) < --key=value flags.

An unknown key or a value of the wrong type is a UserError naming the key and the closest valid one. A TOML file's
top-level keys apply to every command that has them (one that none has is an error); its table per command
([sample], [eval], ...) overrides them for that command alone."""

import contextlib
import dataclasses
import difflib
import math
import os
import re
import shlex
import tomllib
import types
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from model.config import flag_value

from .errors import UserError

C = TypeVar("C")
Check = tuple[Callable[[Any], bool], str]  # a test of a value, and what the error says of a value that fails it


def option(default: Any, help: str, escapes: bool = False, choices: tuple = (), path: bool = False,
           check: Check | None = None) -> Any:
    """A config field with its one line of help. `escapes`: a flag's value may use
    backslash escapes such as \\n (prompts, stop strings). `choices`: the values it may take.
    `path`: it names files or folders, and ~ at its start is the home folder (no shell expands it
    after --key= or in a TOML file). `check`: a value other than none must pass it (Checked runs it)."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    metadata = {"help": help, "escapes": escapes, "choices": choices, "path": path, "check": check}
    return dataclasses.field(metadata=metadata, **factory)


class Checked:
    """A command's config: making one runs its options' checks, in the order of its fields."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check, value = f.metadata.get("check"), getattr(self, f.name)
            if check and value is not None and not check[0](value):
                raise UserError(f"{f.name}={value} {check[1]}")


# one backslash escape of a Python string literal (perhaps broken), or a backslash at the end; a backslash before
# any other character is no escape and stays, as in Python (\\q, \\日)
ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{0,2}|u[0-9a-fA-F]{0,4}|U[0-9a-fA-F]{0,8}|N(?:\{[A-Za-z0-9 -]*\}?)?|[0-7]{1,3}|"
                    r"[\n\\'\"abfnrtv]|$)")
NONE_WORDS = ("none", "null", "")  # how a flag or a TOML string says none (TOML has no null)
BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _allowed_types(hint: Any) -> tuple[type, ...]:
    """int | None -> (int, NoneType); list[str] -> (list,)."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    return tuple(typing.get_origin(t) or t for t in (typing.get_args(hint) if union else (hint,)))


def _check_value(key: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against the field's type; ints are accepted as floats, one item as a list of one, and
    "none" (TOML has no null) as none where the field takes it, as its flag does."""
    allowed, items = _allowed_types(hint), value if isinstance(value, list) else [value]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if type(None) in allowed and str not in allowed and isinstance(value, str) and value.lower() in NONE_WORDS:
        return None
    for item in items:  # what torch and numpy hold
        if isinstance(item, int) and not isinstance(item, bool) and not -2**63 <= item < 2**63:
            raise UserError(f"{key} is out of range ({item.bit_length()} bits); give a number under 2**63")
    if float in allowed and number:
        if not math.isfinite(value):
            raise UserError(f"{key} must be a finite number, got {value}")
        return float(value)
    if list in allowed:
        if all(type(item) is typing.get_args(hint)[0] for item in items):
            return items
    elif isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)):
        return value
    quote = f' (TOML writes text in quotes: "{value}")' if str in allowed and number else ""
    wanted = (f"a list of {typing.get_args(hint)[0].__name__}" if typing.get_origin(hint) is list
              else " or ".join("none" if t is type(None) else t.__name__ for t in allowed))
    raise UserError(f"{key} must be {wanted}, got {value!r}{quote}")


def _whole(key: str, text: str) -> int:
    """int(text); digits past what Python reads as an int are out of range, not "no int"."""
    try:
        return int(text)
    except ValueError:
        if text.strip().lstrip("+-").isdigit():
            raise UserError(f"--{key} is out of range ({len(text.strip()):,} characters); give a number under "
                            f"2**63") from None
        raise


def _parse_flag_value(key: str, text: str, field: dataclasses.Field, hint: Any) -> Any:
    allowed = _allowed_types(hint)
    if type(None) in allowed and text.lower() in NONE_WORDS:
        return None
    if bool in allowed and text.lower() in BOOLEANS:
        return BOOLEANS[text.lower()]
    for kind in (kind for kind in (int, float) if kind in allowed):
        with contextlib.suppress(ValueError):
            return _check_value(f"--{key}", _whole(key, text) if kind is int else kind(text), hint)
    if field.metadata.get("escapes"):  # text: backslash escapes as in a Python string (\\n, \\t, \\u00e9, \\\\)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise UserError(f"--{key} holds {text[e.start:e.end]!r}, which is not text (a byte the shell passed "
                            f"undecoded, or half a surrogate pair); give UTF-8 text") from None
        try:  # each escape alone: unicode_escape would read the text around it as Latin-1
            text = ESCAPE.sub(lambda m: m[0].encode().decode("unicode_escape"), text)
        except UnicodeDecodeError as e:
            raise UserError(f"--{key} has a broken escape sequence ({e.reason}); "
                            "write a backslash itself as \\\\") from None
        try:  # two \\u escapes of one character's surrogate pair, as JSON writes one, are that character
            text = text.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise UserError(f"--{key} holds a \\u escape of half a character (a surrogate without its pair); give "
                            f"the character itself, or its \\U escape (\\U0001f642)") from None
    if list in allowed:
        with contextlib.suppress(ValueError):  # --new_tokens=100,500
            items = [_whole(key, part) for part in text.split(",")] if typing.get_args(hint)[0] is int else [text]
            return _check_value(f"--{key}", items, hint)
    return _check_value(f"--{key}", text, hint)  # text itself for a str, else the error


# keys a user may know from nanoGPT or from this project's earlier names, and what they are called here
RENAMED = {"start": ("prompt",), "to": ("hf_dir", "pictures_dir", "plot"), "dtype": ("weights",),
           "overwrite": ("replace_run", "replace_dataset", "replace_export"), "vocab_size": ("bpe_vocab_size",),
           "out_dir": ("dataset", "runs"), "input": ("text_file",), "runs": ("repeats",), "prompt": ("text",),
           "text": ("prompt",), "seed": ("split_seed",), "hf_model": ("init_from",),
           "grad_accum": ("gradient_accumulation_steps",), "gradient_accumulation": ("gradient_accumulation_steps",)}
# nanoGPT keys that nothing here is named for, and what to do instead
INSTEAD = {"eval_only": "eval.py scores a run: python eval.py --out_dir=DIR, without --eval_only",
           "backend": "the distributed backend follows the device: NCCL on CUDA GPUs, gloo on CPUs",
           "init_from": "this command reads the run in --out_dir=DIR (init_from=resume is train.py's)"}
TORCHRUN_FLAGS = ("nproc_per_node", "nnodes", "node_rank", "standalone", "rdzv_backend", "rdzv_endpoint", "rdzv_id",
                  "master_addr", "master_port")  # torchrun's own, given after train.py by mistake


def unknown_key(key: str, valid: Collection[str], where: str, commands: dict[str, type] | None = None,
                command: str = "this command") -> UserError:
    renamed = [name for name in RENAMED.get(key, ()) if name in valid]
    owners = [name for name, cls in (commands or {}).items() if key in {f.name for f in dataclasses.fields(cls)}]
    close = renamed or ([] if owners else difflib.get_close_matches(key.lower(), list(valid), n=1, cutoff=0.5))
    hints = ([f"did you mean '{close[0]}'?"] if close else []) + \
        ([f"'{key}' is a key of {', '.join(owners)}, not of {command}"] if owners else [])
    hint = "; " + " ".join(hints) if hints else "; run with --help to list the keys"
    if key in TORCHRUN_FLAGS:
        hint = f"; --{key} is torchrun's: give it before the script, torchrun --standalone --nproc_per_node=N train.py"
    if key in INSTEAD and (key != "init_from" or "checkpoint" in valid):  # a command that reads a run
        hint = f"; {INSTEAD[key]}" + (", or a Hugging Face model with --hf_model=NAME" if key == "init_from" and
                                      "hf_model" in valid else "")
    return UserError(f"unknown config key '{key}' in {where}{hint}")


def _toml_values(cls: type, path: str, commands: dict[str, type]) -> dict[str, tuple[Any, str]]:
    """The keys of the TOML file path that cls's command has, each with where it was found: the top level's, then
    its own table's, which win. A key or table that no command has is an error; another command's is left to it."""
    try:
        with open(path, "rb") as f:
            table = tomllib.loads(f.read().decode("utf-8-sig"))  # -sig: a byte-order mark that some editors write
    except FileNotFoundError:
        if path.startswith("-"):  # -out_dir=x: a flag with one dash
            raise UserError(f"{path} is no flag nor config file; flags take two dashes: -{path}") from None
        why = {".toml": "", ".py": " (TOML files: key = value, as configs/shakespeare_char.toml)"}.get(
            Path(path).suffix, " (a flag's value with spaces goes in quotes: --prompt='To be or')")
        raise UserError(f"config file {path} not found; the shipped ones are in configs/{why}") from None
    except IsADirectoryError:
        run = any(Path(path).glob("ckpt.*")) or any(Path(path).glob("best.*"))  # a training run's folder
        fix = f"a run's folder is given as --out_dir={path}" if run else "give a .toml file"
        raise UserError(f"config file {path} is a folder; {fix}") from None
    except UnicodeDecodeError as e:
        fix = ("it is a checkpoint: name its folder with --out_dir" if path.endswith((".pt", ".safetensors"))
               else "give a .toml file, in UTF-8")
        raise UserError(f"config file {path} is not UTF-8 text (invalid byte at offset {e.start}); {fix}") from None
    # RecursionError: arrays nested thousands deep; ValueError: TOMLDecodeError, or an int past Python's 4,300 digits
    except (ValueError, RecursionError) as e:
        raise UserError(f"config file {path} is not valid TOML: {e}; write key = value lines (true and false in "
                        f"lower case, text in quotes), as configs/*.toml do") from None
    keys = {name: {f.name for f in dataclasses.fields(other)} for name, other in commands.items()}
    fields, command, every_key = keys[cls.command], cls.command, set().union(*keys.values())
    for key, value in table.items():
        if isinstance(value, dict) and key not in fields and key not in commands:  # a table, but no command's
            close = difflib.get_close_matches(key, list(commands), n=1, cutoff=0.5)
            tables = ", ".join(f"[{name}]" for name in commands)
            hint = f"did you mean [{close[0]}]?" if close else f"the commands' tables are {tables}"
            raise UserError(f"unknown table [{key}] in {path}; {hint}")
        elif not isinstance(value, dict) and key not in every_key:
            raise unknown_key(key, fields, path)
    for name, own in keys.items():  # every command's table, so a typo in another's is found now, not later
        for key in (key for key in table.get(name, {}) if key not in own):
            raise unknown_key(key, own, f"[{name}] of {path}", commands, command=name)
    found = {key: (value, key) for key, value in table.items() if key in fields}
    return found | {key: (value, f"[{command}] {key}") for key, value in table.get(command, {}).items()}


def parse_config(cls: type[C], argv: list[str], commands: dict[str, type]) -> C:
    """Build cls, the config of the command cls.command, from its defaults, then the TOML files and
    --key=value flags in argv. commands: every command's config class by its name, train's included."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    from_flags: dict[str, Any] = {}  # read first: `--prompt ROMEO` is a flag without its value, not a file ROMEO
    for flag in (a for a in argv if a.startswith("--")):
        key, sep, text = flag[2:].partition("=")
        if key not in fields:
            raise unknown_key(key, fields, "the command line", commands)
        if not sep:
            raise UserError(f"flag --{key} needs a value: --{key}=VALUE (an =, not a space)")
        value = _parse_flag_value(key, text, fields[key], hints[key])
        from_flags[key] = from_flags.get(key, []) + value if isinstance(value, list) else value  # a repeated flag adds
    values = {key: _check_value(label, value, hints[key])  # the files in order, a later one's keys winning; flags last
              for path in argv if not path.startswith("--")
              for key, (value, label) in _toml_values(cls, path, commands).items()} | from_flags
    for key, value in values.items():
        if fields[key].metadata.get("path"):
            values[key] = list(map(os.path.expanduser, value)) if isinstance(value, list) else os.path.expanduser(value)
        if (choices := fields[key].metadata["choices"]) and value not in choices:
            raise UserError(f"{key}={value!r} is not one of {', '.join(map(str, choices))}")
    config = cls(**values)
    config.keys_set = frozenset(values)  # what the files and flags set (a time budget plans the rest)
    return config


def flag_text(value: Any, escapes: bool = False) -> str:
    """A value as a flag takes it, ready to paste into a shell: true, none, 100,500, 'ROMEO:\\n'."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    text = flag_value(value)
    if escapes:  # written as the flag's escapes read it
        text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return shlex.quote(text)


def help_text(cls: type, usage: str) -> str:
    """Usage line plus every key with its default and its line of help."""
    lines = [f"usage: {usage}", "", "Keys (defaults < CONFIG.toml files in order < --key=value flags):"]
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        flag = f"--{f.name}={flag_text(default, f.metadata.get('escapes', False))}"
        lines.append(f"  {flag:<38} {f.metadata.get('help', '')}")
    lines += ["", "A TOML file's top-level keys apply to every command that has them; "
                  f"the keys of its [{cls.command}] table to this one."]
    return "\n".join(lines)
