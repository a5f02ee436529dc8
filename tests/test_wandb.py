"""wandb logging, offline: the run's own .wandb file holds the loss history."""
from __future__ import annotations

import html
import json
import os
import re
import struct

import pytest

from helpers import TINY_TRAIN_FLAGS, assert_one_line_error, run_script

pytestmark = pytest.mark.slow  # the commands run as subprocesses

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of framed records


def wandb_records(path) -> list[bytes]:
    data, pos, pending, records = path.read_bytes(), 7, b"", []  # after the 7-byte ":W&B" header
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            records.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            records.append(pending + chunk)
    return records


def offline_records(run_dir) -> tuple[list[dict], list[str]]:
    """The offline run's history rows, and the names its run records gave it."""
    from wandb.proto import wandb_internal_pb2

    history, names = [], []
    for raw in wandb_records(next(run_dir.glob("wandb/offline-run-*/run-*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif record.WhichOneof("record_type") == "run":
            names.append(record.run.display_name)
    return history, names


def test_offline_run_holds_the_loss_history(char_dataset, tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}
    result = run_script("train.py", *TINY_TRAIN_FLAGS, "--log_interval=5", "--wandb_log=true",
                        f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'shakespeare-tiny'}", env=env)
    history, names = offline_records(tmp_path)
    assert set(names) == {"shakespeare-tiny"}  # without wandb_run_name, the run is named by its out_dir
    logged = {h["_step"]: h["batch/train_loss"] for h in history if "batch/train_loss" in h}
    rows = [json.loads(line) for line in (tmp_path / "shakespeare-tiny" / "log.jsonl").read_text().splitlines()]
    expected = {r["step"]: r["train_loss"] for r in rows if r["kind"] == "batch"}
    assert logged == expected and sorted(logged) == [5, 10, 15, 20, 25, 30, 35, 40]
    val = {h["_step"]: h["eval/val_loss"] for h in history if "eval/val_loss" in h}
    assert sorted(val) == [20, 40]
    samples = [h["sample/path"] for h in history if h.get("sample/_type") == "html-file"]
    assert len(samples) == 2
    files = next(tmp_path.glob("wandb/offline-run-*/files"))
    logged_sample = html.unescape(re.search(r"<pre>(.*)</pre>", (files / samples[-1]).read_text(), re.S).group(1))
    printed_sample = result.stdout.split("--- sample ---\n")[1].split("\n--------------")[0]
    assert logged_sample.startswith(printed_sample)  # the final model, the same seed: the same text
    assert any(h.get("attention/_type") == "image-file" for h in history)


def test_without_wandb_log_wandb_is_never_imported(char_dataset, tmp_path):
    code = ("import sys, runpy; sys.argv = ['train.py', *sys.argv[1:]]\n"
            "try:\n    runpy.run_path('train.py', run_name='__main__')\n"
            "finally:\n    print('WANDB_IMPORTED' if 'wandb' in sys.modules else 'WANDB_ABSENT')")
    result = run_script("-c", code, *TINY_TRAIN_FLAGS, "--max_iters=5", f"--dataset={char_dataset}",
                        f"--out_dir={tmp_path}")
    assert result.stdout.strip().endswith("WANDB_ABSENT")


def test_wandb_without_a_login_is_a_one_line_error(char_dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "WANDB_MODE": "online"}  # no ~/.netrc, so no API key
    result = run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'run'}",
                        "--wandb_log=true", env=env, check=False)
    assert_one_line_error(result, "wandb could not start", "wandb login", "WANDB_MODE=offline")
    assert not (tmp_path / "run").exists()  # a run refused before it began leaves no folder


def test_wandb_refusing_its_settings_leaves_the_run_it_would_replace(char_dataset, tmp_path):
    run = tmp_path / "run"
    run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={char_dataset}", f"--out_dir={run}")
    earlier = {p.name: p.read_bytes() for p in run.iterdir()}
    env = {**os.environ, "WANDB_MODE": "OFFLINE", "WANDB_DIR": str(tmp_path)}  # wandb takes lower case only
    result = run_script("train.py", *TINY_TRAIN_FLAGS, f"--dataset={char_dataset}", f"--out_dir={run}",
                        "--replace_run=true", "--wandb_log=true", env=env, check=False)
    assert_one_line_error(result, "wandb refused its settings (mode='OFFLINE'", "WANDB_MODE=offline")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == earlier
