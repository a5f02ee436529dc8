"""attention.py: the maps show the model's own attention, recomputed here independently."""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from attention import layer_records, main, resolve_query
from attention_reference import TEXT, load_trained, page_data, reference_patterns, reference_records
from config.errors import USER_ERRORS, UserError
from helpers import REPO, assert_one_line_error, gpt2_config, run_main
from model import GPT, GPTConfig
from viz.maps import heatmap_figure, query_figure, tick_label, token_texts


def random_biased_model() -> GPT:
    """Untrained, with biases and weights large enough that the patterns are far from uniform."""
    torch.manual_seed(0)
    model = GPT(gpt2_config(block_size=16, vocab_size=11, n_layer=2, n_head=3, n_embd=24, bias=True)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.fixture(params=["trained", "random with biases"])
def model_and_ids(request, trained_out) -> tuple[GPT, list[int]]:
    if request.param == "trained":
        model, tokenizer = load_trained(trained_out)
        return model, tokenizer.encode(TEXT)
    return random_biased_model(), [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]


def test_patterns_are_softmax_of_scaled_query_key_products(model_and_ids):
    model, ids = model_and_ids
    patterns = layer_records(model, ids, torch.device("cpu"))[0]
    expected = reference_patterns(model, torch.tensor([ids]))
    c, T = model.config, len(ids)
    assert patterns.shape == expected.shape == (c.n_layer, c.n_head, T, T)
    assert torch.allclose(patterns.double(), expected, atol=1e-5)
    assert torch.allclose(patterns.sum(dim=-1), torch.ones(c.n_layer, c.n_head, T), atol=1e-5)
    assert (patterns.triu(diagonal=1) == 0).all()  # no token attends to a later one
    uniform = torch.ones(T, T).tril() / torch.arange(1, T + 1).unsqueeze(1)  # (T, T): 1 / (q + 1) on allowed keys
    assert (patterns - uniform).abs().amax() > 0.2  # far from uniform, which a wrong scale could also give


def axes_titled(fig, title: str):
    (ax,) = [a for a in fig.axes if a.get_title() == title]
    return ax


def test_figures_draw_the_patterns(trained_out):
    model, tokenizer = load_trained(trained_out)
    ids = tokenizer.encode(TEXT)
    tokens, T = token_texts(tokenizer, ids), len(ids)
    expected = reference_patterns(model, torch.tensor([ids]))  # (n_layer, nh, T, T)
    patterns = layer_records(model, ids, torch.device("cpu"))[0]
    heatmaps = heatmap_figure(patterns, tokens, "test")
    query = 7
    bars = query_figure(patterns, tokens, query)
    upper = np.triu(np.ones((T, T), dtype=bool), k=1)
    for layer in range(model.config.n_layer):
        for head in range(model.config.n_head):
            shown = axes_titled(heatmaps, f"layer {layer}, head {head}").images[0].get_array()
            assert (np.ma.getmaskarray(shown) == upper).all()  # the masked triangle is not drawn
            assert np.allclose(shown.filled(0.0), expected[layer, head].numpy(), atol=1e-5)
            heights = [bar.get_height() for bar in axes_titled(bars, f"layer {layer}, head {head}").patches]
            assert np.allclose(heights, expected[layer, head, query, : query + 1].numpy(), atol=1e-5)
        mean = [bar.get_height() for bar in axes_titled(bars, f"layer {layer}, mean of heads").patches]
        assert np.allclose(mean, expected[layer, :, query, : query + 1].mean(dim=0).numpy(), atol=1e-5)
    corner = axes_titled(heatmaps, f"layer {model.config.n_layer - 1}, head 0")  # its labels are not hidden
    labels = [tick_label(t) for t in tokens]
    assert [t.get_text() for t in corner.get_xticklabels()] == labels
    assert [t.get_text() for t in corner.get_yticklabels()] == labels
    assert tick_label(" I\n") == "␣I⏎"
    assert tick_label("\x01a\u200b") == "\\x01a\\u200b"  # a code point past 0xff reads as one: not \x20 and 0b


def test_a_label_font_lacks_is_borrowed_and_what_no_font_draws_shows_as_its_code_point():
    from matplotlib import font_manager

    mono, sans = (set(font_manager.get_font(font_manager.findfont(name)).get_charmap())
                  for name in ("DejaVu Sans Mono", "DejaVu Sans"))
    borrowed = chr(min(sans - mono))  # a letter that DejaVu Sans draws and the labels' monospaced font lacks
    unseen = "\U0001E900"  # ADLAM CAPITAL LETTER ALIF: no font that matplotlib ships draws it
    if any(0x1E900 in font_manager.get_font(f.fname).get_charmap() for f in font_manager.fontManager.ttflist
           if not f.name.startswith("Last Resort")):  # its glyphs are boxes
        pytest.skip("a font here draws Adlam")
    patterns = torch.softmax(torch.randn(1, 1, 3, 3), dim=-1)  # (n_layer, nh, T, T)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for figure in (heatmap_figure(patterns, ["a", borrowed, unseen], f"a{unseen}"),
                       query_figure(patterns, ["a", borrowed, unseen], 2)):
            figure.savefig(io.BytesIO(), format="png")  # drawing is where matplotlib finds a glyph missing
            assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["a", borrowed, "[U+1E900]"]
    assert not [w for w in caught if "missing from font" in str(w.message)]


