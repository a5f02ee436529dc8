"""The Python API, as a notebook calls it: what model/ and data/ cannot take is a ModelError or a DataError that
says what to change, never an error from deep inside torch or a setting taken for another."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from data import DataError, load_tokenizer
from model import GPT, GPTConfig, ModelError
from model.weights import with_weights

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50)


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**TINY)).eval()


@pytest.mark.parametrize("key, value, message", [
    ("qk_norm", "false", "qk_norm='false' must be True or False"),  # a string is true: it would be on
    ("bias", 1, "bias=1 must be True or False"),
    ("n_embd", 32.0, "n_embd=32.0 must be an integer"),
    ("n_layer", "2", "n_layer='2' must be an integer"),
    ("block_size", None, "block_size=None must be an integer"),
    ("dropout", None, "dropout=None must be a number"),
    ("mlp_hidden", 64.5, "mlp_hidden=64.5 must be an integer or None"),
    ("rope_theta", float("inf"), "rope_theta=inf must be a positive number"),
])
def test_a_config_value_of_the_wrong_kind_is_named(key, value, message):
    with pytest.raises(ModelError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        GPTConfig(**{**TINY, key: value})


def test_an_integer_where_a_number_goes_is_that_number():
    config = GPTConfig(**TINY, dropout=0, rope_theta=10000, norm_eps=1)
    assert (config.dropout, config.rope_theta, config.norm_eps) == (0, 10000, 1)


@pytest.mark.parametrize("idx, message", [
    ([[1, 2, 3]], "idx is list; token ids go in as a tensor of int64 (B, T)"),
    (torch.tensor([1, 2, 3]), "idx is a torch.int64 tensor (3,); token ids go in as a tensor of int64 (B, T)"),
    (torch.tensor([[[1, 2, 3]]]), "idx is a torch.int64 tensor (1, 1, 3)"),
    (torch.tensor([[1.0, 2.0]]), "idx is a torch.float32 tensor (1, 2)"),
    (torch.tensor([[1, 2]], dtype=torch.uint16), "idx is a torch.uint16 tensor (1, 2); token ids go in as a tensor "
                                                 "of int64 (B, T), e.g. torch.tensor([ids]) for one sequence, or "
                                                 "idx.long()"),  # a dataset's own ids, as np.uint16
    (torch.tensor([[True, False]]), "idx is a torch.bool tensor (1, 2)"),
])
def test_ids_that_are_no_batch_of_integers_are_named_by_every_entry_point(model, idx, message):
    for call in (lambda: model(idx), lambda: model.generate(idx, 2), lambda: model.attention_patterns(idx)):
        with pytest.raises(ModelError, match=re.escape(message)):
            call()


@pytest.mark.parametrize("bad", [50, -1])
def test_a_prompt_id_outside_the_vocabulary_is_named(model, bad):
    idx = torch.tensor([[1, bad, 2]])
    for call in (lambda: model.generate(idx, 2), lambda: model.attention_patterns(idx), lambda: model(idx)):
        with pytest.raises(ModelError, match=f"idx holds the token id {bad}, outside this model's vocabulary of 50"):
            call()


def test_a_prompt_on_another_device_than_the_model_is_named(model):
    with pytest.raises(ModelError, match=r"idx is on meta, the model on cpu: idx.to\('cpu'\)"):
        model.generate(torch.zeros(1, 2, dtype=torch.long, device="meta"), 2)


def test_targets_are_checked_like_ids(model):
    idx = torch.tensor([[1, 2, 3]])
    assert model(idx.int(), idx.int())[1] == model(idx, idx)[1]  # int32 ids and targets, as int64
    with pytest.raises(ModelError, match=r"targets is a torch.float32 tensor \(1, 3\)"):
        model(idx, idx.float())
    with pytest.raises(ModelError, match=r"targets \(1, 2\) must have idx's shape, \(1, 3\)"):
        model(idx, idx[:, :2])


@pytest.mark.parametrize("option, message", [
    (dict(top_k=0), "top_k=0 must be a positive integer, or None for no top-k filter"),
    (dict(top_k=-1), "top_k=-1 must be a positive integer"),
    (dict(top_p=0.0), r"top_p=0.0 must be in \(0, 1\], or None for no nucleus filter"),
    (dict(top_p=1.5), r"top_p=1.5 must be in \(0, 1\]"),
    (dict(top_p=float("nan")), r"top_p=nan must be in \(0, 1\]"),
    (dict(vocab_limit=0), "vocab_limit=0 must be from 1 to the model's vocabulary, 50"),
    (dict(vocab_limit=51), "vocab_limit=51 must be from 1"),
    (dict(temperature=None), r"temperature=None must be 0 \(greedy\) or more"),
    (dict(temperature=True), r"temperature=True must be 0 \(greedy\) or more"),  # a flag, not a number
    (dict(top_p=True), r"top_p=True must be in \(0, 1\]"),
])
def test_a_sampling_option_out_of_its_range_is_named(model, option, message):
    for max_new_tokens in (2, 0):  # before any work: the same with no token to sample
        with pytest.raises(ModelError, match=message):
            model.generate(torch.tensor([[1, 2]]), max_new_tokens, **option)


@pytest.mark.parametrize("max_new_tokens", [-1, 2.5, None])
def test_max_new_tokens_is_a_count(model, max_new_tokens):
    with pytest.raises(ModelError, match=f"max_new_tokens={max_new_tokens!r} must be an integer, 0 or more"):
        model.generate(torch.tensor([[1, 2]]), max_new_tokens)


def test_the_edges_that_are_fine_stay_fine(model):
    idx = torch.tensor([[1, 2]])
    assert torch.equal(model.generate(idx, 0), idx)  # nothing new asked
    greedy = model.generate(idx, 4, temperature=0)
    assert torch.equal(model.generate(idx.int(), 4, temperature=0), greedy)  # int32 ids
    sampled = [model.generate(idx, 8, top_k=k, generator=torch.Generator().manual_seed(0)) for k in (1000, None)]
    assert torch.equal(*sampled)  # a top_k past the vocabulary keeps all of it
    assert torch.equal(model.generate(idx, 4, top_k=1), greedy)  # one candidate: the greedy pick
    options = dict(temperature=0.7, top_k=5, top_p=0.9, vocab_limit=40)
    as_numpy = dict(temperature=np.float32(0.7), top_k=np.int64(5), top_p=np.float64(0.9), vocab_limit=np.int32(40))
    sampled = [model.generate(idx, np.int64(8), generator=torch.Generator().manual_seed(0), **kinds)
               for kinds in (options, as_numpy)]
    assert torch.equal(*sampled)  # numpy's numbers are the numbers they hold


def test_models_built_from_one_config_are_apart():
    """crop_block_size and set_dropout change their model's config: not the caller's, nor another model's."""
    config = GPTConfig(**{**TINY, "pos_emb": "learned", "block_size": 16})
    first, second = GPT(config), GPT(config)
    first.crop_block_size(8)
    first.set_dropout(0.3)
    assert (config.block_size, config.dropout) == (16, 0.0)
    assert (second.config.block_size, second.config.dropout) == (16, 0.0)
    assert second(torch.zeros(1, 12, dtype=torch.long))[0].shape[1] == 12  # its 16 positions whole
    assert GPT(config).config.block_size == 16


