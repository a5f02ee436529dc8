"""compile=true (torch.compile of each block) trains the same model as eager mode, and its checkpoint
holds the plain model's names, so every other command loads it."""
import json
import os
import re

import pytest
import torch

from helpers import TINY_TRAIN_FLAGS, run_script

pytestmark = pytest.mark.slow  # compiling takes half a minute on a CPU


def log_rows(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def log_losses(out_dir) -> list[float]:
    return [row.get("val_loss", row["train_loss"]) for row in log_rows(out_dir)]


def test_compiled_training_matches_eager_training(char_dataset, tmp_path):
    # the modern shape, compiled; AdamW, so float32 all the way (Muon orthogonalises in bfloat16, where
    # compiled and eager rounding differences would show)
    flags = [*TINY_TRAIN_FLAGS, "--max_iters=10", "--lr_decay_iters=10", "--eval_interval=10", "--sample_tokens=20",
             "--log_interval=1", "--dtype=float32", "--optimizer=adamw", f"--dataset={char_dataset}"]
    caches = {run: tmp_path / f"{run}-inductor-cache" for run in ("eager", "compiled")}  # what each run compiled
    for run, compile_flag in (("eager", []), ("compiled", ["--compile=true"])):
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(caches[run])}
        if compile_flag:  # torch reads TORCH_LOGS as it is imported: a fresh interpreter
            env["TORCH_LOGS"] = "recompiles"
        done = run_script("train.py", *flags, *compile_flag, f"--out_dir={tmp_path / run}", env=env,
                          fresh=bool(compile_flag))
        assert ("compile: the model was compiled in its first step" in done.stdout) == (run == "compiled"), done.stdout
    # regional compilation: both blocks share one graph, compiled again once, for evaluation (no gradients); the
    # sample at the end decoded under force_eager (its new shapes would each have compiled again)
    assert done.stderr.count("triggered by the following guard failure") == 1, done.stderr
    assert not caches["eager"].exists() and any(caches["compiled"].rglob("*.so"))  # inductor's compiled kernels
    eager, compiled = log_losses(tmp_path / "eager"), log_losses(tmp_path / "compiled")
    assert len(eager) == len(compiled) == 11  # steps 1 to 10, then the evaluation at 10
    assert compiled == pytest.approx(eager, abs=1e-4)
    rates = {run: [row["tok_per_s"] for row in log_rows(tmp_path / run) if row["kind"] == "batch"] for run in caches}
    assert rates["compiled"][0] is None  # the first step compiled: no rate is measured over it
    assert all(rate > 0 for rate in rates["eager"] + rates["compiled"][1:])
    checkpoint = torch.load(tmp_path / "compiled" / "ckpt.pt", weights_only=True)
    assert not any(name.startswith(("_orig_mod.", "module.")) for name in checkpoint["model"])
    sample = run_script("sample.py", f"--out_dir={tmp_path / 'compiled'}", "--prompt=Shall", "--max_new_tokens=5")
    assert sample.stdout.startswith("Shall")

    # the evaluation's graph is compiled in the first step, with training's, so no evaluation compiles (a time
    # budget's checks then see that time early, when they can still fit the steps to it): the one recompile (no
    # gradients) is logged before the progress bar shows the first step done
    first_step = re.search(r"\| *1/10 \[", done.stderr)
    assert first_step and done.stderr.index("triggered by the following guard failure") < first_step.start()
