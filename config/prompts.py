"""The text a command is given: a flag's own text, or a file's (FILE:path), and its token ids."""

from pathlib import Path

from data.errors import DataError
from data.tokenizer import Tokenizer, start_tokens

from .errors import UserError


MAX_FILE_BYTES = 1 << 26  # 64 MiB: a prompt read from a device that never ends (/dev/zero) stops there


def read_prompt(prompt: str, what: str = "prompt") -> str:
    """The text itself, or the contents of the file (or pipe: FILE:<(command)) that FILE:path names."""
    if not prompt.startswith("FILE:"):
        return prompt
    if prompt == "FILE:":
        raise UserError(f"FILE: needs a path after it, e.g. --{what}=FILE:notes.txt")
    path = Path(prompt[len("FILE:") :]).expanduser()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise UserError(f"{what} file {path} holds over {MAX_FILE_BYTES >> 20} MiB; give a shorter text (the "
                            f"model reads at most its last block_size tokens)")
        # -sig: a byte-order mark that some editors write; Windows' and old Mac line ends read as "\n", as in text mode
        return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise UserError(f"{what} file {path} not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{what} file {path} is not UTF-8 (invalid byte at offset {e.start})") from None
    except OSError as e:  # a folder, no permission, ...
        raise UserError(f"{what} file {path} cannot be read: {e.strerror or e}") from None


def encode_prompt(prompt: str, tokenizer: Tokenizer, key: str = "prompt", default: bool = False,
                  start_if_unfit: bool = False) -> list[int]:
    """Token ids of the text, or the start token if it is empty. A command's default text in characters the
    model never saw is not the user's doing: with start_if_unfit (sample.py's newline, which a corpus of one-line
    documents lacks) it starts where an unprompted sample starts, else the error names the key."""
    try:
        return tokenizer.encode(prompt) if prompt else start_tokens(tokenizer)
    except DataError as e:
        if not default:
            raise
        if start_if_unfit:
            return start_tokens(tokenizer)
        raise UserError(f"the default --{key}={prompt!r} does not fit this model: {e}; "
                        f"give your own with --{key}=TEXT") from None
