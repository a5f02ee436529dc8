"""Config precedence (defaults < TOML files in order < flags) and its errors."""
import dataclasses
import re
import shlex
import typing
import warnings
from pathlib import Path

import pytest
import torch

from config.errors import UserError
from config.parsing import _parse_flag_value, help_text
from config.prompts import encode_prompt, read_prompt
from config.settings import (COMMANDS, AttentionConfig, BenchConfig, CompareConfig, EvalConfig, ExportConfig,
                             PrepareConfig, SampleConfig, TrainConfig, read_config)
from data.errors import DataError
from data.tokenizer import CharTokenizer
from helpers import TINY_TRAIN_FLAGS, assert_one_line_error, run_command, run_script


def parse_config(cls, argv):
    return read_config(cls, argv)


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


@pytest.mark.parametrize("benchmark", ["training", "precision", "recipe"])
def test_bench_names_a_mistyped_key_against_its_own_keys_and_train_pys(benchmark, capsys):
    """These benchmarks pass the keys bench.py lacks to train.py; a key neither has is named against both."""
    assert_one_line_error(run_command("bench.py", benchmark, "--stepss=60"), "'stepss'", "did you mean 'steps'?")
    assert_one_line_error(run_command("bench.py", benchmark, "--n_layr=3"), "'n_layr'", "did you mean 'n_layer'?")
    assert run_command("bench.py", benchmark, "--help").returncode == 0  # its keys, and where train.py's are
    shown = capsys.readouterr().out
    assert shown.startswith("usage: python bench.py") and "--steps=" in shown and "python train.py --help" in shown


@pytest.mark.parametrize("benchmark", ["generation", "training"])
def test_bench_takes_its_keys_from_a_config_file_whether_or_not_it_passes_keys_to_train_py(tmp_path, benchmark):
    config = write(tmp_path / "b.toml", "n_layer = 2\n[bench]\nsteps = 10\n")  # n_layer: train.py's
    assert_one_line_error(run_command("bench.py", benchmark, str(config)), "steps=10 is too few to time")
    for first in ("--steps=50", str(config)):  # a flag or a config file before the benchmark's name
        assert_one_line_error(run_command("bench.py", first, benchmark), "name the benchmark first: python "
                                                                         f"bench.py {benchmark}")


def test_a_bench_flag_another_benchmark_reads_is_refused_not_ignored(tmp_path):
    """Each key's help names the benchmarks that read it; a flag the one named would ignore is refused."""
    import bench

    for f in dataclasses.fields(BenchConfig):
        readers = f.metadata["help"].partition(":")[0].split(", ")
        assert set(readers) <= bench.BENCHMARKS.keys(), f.name
    for benchmark, flag, readers in [("recipe", "--steps=60", "training and precision"),
                                     ("generation", "--repeats=2", "first_token"),
                                     ("budget", "--device=cpu", "generation"),
                                     ("training", "--out_dir=run", "first_token"),  # train.py's key too, not passed
                                     ("recipe", "--steps=10", "training and precision")]:  # before its value's check
        assert_one_line_error(run_command("bench.py", benchmark, flag),
                              f"{flag.partition('=')[0]} is a key of bench.py {readers}, not of {benchmark}; drop it")
    config = write(tmp_path / "b.toml", "repeats = 2\n")  # a file may hold several benchmarks' keys
    assert_one_line_error(run_command("bench.py", "generation", str(config), "--new_tokens=0"),
                          "new_tokens must be positive")  # checked on, not refused for repeats
    assert_one_line_error(run_command("bench.py", "training", "--device=tpu"), "device")  # train.py's key too


def test_bench_checks_every_budget_before_it_trains_any(tmp_path):
    for flags in (["--budgets=60,0"], ["--budgets=-5"]):
        assert_one_line_error(run_command("bench.py", "budget", *flags),
                              "budgets must be positive")
    empty = write(tmp_path / "empty.toml", "budgets = []\nnew_tokens = []\n")  # no budgets: the BPE one alone
    assert_one_line_error(run_command("bench.py", "generation", str(empty)), "new_tokens is empty; give at least one")
    assert_one_line_error(run_command("bench.py", "budget", "--bpe_budget=-1"), "bpe_budget=-1")