def test_command_writes_pictures_and_page(attention_run, trained_out):
    T = len(TEXT)  # one token per character
    stdout = (attention_run / "stdout.txt").read_text()
    assert f"{T} tokens through 2 layers of 2 heads; query token {T - 1} 'a'" in stdout
    for name, min_side in (("heatmaps.png", 300), (f"query_{T - 1}.png", 300)):
        image = Image.open(attention_run / name)
        assert image.format == "PNG" and min_side <= min(image.size) and max(image.size) <= 4000
        pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.std() > 20, f"{name} looks blank"
    model, tokenizer = load_trained(trained_out)
    expected, raw, value_norms = reference_records(model, torch.tensor([tokenizer.encode(TEXT)]))
    data = page_data(attention_run / "explorer.html")
    assert data["tokens"] == list(TEXT) and data["query"] == T - 1 and data["head_size"] == model.config.head_size
    for layer, heads in enumerate(data["patterns"]):
        for head, rows in enumerate(heads):
            for q, row in enumerate(rows):
                assert np.allclose(row, expected[layer, head, q, : q + 1].numpy(), atol=1e-4)
    assert np.allclose(data["scores"], raw.numpy(), atol=1e-3)  # every key's raw q . k, the masked ones too
    assert np.allclose(data["value_norms"], value_norms.numpy(), atol=1e-3)


def test_a_default_text_longer_than_the_context_asks_for_a_text(trained_out, tmp_path):
    checkpoint = torch.load(trained_out / "ckpt.pt", weights_only=True)
    checkpoint["model_args"]["block_size"] = 16  # RoPE: no weights depend on it
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    with pytest.raises(USER_ERRORS, match="^the default text is 28 tokens but the model's context is 16; give a "
                                          "shorter one with --text=TEXT$"):
        main([f"--out_dir={tmp_path}", f"--pictures_dir={tmp_path / 'maps'}", "--device=cpu"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_pictures_of_an_earlier_run_left_beside_new_ones_are_named(trained_out, tmp_path, capsys):
    argv = [f"--out_dir={trained_out}", f"--pictures_dir={tmp_path}", "--device=cpu"]
    main([*argv, f"--text={TEXT}"])
    capsys.readouterr()
    main([*argv, "--text=Shall I", "--html=false"])
    assert capsys.readouterr().err == f"note: {tmp_path} also holds query_{len(TEXT) - 1}.png, explorer.html from an " \
                                      f"earlier run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["heatmaps.png", "query_6.png",
                                                                 f"query_{len(TEXT) - 1}.png", "explorer.html"])


def test_files_of_the_pictures_names_that_attention_py_did_not_write_stay(trained_out, tmp_path):
    argv = [f"--out_dir={trained_out}", f"--pictures_dir={tmp_path}", "--device=cpu", f"--text={TEXT}"]
    for other in (b"a user's own file", (trained_out / "loss.png").read_bytes()):  # the user's, train.py's
        (tmp_path / "heatmaps.png").write_bytes(other)
        assert_one_line_error(run_main(main, *argv), f"pictures_dir={tmp_path / 'heatmaps.png'} is a picture "
                                                      "attention.py did not write, which it never replaces")
    (tmp_path / "heatmaps.png").unlink()
    (tmp_path / "explorer.html").write_text("<html>my page</html>")
    assert_one_line_error(run_main(main, *argv), "explorer.html is a page attention.py did not write")
    (tmp_path / "explorer.html").unlink()
    (tmp_path / "heatmaps.png").mkdir()
    assert_one_line_error(run_main(main, *argv), f"{tmp_path / 'heatmaps.png'} is a folder, where a file of that "
                                                  "name is written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heatmaps.png"]  # nothing written


