"""Configuration: dataclass defaults < TOML files (in order) < --key=value flags.

Every key is checked: an unknown key or a value of the wrong type is a
UserError that names the key and suggests the closest valid one.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from typing import Any, TypeVar

from .errors import UserError

C = TypeVar("C")


def option(default: Any, help: str, escapes: bool = False) -> Any:
    """A config field with its one line of help. `escapes`: a flag's value may
    use backslash escapes such as \\n (for prompts and stop strings)."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return dataclasses.field(metadata={"help": help, "escapes": escapes}, **factory)


def _allowed_types(hint: Any) -> tuple[type, ...]:
    """int | None -> (int, NoneType); list[str] -> (list,)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _allowed_types(arg))
    return (typing.get_origin(hint) or hint,)


def _type_name(hint: Any) -> str:
    return " or ".join("none" if t is type(None) else t.__name__ for t in _allowed_types(hint))


def _finite(key: str, value: float) -> float:
    if not math.isfinite(value):
        raise UserError(f"{key} must be a finite number, got {value}")
    return value


def _unescape(key: str, text: str) -> str:
    """Backslash escapes as in a Python string (\\n, \\t, \\u00e9, \\\\)."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise UserError(f"--{key} has a broken escape sequence ({e.reason}); write a backslash itself as \\\\") from None


def _check_value(key: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against the field's type; ints are accepted as floats,
    and one string as a list of one."""
    allowed = _allowed_types(hint)
    if float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(key, float(value))
    if list in allowed and isinstance(value, str):
        return [value]
    if isinstance(value, bool) and bool not in allowed:
        raise UserError(f"{key} must be {_type_name(hint)}, got {value!r}")
    if not isinstance(value, allowed):
        raise UserError(f"{key} must be {_type_name(hint)}, got {value!r}")
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise UserError(f"{key} must be a list of strings, got {value!r}")
    return value


def _parse_flag_value(key: str, text: str, field: dataclasses.Field, hint: Any) -> Any:
    allowed = _allowed_types(hint)
    if type(None) in allowed and text.lower() in ("none", "null", ""):
        return None
    if bool in allowed:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
    for kind in (int, float):
        if kind in allowed:
            try:
                return _finite(f"--{key}", kind(text)) if kind is float else kind(text)
            except ValueError:
                pass
    if str in allowed or list in allowed:
        if field.metadata.get("escapes"):
            text = _unescape(key, text)
        return [text] if list in allowed else text
    raise UserError(f"--{key} must be {_type_name(hint)}, got {text!r}")


def _unknown_key(key: str, valid: list[str], where: str) -> UserError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else "; run with --help to list the keys"
    return UserError(f"unknown config key '{key}' in {where}{hint}")


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file {path} not found; the shipped ones are in configs/") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML: {e}") from None


def parse_config(cls: type[C], argv: list[str], ignore: set[str] = frozenset(),
                 flags_only: set[str] = frozenset()) -> C:
    """Build cls from its defaults, then TOML files and --key=value flags in argv.

    Keys named in `ignore` may appear in TOML files (they belong to another
    tool sharing the file) and are skipped. Keys in `flags_only` are skipped in
    TOML files too: only a flag sets them (a key both tools have, meaning
    something else to each).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for path in (a for a in argv if not a.startswith("--")):
        for key, value in _read_toml(path).items():
            if key in flags_only or (key in ignore and key not in fields):
                continue
            if key not in fields:
                raise _unknown_key(key, list(fields), path)
            values[key] = _check_value(key, value, hints[key])
    from_flags: dict[str, Any] = {}
    for flag in (a for a in argv if a.startswith("--")):
        key, sep, text = flag[2:].partition("=")
        if key not in fields:
            raise _unknown_key(key, list(fields), "the command line")
        if not sep:
            raise UserError(f"flag --{key} needs a value: --{key}=VALUE")
        value = _parse_flag_value(key, text, fields[key], hints[key])
        if isinstance(value, list):  # a repeated flag adds to a list
            value = from_flags.get(key, []) + value
        from_flags[key] = value
    values.update(from_flags)
    return cls(**values)


def help_text(cls: type, usage: str) -> str:
    """Usage line plus every key with its default and its line of help."""
    lines = [usage, "", "Keys (defaults < CONFIG.toml files in order < --key=value flags):"]
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        flag = f"--{f.name}={default!r}"
        lines.append(f"  {flag:<38} {f.metadata.get('help', '')}")
    return "\n".join(lines)


def wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)