def test_each_row_of_the_recipes_table_is_the_recipe_it_names_whatever_the_users_keys(tmp_path, monkeypatch):
    import bench

    built = []  # the config of each row's model, in the table's order

    def training_step(cfg, device):  # no model is built: its config is kept, and its step "takes" 1 s
        built.append(cfg)
        return None, lambda: (1.0, 0.1), 1

    monkeypatch.setattr(bench, "training_step", training_step)
    users = write(tmp_path / "gpt2ish.toml", 'n_layer = 2\npos_emb = "learned"\noptimizer = "adamw"\n')
    bench.bench_recipe_cost([str(users)], 8, torch.device("cpu"))
    reference = read_config(TrainConfig, ["configs/classic.toml"])
    classic = [getattr(reference, k) for k in bench.RECIPE_KEYS]
    assert [[getattr(c, k) for k in bench.RECIPE_KEYS] for c in built] == \
        2 * [classic] + 2 * [["rope", "rmsnorm", True, "swiglu", False, "muon"]]
    assert [c.compile for c in built] == [False, True, False, True] and {c.n_layer for c in built} == {2}  # yours


def test_each_recipe_run_trains_its_piece_over_the_users_keys(tmp_path, monkeypatch):
    import bench

    configs = {}  # each run's config, as train.py would read its flags

    def run_train(args, steps, out_dir):  # nothing trains: one logged step of 1 token
        configs[out_dir.name] = read_config(TrainConfig, args)
        return [{"kind": "batch", "tok_per_s": 1.0, "tokens": 1}]

    monkeypatch.setattr(bench, "run_train", run_train)
    monkeypatch.setattr(bench, "scored_val_loss", lambda out_dir: (1.0, 1.0))
    monkeypatch.setattr(bench, "compare_runs", lambda logs, plot, by: plot)
    users = ["--pos_emb=learned", "--n_kv_head=6", "--n_head=6", "--optimizer=adamw"]  # against three pieces
    bench.bench_recipe(read_config(BenchConfig, [f"--plot={tmp_path / 'r.png'}"]), users)
    rows = [configs[str(i)] for i in range(len(configs))]  # classic, modern, then the pieces in order
    assert [c.pos_emb for c in rows[:3]] == ["learned", "learned", "rope"]  # yours, yours, then the RoPE row's
    assert rows[-2].n_kv_head == 3 and rows[-1].optimizer == "muon" and {c.n_head for c in rows} == {6}


def test_the_recipes_grouped_query_row_names_the_heads_it_trains():
    from bench import recipe_pieces

    for n_head, kv in [(4, 2), (6, 3), (5, 1), (9, 3)]:
        assert recipe_pieces(n_head)[f"+ grouped-query ({kv} of {n_head} kv heads)"] == [f"--n_kv_head={kv}"]
    assert not any("grouped" in name for name in recipe_pieces(1))  # one head has no groups to share


def test_a_slow_rate_keeps_three_figures_in_the_generation_tables():
    from bench import rate_cell

    assert [rate_cell(v) for v in (2.3456, 23.456, 99.94, 234.56, 12345.6)] == ["2.35", "23.5", "99.9", "235", "12,346"]


@pytest.mark.parametrize("benchmark", ["training", "precision"])
def test_a_log_interval_that_leaves_nothing_to_time_is_one_line_before_any_run(benchmark, char_dataset, tmp_path,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)  # bench.py's own config files are found from any folder
    refused = run_command("bench.py", benchmark, "--steps=50", "--log_interval=50", f"--dataset={char_dataset}")
    assert_one_line_error(refused, "log_interval=50 leaves under two logged steps after the first 10 of 50 to time")
    from bench import check_timed

    check_timed(read_config(TrainConfig, ["--log_interval=20"]), 50, 10)  # steps 20, 40 and the last, 50: timed


@pytest.mark.slow
def test_a_benchmarks_training_run_names_no_commands_for_its_temporary_folder(char_dataset, tmp_path, capsys):
    from bench import run_train

    rows = run_train([*TINY_TRAIN_FLAGS, f"--dataset={char_dataset}"], 10, tmp_path / "run")
    printed = capsys.readouterr().out
    assert rows[-1]["step"] == 10 and "best val loss" in printed
    assert "next:" not in printed and str(tmp_path / "run") not in printed  # gone once the benchmark ends


