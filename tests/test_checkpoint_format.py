"""checkpoint_format=safetensors: the same checkpoint dict, written with no pickle, read back whole;
a run resumed from it steps exactly as one resumed from torch.save's file."""
from __future__ import annotations

import io
import random
import re
import zipfile
from dataclasses import asdict

import pytest
import torch
from safetensors import safe_open

from config.errors import UserError
from config.settings import TrainConfig
from model import GPT, GPTConfig
from training.checkpoint import checkpoint_path, load_checkpoint, model_from_checkpoint, save_checkpoint, to_safetensors
from training.optimizer import build_optimizers
from viz.loss_plot import drawn_by

SHAPE = dict(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16)


def trained_state(tie_embeddings: bool, steps: int = 1) -> tuple[GPT, object, dict]:
    """A tiny model after a few Muon + AdamW steps, and a checkpoint dict of it as train.py writes one."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SHAPE, tie_embeddings=tie_embeddings, pos_emb="rope", norm="rmsnorm", mlp="swiglu",
                          qk_norm=True))
    optimizers = build_optimizers(model, TrainConfig(), torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for _ in range(steps):
        step(model, optimizers, scaler)
    state = {"model": model.state_dict(), "optimizer": optimizers.state_dict(), "scaler": scaler.state_dict(),
             "config": {"dataset": "x", "vocab_size": None, "bias": False}, "model_args": asdict(model.config),
             "tokenizer": {"kind": "char", "chars": "".join(map(chr, range(65, 105)))}, "iter_num": steps,
             "best_val_loss": float("inf"), "rng": {"torch": torch.get_rng_state()}, "loader": {"epoch": 0, "cursor": 7}}
    return model, optimizers, state


def step(model: GPT, optimizers, scaler) -> None:
    x = torch.randint(0, SHAPE["vocab_size"], (4, 16), generator=torch.Generator().manual_seed(len(str(model))))
    _, loss = model(x, x)
    loss.backward()
    optimizers.update(scaler, model.parameters(), grad_clip=0.0)


def same(a, b) -> bool:
    """Equal values of equal types all the way down (any dict for a state_dict's OrderedDict);
    tensors equal in dtype and every element."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_a_safetensors_checkpoint_reads_back_as_the_same_dict(tmp_path, tie_embeddings):
    _, _, state = trained_state(tie_embeddings)
    path = checkpoint_path(tmp_path, "ckpt", "safetensors")
    save_checkpoint(state, path)
    assert path.name == "ckpt.safetensors" and path.read_bytes()[:8] != b"PK\x03\x04"  # no zip, no pickle
    assert same(load_checkpoint(path), state)  # int keys (optimizer states), tuples (betas), inf, None
    with safe_open(str(path), "pt") as f:
        stored = set(f.keys())
    assert ("model.lm_head.weight" in stored) != tie_embeddings  # a tied head is stored once
    assert "optimizer.muon.state.0.momentum_buffer" in stored


def test_a_run_resumed_from_safetensors_steps_as_one_resumed_from_torch_save(tmp_path):
    """Resume from each file into a fresh model and optimizers, take the same steps: the same weights as the model
    and optimizers that were saved, stepped on."""
    model, optimizers, state = trained_state(tie_embeddings=False)
    save_checkpoint(state, tmp_path / "ckpt.safetensors")
    save_checkpoint(state, tmp_path / "ckpt.pt")
    resumed = []
    for name in ("ckpt.safetensors", "ckpt.pt"):
        checkpoint = load_checkpoint(tmp_path / name)
        fresh = model_from_checkpoint(checkpoint, tmp_path / name)
        fresh_optimizers = build_optimizers(fresh, TrainConfig(), torch.device("cpu"))
        fresh_optimizers.load_state_dict(checkpoint["optimizer"])
        for _ in range(2):
            step(fresh, fresh_optimizers, torch.amp.GradScaler("cpu", enabled=False))
        resumed.append(fresh.state_dict())
    for _ in range(2):  # the saved objects themselves go on, their state never written nor read
        step(model, optimizers, torch.amp.GradScaler("cpu", enabled=False))
    assert same(resumed[0], resumed[1]) and same(resumed[0], model.state_dict())


def test_asking_for_one_format_finds_the_other(tmp_path):
    _, _, state = trained_state(tie_embeddings=True, steps=1)
    save_checkpoint(state, tmp_path / "best.safetensors")
    assert same(load_checkpoint(tmp_path / "best.pt")["model"], state["model"])  # sample.py's --checkpoint=best.pt


@pytest.mark.parametrize("content, fragment", [
    (lambda data: data[: len(data) // 2], "is damaged or truncated"),
    (lambda data: None, "is not a checkpoint of this project (no model, model_args, tokenizer)"),
])
def test_a_broken_or_foreign_safetensors_file_is_one_line(tmp_path, content, fragment):
    from safetensors.torch import save_file

    path = tmp_path / "ckpt.safetensors"
    data = content(to_safetensors(trained_state(tie_embeddings=True, steps=1)[2]))
    if data is None:  # weights alone, as an exported model.safetensors holds them
        save_file({"w": torch.zeros(2)}, str(path))
    else:
        path.write_bytes(data)
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_checkpoint(path)


def test_an_out_dir_holding_a_safetensors_run_is_an_earlier_run(tmp_path):
    from training.checkpoint import check_start

    (tmp_path / "ckpt.safetensors").write_bytes(to_safetensors(trained_state(tie_embeddings=True, steps=0)[2]))
    with pytest.raises(UserError, match=r"holds an earlier run \(ckpt.safetensors\); continue it with --init_from=resume"):
        check_start(tmp_path, TrainConfig(out_dir=str(tmp_path)), drawn_by("train.py"))
    # found, in either format
    check_start(tmp_path, TrainConfig(out_dir=str(tmp_path), init_from="resume"), drawn_by("train.py"))
    check_start(tmp_path, TrainConfig(out_dir=str(tmp_path), init_from="resume", checkpoint_format="safetensors"),
                drawn_by("train.py"))


def test_a_checkpoint_renamed_to_the_other_format_is_named_as_such(tmp_path):
    state = trained_state(tie_embeddings=True, steps=1)[2]
    save_checkpoint(state, tmp_path / "best.pt")
    (tmp_path / "best.pt").rename(tmp_path / "ckpt.safetensors")
    with pytest.raises(UserError, match=r"ckpt.safetensors is a .pt checkpoint under a .safetensors name; rename it "
                                        r"to ckpt.pt$"):
        load_checkpoint(tmp_path / "ckpt.safetensors")
    save_checkpoint(state, tmp_path / "best.safetensors")
    (tmp_path / "best.safetensors").rename(tmp_path / "best.pt")
    with pytest.raises(UserError, match=r"best.pt is a .safetensors checkpoint under a .pt name; rename it to "
                                        r"best.safetensors$"):
        load_checkpoint(tmp_path / "best.pt")
    (tmp_path / "best.pt").rename(tmp_path / "step100")  # a name of neither format's: read as what it holds
    (tmp_path / "ckpt.safetensors").rename(tmp_path / "best.pt.bak")
    for name in ("step100", "best.pt.bak"):
        assert same(load_checkpoint(tmp_path / name)["model"], state["model"])


def test_a_pt_checkpoint_whose_persistent_ids_no_longer_parse_is_damaged(tmp_path):
    """One byte that turns a tensor's storage record (a tuple) into a bare number trips an assertion of torch's
    weights-only unpickler: still 'damaged', not a traceback."""
    buffer = io.BytesIO()
    torch.save(trained_state(tie_embeddings=True, steps=1)[2], buffer)
    with zipfile.ZipFile(buffer) as archive:
        names = {info.filename: archive.read(info) for info in archive.infolist()}
    pickle_name = next(name for name in names if name.endswith("data.pkl"))
    # TUPLE, BINPUT n, BINPERSID -> BINPERSID, BINPUT n, BINPERSID: the record's last item becomes its id
    names[pickle_name], changed = re.subn(rb"t(q.)Q", rb"Q\1Q", names[pickle_name], count=1, flags=re.DOTALL)
    assert changed
    path = tmp_path / "ckpt.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    with pytest.raises(UserError, match=r"is damaged or truncated \(AssertionError"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["ckpt.pt", "ckpt.safetensors"])
def test_bytes_changed_anywhere_in_a_checkpoint_are_refused_or_change_nothing(tmp_path, name):
    """A disk or a copy that changes bytes in place: the file is refused as damaged in one line (the CRCs torch.save
    records and the checksum of a safetensors checkpoint), or loads exactly what was saved: never other weights."""
    state = trained_state(tie_embeddings=True, steps=1)[2]
    path = tmp_path / name
    save_checkpoint(state, path)
    saved, rng, refused = path.read_bytes(), random.Random(0), 0
    for _ in range(200):
        data = bytearray(saved)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(data)
        try:
            loaded = load_checkpoint(path)
        except UserError as e:
            assert re.search(r"damaged or truncated|holds pickled objects|not a checkpoint|under a \.\w+ name", str(e))
            refused += 1
        else:
            assert same(loaded, state)
    assert refused >= 180  # a change to what no reader looks at (a zip entry's padding) may load, unchanged


def test_a_safetensors_checkpoint_whose_header_changed_a_dtype_is_refused(tmp_path):
    """safetensors reads the same bytes as another dtype of that size (F32 as I32) without a word: the checksum
    covers each tensor's name, dtype and shape as well as its bytes."""
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(trained_state(tie_embeddings=True, steps=1)[2], path)
    data = path.read_bytes()
    name = b'"model.transformer.h.0.attn.k_norm.weight":{"dtype":"F32"'
    assert data.count(name) == 1
    path.write_bytes(data.replace(name, name.replace(b"F32", b"I32")))
    with pytest.raises(UserError, match=r"is damaged or truncated \(ValueError: it fails its CRC check\)"):
        load_checkpoint(path)


def test_a_safetensors_checkpoint_written_without_a_checksum_loads(tmp_path):
    """Written before checkpoints carried a checksum: its two metadata keys alone, read as they are."""
    import safetensors.torch

    state = trained_state(tie_embeddings=True, steps=1)[2]
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(state, path)
    with safe_open(str(path), framework="pt") as f:
        tensors, metadata = {name: f.get_tensor(name) for name in f.keys()}, f.metadata()
    del metadata["smallgpt_crc32"]
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    assert same(load_checkpoint(path), state)
    metadata["smallgpt_crc33"] = "0"  # the key's name damaged: refused, not read unchecked
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(UserError, match="fails its CRC check"):
        load_checkpoint(path)