@pytest.mark.parametrize("block_size", [0, -1, 2.5, True])
def test_a_crop_is_to_a_whole_positive_context(model, block_size):
    with pytest.raises(ModelError, match=f"block_size={block_size!r} must be a whole number, 1 or more"):
        model.crop_block_size(block_size)


@pytest.mark.parametrize("p, message", [(True, "must be a number"), ("0.1", "must be a number"),
                                        (1.0, r"must be in \[0, 1\)"), (-0.1, r"must be in \[0, 1\)")])
def test_dropout_is_a_probability_below_one(model, p, message):
    with pytest.raises(ModelError, match=f"dropout={p!r} {message}"):
        model.set_dropout(p)


def test_with_weights_takes_a_float32_model_and_a_weight_kind_it_knows():
    torch.manual_seed(0)
    for name in ("int4", "INT8", None):
        with pytest.raises(ModelError, match=f"weights={name!r} is not one of float32, bfloat16, int8"):
            with_weights(GPT(GPTConfig(**TINY)), name)
    once = with_weights(GPT(GPTConfig(**TINY)), "bfloat16")
    for again in ("float32", "int8"):  # not back to float32's precision, nor int8 rows of rounded weights
        with pytest.raises(ModelError, match="this model's are torch.bfloat16 already: load it again"):
            with_weights(once, again)


def test_load_tokenizer_names_a_folder_that_is_no_dataset(tmp_path):
    (tmp_path / "no-tokenizer").mkdir()
    (tmp_path / "no-tokenizer" / "meta.json").write_text(json.dumps({}))
    (tmp_path / "meta-folder" / "meta.json").mkdir(parents=True)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "meta.json").write_text("[" * 100_000 + "]" * 100_000)  # past Python's recursion limit
    (tmp_path / "a-file").write_text("text")
    cases = {"no-tokenizer": "does not describe a tokenizer as data/prepare.py writes one",
             "meta-folder": r"cannot read .*meta-folder/meta.json \(Is a directory\)",
             "nested": "is inconsistent", "a-file": r"cannot read .*a-file/meta.json \(Not a directory\)"}
    for name, message in cases.items():
        with pytest.raises(DataError, match=message):
            load_tokenizer(tmp_path / name)


@pytest.mark.parametrize("kind", ["char", "gpt2"])
def test_decode_names_an_id_outside_the_vocabulary_instead_of_wrapping_a_negative_one(kind):
    from data.tokenizer import CharTokenizer, GPT2Tokenizer

    tokenizer = CharTokenizer("abc", end_of_text=True) if kind == "char" else GPT2Tokenizer()
    ids = tokenizer.encode("cab")
    assert tokenizer.decode(torch.tensor(ids)) == tokenizer.decode(ids) == "cab"  # a tensor's row as its list
    for bad in (tokenizer.vocab_size, -1):  # -1 would be the last piece, read from the end
        for decode in (tokenizer.decode, tokenizer.decode_bytes):
            with pytest.raises(DataError, match=f"token id {bad} is not in this tokenizer's vocabulary of "
                                                f"{tokenizer.vocab_size}"):
                decode([*ids, bad])
    with pytest.raises(DataError, match=r"decode takes one sequence of integer ids, e.g. out\[0\]"):
        tokenizer.decode(torch.tensor([ids]))