def test_a_benchmarks_own_settings_lie_beneath_the_users_files_and_flags(tmp_path):
    from bench import NANOGPT_CPU, beneath

    tiny = write(tmp_path / "tiny.toml", "n_layer = 1\nn_embd = 32\n")
    args = beneath(NANOGPT_CPU, [str(tiny), "--block_size=16"])
    c = read_config(TrainConfig, args)
    assert (c.n_layer, c.n_embd, c.block_size) == (1, 32, 16)  # the user's file and flag
    assert (c.n_head, c.batch_size, c.pos_emb) == (4, 12, "learned")  # nanoGPT's CPU run, in the GPT-2 recipe
    assert_one_line_error(run_command("bench.py", "precision", str(tiny), "--dtype=float32"),
                          "precision trains in float32 and in bfloat16 itself; drop dtype")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n_layer=four"], "n_layer must be int, got 'four'"),
        (["--bias=maybe"], "bias must be bool"),
        (["--n_layer"], "needs a value"),
        (["--n_layer", "4"], r"flag --n_layer needs a value: --n_layer=VALUE \(an =, not a space\)"),  # not file 4
        (["--hf_model=gpt2"], "unknown config key 'hf_model' in the command line; did you mean 'init_from'"),
        (["--grad_accum=4"], "did you mean 'gradient_accumulation_steps'"),  # not grad_clip, the closest spelling
        (["--nproc_per_node=2"], "--nproc_per_node is torchrun's: give it before the script, torchrun --standalone"),
        (["--prompt=hi"], "unknown config key 'prompt' in the command line; .*'prompt' is a key of sample, not of this"),
        (["--learning_rate=0"], "learning_rate=0.0 must be positive"),
        (["--max_iters=-5"], "max_iters=-5 must be positive"),
        (["--dtype=float8"], "dtype='float8' is not one of"),
        (["--learning_rate=nan"], "--learning_rate must be a finite number, got nan"),
        (["--dropout=inf"], "--dropout must be a finite number, got inf"),
        (["--seed=-1"], "seed=-1 must be between 0 and 4294967295"),
        (["--vocab_size=1" + "0" * 30], r"^--vocab_size is out of range \(100 bits\); give a number under 2\*\*63$"),
        (["--vocab_size=1" + "0" * 5000], r"^--vocab_size is out of range \(5,001 characters\); give a number "
                                           r"under 2\*\*63$"),
        (["--seed=-1" + "0" * 5000], r"^--seed is out of range \(5,002 characters\)"),
        (["--seed=4294967296"], "seed=4294967296 must be between 0 and 4294967295"),
        (["--init_from=resum"], "init_from='resum' is not scratch, resume, a GPT-2 name or a folder; did you mean 'resume'"),
        (["--init_from=scrach"], "did you mean 'scratch'"),
        (["--init_from=hf-model", "--out_dir=hf-model/"], "out_dir=hf-model/ is the model folder init_from reads; "
                                                          "give the run a folder of its own"),
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
    f = write(tmp_path / "y.toml", 'warmup_iters = "none"\nmax_iters = 300\n')  # as --help shows it: TOML has no null
    assert parse_config(TrainConfig, [f]).warmup_iters == 30  # none: a tenth of max_iters
    with pytest.raises(UserError, match=r"--text_file takes the path itself: --text_file=notes.txt \(FILE: marks"):
        parse_config(EvalConfig, ["--text_file=FILE:notes.txt"])
    f = write(tmp_path / "z.toml", 'top_k = "None"\n')  # spelled as a flag may spell it
    assert parse_config(SampleConfig, [f]).top_k is None
    f = write(tmp_path / "nanogpt.py", "compile = False\n")  # nanoGPT's Python configs: not TOML
    with pytest.raises(UserError, match=r"nanogpt.py is not valid TOML: .*; write key = value lines \(true and false "
                                        r"in lower case, text in quotes\), as configs/\*.toml do$"):
        parse_config(TrainConfig, [f])
    f = write(tmp_path / "huge.toml", "learning_rate = 1" + "0" * 400 + "\n")
    with pytest.raises(UserError, match=r"^learning_rate is out of range \(1329 bits\); give a number under 2\*\*63$"):
        parse_config(TrainConfig, [f])
    f = write(tmp_path / "long.toml", "[sample]\nseed = 1" + "0" * 5000 + "\n")  # past Python's 4,300 digits
    with pytest.raises(UserError, match=r"long.toml is not valid TOML: Exceeds the limit \(4300 digits\)"):
        parse_config(SampleConfig, [f])
    f = write(tmp_path / "deep.toml", "n_layer = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match=r"deep.toml is not valid TOML: maximum recursion depth exceeded"):
        parse_config(TrainConfig, [f])


@pytest.mark.parametrize("cls, flag, meant", [(AttentionConfig, "--prompt=hi", "text"),
                                              (SampleConfig, "--text=hi", "prompt"),
                                              (CompareConfig, "--out_dir=out", "runs")])
def test_another_commands_name_for_a_key_is_offered_this_commands(cls, flag, meant):
    with pytest.raises(UserError, match=f"did you mean '{meant}'?"):
        parse_config(cls, [flag])


@pytest.mark.parametrize("cls, args, message", [
    (SampleConfig, ["--init_from=resume"], "this command reads the run in --out_dir=DIR (init_from=resume is "
                                           "train.py's), or a Hugging Face model with --hf_model=NAME$"),
    (ExportConfig, ["--init_from=resume"], "this command reads the run in --out_dir=DIR (init_from=resume is "
                                           "train.py's)$"),
    (TrainConfig, ["--eval_only=True"], "eval.py scores a run: python eval.py --out_dir=DIR, without --eval_only$"),
    (BenchConfig, ["--init_from=gpt2"], "'init_from' is a key of train, not of this command$"),  # reads no run
    (TrainConfig, ["--backend=nccl"], "the distributed backend follows the device: NCCL on CUDA GPUs, gloo on CPUs$"),
    (SampleConfig, ["--dtype=bfloat16"], "did you mean 'weights'?"),
    (TrainConfig, ["config/train_shakespeare_char.py"], "config file config/train_shakespeare_char.py not found; the "
                                                        "shipped ones are in configs/ (TOML files: key = value, as "
                                                        "configs/shakespeare_char.toml)$"),
])
def test_nanogpt_habits_are_told_what_this_project_does_instead(cls, args, message):
    with pytest.raises(UserError, match=re.escape(message.removesuffix("$")) + ("$" if message.endswith("$") else "")):
        parse_config(cls, args)


def test_a_word_of_an_unquoted_value_a_key_in_capitals_and_a_run_folder_are_named_as_such(tmp_path):
    with pytest.raises(UserError, match=r"config file be not found; the shipped ones are in configs/ \(a flag's value "
                                        r"with spaces goes in quotes: --prompt='To be or'\)$"):
        parse_config(SampleConfig, ["--prompt=To", "be"])
    with pytest.raises(UserError, match=r"config file mine.toml not found; the shipped ones are in configs/$"):
        parse_config(SampleConfig, ["mine.toml"])
    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(UserError, match=f"config file {tmp_path} is a folder; a run's folder is given as "
                                        f"--out_dir={tmp_path}$"):
        parse_config(SampleConfig, [str(tmp_path)])
    with pytest.raises(UserError, match=r"unknown config key 'N_LAYER' in the command line; did you mean 'n_layer'"):
        parse_config(TrainConfig, ["--N_LAYER=3"])


def test_a_loop_of_links_is_no_traceback_where_two_paths_are_compared(tmp_path):
    """Path.resolve raises on a loop of links: the checks that compare two paths (init_from's folder and out_dir,
    eval's page and text) leave the loop to the check that meets it."""
    import eval

    (tmp_path / "x1").symlink_to(tmp_path / "x2")
    (tmp_path / "x2").symlink_to(tmp_path / "x1")
    assert parse_config(TrainConfig, ["--init_from=gpt2", f"--out_dir={tmp_path / 'x1'}"]).out_dir.endswith("x1")
    with pytest.raises(UserError, match="not found"):
        eval.main([f"--out_dir={tmp_path / 'none'}", f"--text_file={tmp_path / 'x1'}",
                   f"--surprise={tmp_path / 'page.html'}"])


def test_a_flag_with_one_dash_is_named_as_such_not_as_a_missing_file():
    with pytest.raises(UserError, match=r"^-out_dir=x is no flag nor config file; flags take two dashes: --out_dir=x$"):
        parse_config(TrainConfig, ["-out_dir=x"])


def test_a_config_file_that_is_not_utf8_text_is_one_line_and_a_byte_order_mark_is_dropped(tmp_path):
    (tmp_path / "latin1.toml").write_bytes("# café\nn_layer = 2\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.toml is not UTF-8 text \(invalid byte at offset 5\); give a .toml"):
        parse_config(TrainConfig, [str(tmp_path / "latin1.toml")])
    torch.save({"model": torch.zeros(3)}, tmp_path / "ckpt.pt")
    with pytest.raises(UserError, match=r"ckpt.pt is not UTF-8 text .*; it is a checkpoint: name its folder with"):
        parse_config(SampleConfig, [str(tmp_path / "ckpt.pt")])
    (tmp_path / "bom.toml").write_bytes("\ufeffn_layer = 2\n".encode("utf-8"))
    assert parse_config(TrainConfig, [str(tmp_path / "bom.toml")]).n_layer == 2


def test_sample_config_escapes_none_and_lists():
    cfg = parse_config(SampleConfig, ["--prompt=ROMEO:\\n", "--top_k=none", "--stop=\\n\\n", "--stop=END"])
    assert cfg.prompt == "ROMEO:\n" and cfg.top_k is None and cfg.stop == ["\n\n", "END"]


@pytest.mark.parametrize("flag, text", [
    ("\\日本\\n", "\\日本\n"),  # a backslash before a character past Latin-1 stays, as before \\q: not \\u65e5
    # as they were read before escapes were read one by one
    ("café \\u00e9\\x41\\101 \\q", "café éAA \\q"), ("\\N{BULLET} \\\\n", "• \\n"),
    ("\\ud83d\\ude42 \\U0001f642", "\U0001f642 \U0001f642"),  # JSON's escapes of a surrogate pair: one character
])
def test_escapes_are_read_one_by_one_beside_any_character(flag, text):
    with warnings.catch_warnings():  # Python's decoder is never handed an escape it only warns about (\\q)
        warnings.simplefilter("error")
        assert parse_config(SampleConfig, [f"--prompt={flag}"]).prompt == text


TRAINING_RUN = 'out_dir = "out-x"\nn_layer = 2\ninit_from = "resume"\nbatch_size = 64\ndevice = "cpu"\nseed = 5\n'


def test_a_training_config_gives_every_command_the_keys_it_has(tmp_path):
    """A key means one thing in every command that has it, so each takes the top-level keys it has."""
    run = write(tmp_path / "run.toml", TRAINING_RUN)
    sample = parse_config(SampleConfig, [run])
    assert (sample.out_dir, sample.device, sample.seed, sample.hf_model) == ("out-x", "cpu", 5, "")
    attention = parse_config(AttentionConfig, [run])
    assert (attention.out_dir, attention.device, attention.hf_model) == ("out-x", "cpu", "")
    evaluation = parse_config(EvalConfig, [run])
    assert (evaluation.out_dir, evaluation.batch_size) == ("out-x", 64)  # sequences per batch in both
    assert parse_config(SampleConfig, [run, "--hf_model=gpt2"]).hf_model == "gpt2"
    prepare = parse_config(PrepareConfig, [run, "--input=a.txt", "--dataset=a"])
    assert (prepare.dataset, prepare.split_seed) == ("a", 1337)  # training's seed draws no other validation split
    with pytest.raises(UserError, match="did you mean 'split_seed'?"):
        parse_config(PrepareConfig, ["--seed=7", "--input=a.txt", "--dataset=a"])


def test_keys_of_several_commands_have_one_type_and_the_deleting_keys_one_command():
    """No TOML written for one command can make another delete something: each key that
    replaces files belongs to one command, and a key in several commands has one type."""
    hints = {name: typing.get_type_hints(cls) for name, cls in COMMANDS.items()}
    owners = {}
    for command, fields in hints.items():
        for key, hint in fields.items():
            owners.setdefault(key, {})[command] = hint
    for key, by_command in owners.items():
        assert len(set(map(str, by_command.values()))) == 1, (key, by_command)
    replacing = {key: sorted(by_command) for key, by_command in owners.items() if key.startswith("replace_")}
    assert replacing == {"replace_run": ["train"], "replace_dataset": ["prepare"], "replace_export": ["export"]}
    assert "overwrite" not in owners and "to" not in owners


def test_each_command_reads_its_own_table(tmp_path):
    run = write(tmp_path / "run.toml", TRAINING_RUN + '[sample]\nhf_model = "gpt2"\nseed = 9\n'
                '[eval]\nbatch_size = 4\n[attention]\ntext = "hi"\n')
    assert parse_config(TrainConfig, [run]).batch_size == 64  # train.py leaves the tables to their commands
    sample = parse_config(SampleConfig, [run])
    assert (sample.hf_model, sample.seed, sample.out_dir) == ("gpt2", 9, "out-x")  # the table wins over the top
    assert parse_config(EvalConfig, [run]).batch_size == 4
    assert parse_config(AttentionConfig, [run]).text == "hi"
    typo = write(tmp_path / "typo.toml", "[sample]\ntemprature = 0.5\n")
    for cls in COMMANDS.values():  # train.py too: found at once, not when sample.py is run after the training
        with pytest.raises(UserError, match=r"'temprature' in \[sample\] of .*typo.toml; did you mean 'temperature'"):
            parse_config(cls, [typo])
    misplaced = write(tmp_path / "misplaced.toml", '[train]\nprompt = "ROMEO:"\n')  # not a guess at a train key
    with pytest.raises(UserError, match=r"'prompt' in \[train\] of .*misplaced.toml; 'prompt' is a key of sample, "
                                        r"not of train$"):
        parse_config(SampleConfig, [misplaced])


def test_a_top_level_key_no_command_has_is_an_error_everywhere(tmp_path):
    f = write(tmp_path / "t.toml", 'out_dir = "x"\nprompt = "a"\nn_layerz = 3\n')
    for cls in COMMANDS.values():
        with pytest.raises(UserError, match="unknown config key 'n_layerz'"):
            parse_config(cls, [f])
    ok = write(tmp_path / "ok.toml", 'out_dir = "x"\nprompt = "a"\n')  # prompt is sample.py's: others leave it
    table = write(tmp_path / "table.toml", "[sampel]\ntemperature = 0.5\n")
    for cls in COMMANDS.values():  # not a key: a table, which no command has
        with pytest.raises(UserError, match=r"unknown table \[sampel\] in .*table.toml; did you mean \[sample\]\?"):
            parse_config(cls, [table])
    number = write(tmp_path / "number.toml", "time_budget = 20\n")
    with pytest.raises(UserError, match=r'time_budget must be str, got 20 \(TOML writes text in quotes: "20"\)'):
        parse_config(TrainConfig, [number])
    with pytest.raises(UserError, match=r"out_dir must be str, got True$"):  # no quotes to suggest for a boolean
        parse_config(TrainConfig, [write(tmp_path / "bool.toml", "out_dir = true\n")])
    assert parse_config(EvalConfig, [ok]).out_dir == "x" and parse_config(SampleConfig, [ok]).prompt == "a"


def test_lists_of_numbers_take_commas_or_repeats():
    assert parse_config(BenchConfig, ["--new_tokens=10,20", "--new_tokens=30"]).new_tokens == [10, 20, 30]
    with pytest.raises(UserError, match="new_tokens must be a list of int"):
        parse_config(BenchConfig, ["--new_tokens=ten"])
    with pytest.raises(UserError, match=r"^--new_tokens is out of range \(100 bits\)"):
        parse_config(BenchConfig, ["--new_tokens=10,1" + "0" * 30])
    with pytest.raises(UserError, match=r"^--new_tokens is out of range \(5,001 characters\)"):
        parse_config(BenchConfig, ["--new_tokens=10,1" + "0" * 5000])
    assert parse_config(SampleConfig, ["--prompt=" + "3" * 5000]).prompt == "3" * 5000  # digits as text are text


@pytest.mark.parametrize("flag, reason", [
    ("--prompt=abc\\", "\\ at end of string"), ("--stop=\\x4", "truncated \\xXX escape"),
    ("--prompt=\\N{NO SUCH NAME}", "unknown Unicode character name"),
    ("--prompt=\\N{oops \\n", "malformed \\N character escape"), ("--stop=\\N{日}", "malformed \\N character escape"),
])
def test_broken_escapes_are_user_errors(flag, reason):
    with pytest.raises(UserError, match=re.escape(f"has a broken escape sequence ({reason}); write a backslash itself as")):
        parse_config(SampleConfig, [flag])
    assert parse_config(SampleConfig, ["--prompt=a\\\\b"]).prompt == "a\\b"  # an escaped backslash is one backslash


@pytest.mark.parametrize("flag", ["--prompt=\\ud83d", "--stop=a\\ude42b", "--prompt=\\ude42\\ud83d"])
def test_an_escape_of_half_a_character_is_a_user_error(flag):
    half = "holds a \\u escape of half a character (a surrogate without its pair)"
    with pytest.raises(UserError, match=re.escape(half)):
        parse_config(SampleConfig, [flag])


def test_a_path_may_start_at_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "both.toml").write_text('input = ["~/notes", "~/more"]\n')
    train = parse_config(TrainConfig, ["--out_dir=~/runs/a", "--dataset=~/data/b", "--wandb_run_name=~/c"])
    assert (train.out_dir, train.dataset) == (f"{tmp_path}/runs/a", f"{tmp_path}/data/b")
    assert train.wandb_run_name == "~/c"  # a name, not a path
    prepare = parse_config(PrepareConfig, [str(tmp_path / "both.toml"), "--dataset=d"])
    assert prepare.input == [f"{tmp_path}/notes", f"{tmp_path}/more"]
    assert parse_config(PrepareConfig, ["--input=~/a", "--input=~/b", "--dataset=d"]).input == [f"{tmp_path}/a",
                                                                                              f"{tmp_path}/b"]
    assert parse_config(SampleConfig, ["--prompt=~/x"]).prompt == "~/x"  # text
    (tmp_path / "prompt.txt").write_text("Shall I")
    assert read_prompt("FILE:~/prompt.txt") == "Shall I"