def test_query_index_resolution():
    assert resolve_query(None, 5) == 4 and resolve_query(0, 5) == 0 and resolve_query(4, 5) == 4
    for bad in (5, -1):
        with pytest.raises(UserError, match=f"query_index={bad} is out of range: the text is 5 tokens, so use 0 to 4"):
            resolve_query(bad, 5)


@pytest.mark.parametrize("flags, message", [
    (["--text=" + "Shall I compare thee " * 3], "text is 63 tokens but the model's context is 32; shorten the text"),
    (["--query_index=40"], "query_index=40 is out of range: the text is 25 tokens, so use 0 to 24"),
    (["--text=FILE:/no/such/file"], "text file /no/such/file not found"),
    (["--text=Shall I ~"], "character '~' is not in this model's vocabulary"),
    (["--querry_index=3"], "did you mean 'query_index'"),
    (["--text="], "the text is empty; give the text to look at with --text=TEXT or --text=FILE:path"),
])
def test_bad_input_is_a_one_line_error(trained_out, tmp_path, flags, message):
    argv = [f"--out_dir={trained_out}", f"--text={TEXT}", f"--pictures_dir={tmp_path / 'maps'}", "--device=cpu", *flags]
    with pytest.raises(USER_ERRORS) as error:
        main(argv)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "maps").exists()  # refused before anything was written


def test_a_dataset_folder_is_no_pictures_dir(trained_out, char_dataset):
    """Pictures among its token files would make prepare refuse to replace it, as a folder of other files."""
    before = sorted(p.name for p in char_dataset.iterdir())
    with pytest.raises(UserError, match=rf"^pictures_dir {char_dataset} is a dataset's folder: nothing else belongs"):
        main([f"--out_dir={trained_out}", f"--pictures_dir={char_dataset}", "--device=cpu"])
    assert sorted(p.name for p in char_dataset.iterdir()) == before


def test_a_pictures_dir_the_os_refuses_after_the_check_is_one_line(trained_out, tmp_path):
    """A dangling link on the way looks missing, so the check passes; making the folder then fails."""
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    folder = tmp_path / "link" / "maps"
    with pytest.raises(UserError, match=r"^cannot write to .*maps \(File exists\); choose another --pictures_dir$"):
        main([f"--out_dir={trained_out}", f"--text={TEXT}", f"--pictures_dir={folder}", "--device=cpu"])


def test_tour_quotes_the_real_lines():
    """Each code block in docs/attention.md is a run of consecutive lines of the file named
    before it, compared by content: a line added elsewhere in the file breaks nothing."""
    tour = (REPO / "docs" / "attention.md").read_text()
    checked = 0
    for before, block in re.findall(r"(.*?)```python\n(.*?)```", tour, re.S):
        paths = re.findall(r"([\w/]+\.py)\b", before)
        assert paths, f"no file named before the block:\n{block}"
        quoted = [line.strip() for line in block.strip("\n").splitlines()]
        source = [line.strip() for line in (REPO / paths[-1]).read_text().splitlines()]
        runs = [i for i in range(len(source)) if source[i : i + len(quoted)] == quoted]
        assert runs, f"{paths[-1]} no longer holds the lines quoted:\n{block}"
        checked += 1
    assert checked >= 8
    assert (REPO / "docs" / "attention_heatmaps.png").stat().st_size < 200_000


def test_a_token_holding_part_of_a_character_shows_its_own_bytes():
    from data.tokenizer import GPT2Tokenizer

    tokenizer = GPT2Tokenizer()
    ids = tokenizer.encode("東京で 🙂 café")
    texts = token_texts(tokenizer, ids)
    assert len(ids) > len("東京で 🙂 café".split())  # pieces of characters among them
    assert "\ufffd" not in "".join(texts) and len(set(texts)) == len(set(ids))  # each piece told apart
    assert "".join(texts).endswith(" café")  # whole characters as they are
