"""Config precedence (defaults < TOML files in order < flags) and its errors."""
import re

import pytest

from core.config import help_text, parse_config
from core.errors import UserError
from core.settings import SampleConfig, TrainConfig
from helpers import run_script


def write(path, text):
    path.write_text(text)
    return str(path)


def test_precedence_defaults_files_flags(tmp_path):
    a = write(tmp_path / "a.toml", 'n_layer = 6\nlearning_rate = 1e-3\nout_dir = "from-a"\n')
    b = write(tmp_path / "b.toml", "n_layer = 8\ndropout = 0.2\n")
    cfg = parse_config(TrainConfig, [a, b, "--dropout=0.1", "--bias=true"])
    assert cfg.n_layer == 8  # the later file wins
    assert cfg.learning_rate == 1e-3 and cfg.out_dir == "from-a"
    assert cfg.dropout == 0.1 and cfg.bias is True  # flags win over files
    assert cfg.n_head == TrainConfig().n_head  # untouched keys keep the default
    # flags win even when written before a file
    assert parse_config(TrainConfig, ["--n_layer=3", b]).n_layer == 3


def test_unknown_key_suggests_the_closest(tmp_path):
    with pytest.raises(UserError, match=r"unknown config key 'n_layers' in the command line; did you mean 'n_layer'\?"):
        parse_config(TrainConfig, ["--n_layers=4"])
    f = write(tmp_path / "typo.toml", "learnig_rate = 0.1\n")
    with pytest.raises(UserError, match=r"'learnig_rate' in .*typo.toml; did you mean 'learning_rate'"):
        parse_config(TrainConfig, [f])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n_layer=four"], "n_layer must be int, got 'four'"),
        (["--bias=maybe"], "bias must be bool"),
        (["--n_layer"], "needs a value"),
        (["--learning_rate=0"], "learning_rate=0.0 must be positive"),
        (["--max_iters=-5"], "max_iters=-5 must be positive"),
        (["--dtype=float8"], "dtype='float8' is not one of"),
        (["--learning_rate=nan"], "--learning_rate must be a finite number, got nan"),
        (["--dropout=inf"], "--dropout must be a finite number, got inf"),
        (["--seed=-1"], "seed=-1 must be between 0 and 4294967295"),
        (["--seed=4294967296"], "seed=4294967296 must be between 0 and 4294967295"),
    ],
)
def test_bad_flags(args, message):
    with pytest.raises(UserError, match=message):
        parse_config(TrainConfig, args)


def test_toml_types_are_checked(tmp_path):
    f = write(tmp_path / "t.toml", 'n_layer = "6"\n')
    with pytest.raises(UserError, match="n_layer must be int"):
        parse_config(TrainConfig, [f])
    f = write(tmp_path / "u.toml", "bias = 1\n")
    with pytest.raises(UserError, match="bias must be bool"):
        parse_config(TrainConfig, [f])
    f = write(tmp_path / "v.toml", "learning_rate = 1\n")  # an int is a fine float
    assert parse_config(TrainConfig, [f]).learning_rate == 1.0
    f = write(tmp_path / "w.toml", "learning_rate = nan\n")
    with pytest.raises(UserError, match="learning_rate must be a finite number, got nan"):
        parse_config(TrainConfig, [f])
    f = write(tmp_path / "x.toml", 'stop = "END"\n')  # one string is a list of one
    assert parse_config(SampleConfig, [f]).stop == ["END"]


def test_sample_config_escapes_none_and_lists(tmp_path):
    cfg = parse_config(SampleConfig, ["--prompt=ROMEO:\\n", "--top_k=none", "--stop=\\n\\n", "--stop=END"])
    assert cfg.prompt == "ROMEO:\n" and cfg.top_k is None and cfg.stop == ["\n\n", "END"]
    # a training config can be handed to sample.py: it takes out_dir and skips the rest
    train_toml = write(tmp_path / "run.toml", 'out_dir = "out-x"\nn_layer = 2\ninit_from = "resume"\n')
    assert parse_config(SampleConfig, [train_toml], ignore=set(TrainConfig.__dataclass_fields__)).out_dir == "out-x"
    # a key both have that means something else to each is taken from flags only
    cfg = parse_config(SampleConfig, [train_toml], ignore=set(TrainConfig.__dataclass_fields__), flags_only={"init_from"})
    assert cfg.out_dir == "out-x" and cfg.init_from == ""
    assert parse_config(SampleConfig, [train_toml, "--init_from=gpt2"], flags_only={"init_from"},
                        ignore=set(TrainConfig.__dataclass_fields__)).init_from == "gpt2"


@pytest.mark.parametrize("flag, reason", [
    ("--prompt=abc\\", "\\ at end of string"), ("--stop=\\x4", "truncated \\xXX escape"),
    ("--prompt=\\N{NO SUCH NAME}", "unknown Unicode character name"),
])
def test_broken_escapes_are_user_errors(flag, reason):
    with pytest.raises(UserError, match=re.escape(f"has a broken escape sequence ({reason}); write a backslash itself as")):
        parse_config(SampleConfig, [flag])
    assert parse_config(SampleConfig, ["--prompt=a\\\\b"]).prompt == "a\\b"  # an escaped backslash is one backslash


def test_help_lists_every_key_with_default():
    text = help_text(TrainConfig, "usage")
    for name, field in TrainConfig.__dataclass_fields__.items():
        assert f"--{name}={field.default!r}" in text


def test_cli_errors_are_one_line_with_exit_status_2():
    result = run_script("train.py", "--n_layers=4", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown config key 'n_layers' in the command line; did you mean 'n_layer'?"
    result = run_script("train.py", "--help")
    assert "--n_layer=4" in result.stdout and "number of transformer blocks" in result.stdout