def test_a_text_file_read_as_a_prompt_loses_its_byte_order_mark_and_windows_line_ends(tmp_path):
    (tmp_path / "notepad.txt").write_bytes(b"\xef\xbb\xbfROMEO:\r\nJULIET:\r\nNURSE:\r")  # Windows', old Mac's
    assert read_prompt(f"FILE:{tmp_path / 'notepad.txt'}") == "ROMEO:\nJULIET:\nNURSE:\n"


def test_a_default_text_the_model_cannot_spell_names_its_key_or_starts_afresh():
    tokenizer = CharTokenizer.from_text("abc ", end_of_text=True)  # a corpus without newlines
    with pytest.raises(UserError, match=r"default --text='To be' does not fit this model: .* own with --text=TEXT"):
        encode_prompt("To be", tokenizer, "text", default=True)
    assert encode_prompt("\n", tokenizer, default=True, start_if_unfit=True) == [tokenizer.eot_token]  # sample.py's
    with pytest.raises(DataError, match="not in this model's vocabulary"):  # the user's own text
        encode_prompt("\n", tokenizer)
    assert encode_prompt("ab", tokenizer, "text", default=True) == tokenizer.encode("ab")


def test_help_lists_every_key_with_a_default_a_flag_takes_as_shown():
    for cls in COMMANDS.values():
        shown = {}  # key -> the value its help line shows, as the shell passes it on
        for line in help_text(cls, "usage").splitlines():
            if line.startswith("  --"):
                words = shlex.shlex(line, posix=True)
                words.whitespace_split = True
                key, _, value = words.get_token()[2:].partition("=")  # the flag, as the shell reads it
                shown[key] = value
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            if default == []:  # nothing to show
                assert shown[field.name] == ""
            else:
                assert _parse_flag_value(field.name, shown[field.name], field, hints[field.name]) == default


@pytest.mark.slow
def test_cli_errors_are_one_line_with_exit_status_2():
    result = run_script("train.py", "--n_layers=4", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown config key 'n_layers' in the command line; did you mean 'n_layer'?"
    code = ("import sys, runpy; sys.argv = ['train.py', *sys.argv[1:]]\n"
            "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
            "finally:\n    print('DYNAMO_LOADED' if 'torch._dynamo' in sys.modules else 'DYNAMO_ABSENT')")
    result = run_script("-c", code, "--help")
    assert "--n_layer=4" in result.stdout and "number of transformer blocks" in result.stdout
    assert result.stdout.strip().endswith("DYNAMO_ABSENT")  # torch's compiler, seconds to import, waits for training


def test_schedule_follows_max_iters_unless_set():
    short = parse_config(TrainConfig, ["--max_iters=60"])
    assert (short.warmup_iters, short.lr_decay_iters) == (6, 60)  # a short run warms up and decays in its steps
    assert short.schedule_warnings() == []
    assert parse_config(TrainConfig, []).warmup_iters == TrainConfig().max_iters // 10
    pinned = parse_config(TrainConfig, ["--max_iters=3000", "--lr_decay_iters=1000", "--warmup_iters=100"])
    assert (pinned.warmup_iters, pinned.lr_decay_iters) == (100, 1000)  # explicit keys win
    assert pinned.schedule_warnings() == ["lr_decay_iters=1000 < max_iters=3000: the last 2000 steps run at min_lr"]
    never = parse_config(TrainConfig, ["--max_iters=50", "--warmup_iters=80", "--lr_decay_iters=90"])
    assert [w.split(":")[0] for w in never.schedule_warnings()] == ["warmup_iters=80 >= max_iters=50",
                                                                     "lr_decay_iters=90 > max_iters=50"]
    assert parse_config(TrainConfig, ["--max_iters=50", "--warmup_iters=80", "--decay_lr=false"]).schedule_warnings() == []
    with pytest.raises(UserError, match="min_lr=0.001 must be between 0 and learning_rate=0.0005"):
        parse_config(TrainConfig, ["--learning_rate=5e-4"])
    assert parse_config(TrainConfig, ["--learning_rate=5e-4", "--decay_lr=false"]).learning_rate == 5e-4  # no min_lr
    from training.optimizer import lr_scale

    still_warming = parse_config(TrainConfig, ["--max_iters=20", "--warmup_iters=30"])  # lr_decay_iters: 20
    assert [w.split(":")[0] for w in still_warming.schedule_warnings()] == ["warmup_iters=30 >= max_iters=20"]
    crossed = parse_config(TrainConfig, ["--max_iters=10", "--warmup_iters=8", "--lr_decay_iters=5"])
    assert crossed.schedule_warnings() == [
        "warmup_iters=8 > lr_decay_iters=5: the learning rate drops from its warmup straight to min_lr",
        "lr_decay_iters=5 < max_iters=10: the last 2 steps run at min_lr"]  # the updates after steps 8 and 9
    assert [lr_scale(crossed, step) == crossed.min_lr / crossed.learning_rate for step in (7, 8, 9)] == [False, True, True]


def test_a_path_this_user_may_not_reach_is_one_line_wherever_a_command_meets_it():
    from helpers import run_main

    def main(argv):  # as Path.exists() raises on Python 3.11 for a folder this user may not enter
        raise PermissionError(13, "Permission denied", "/root/run")
    result = run_main(main)
    assert result.returncode == 2 and result.stderr == ("error: /root/run cannot be reached (permission denied); "
                                                        "choose a path this user may read and write, or change its "
                                                        "permissions\n")


def test_an_allocation_that_fails_is_one_line_naming_what_to_make_smaller():
    """The CPU allocator's own failure, and a GPU's as torch raises it (torch.OutOfMemoryError); any other
    RuntimeError is a fault, seen whole."""
    from helpers import run_main

    def too_large(argv):
        torch.empty(2**60, dtype=torch.uint8)  # past any machine's address space

    result = run_main(too_large)
    assert result.returncode == 2 and result.stderr == ("error: out of memory (an allocation of 1,152,921,504.6 "
                                                        "GB failed); run again with smaller settings\n")

    def gpu(argv):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of "
                                     "79.10 GiB of which 3.12 MiB is free.")

    result = run_main(gpu)
    assert result.returncode == 2 and "error: out of memory (an allocation of 20.00 MiB failed)" in result.stderr
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_main(lambda argv: torch.ones(2, 3) @ torch.ones(2, 3))


def test_a_command_that_is_over_lets_no_late_ctrl_c_cut_the_interpreters_teardown_short():
    """torch's teardown at exit takes a moment: a Ctrl-C then would print a traceback, or turn success into 130."""
    import subprocess
    import sys

    from helpers import REPO

    code = ("import signal, sys; from config.errors import run_cli; run_cli(lambda argv: print('done'));"
            "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout == "done\nTrue True\n"


def test_a_sigterm_stops_a_command_as_ctrl_c_does_with_a_terminated_status():
    """stop_on_sigterm (prepare, bench, train): the command unwinds as from Ctrl-C, then exits 143, 128 + SIGTERM."""
    import subprocess
    import sys

    from helpers import REPO

    code = ("import os, signal; from config.errors import run_cli, stop_on_sigterm; stop_on_sigterm(); "
            "run_cli(lambda argv: os.kill(os.getpid(), signal.SIGTERM))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (143, "\ninterrupted\n")



@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc to see torch loading")
def test_a_ctrl_c_while_a_command_loads_torch_is_one_line(tmp_path):
    """A command's first seconds import torch, before run_cli can catch anything: config/interrupt.py's
    handler ends it there with run_cli's line and status, out_dir not yet made."""
    import signal
    import subprocess
    import sys
    import time

    from helpers import REPO

    def default_ctrl_c() -> None:  # as a terminal starts it: a background job would inherit Ctrl-C ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen([sys.executable, "train.py", f"--out_dir={tmp_path / 'run'}"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_ctrl_c)
    try:
        deadline = time.monotonic() + 30
        while "libtorch" not in Path(f"/proc/{process.pid}/maps").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)  # torch's import has begun, and has a second or more to go
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert (process.returncode, out, err) == (130, "", "\ninterrupted\n")
    assert not (tmp_path / "run").exists()
